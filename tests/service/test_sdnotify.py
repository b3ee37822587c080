"""sd_notify over $NOTIFY_SOCKET: path and abstract addresses, watchdog interval from the environment."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from agent.service.sdnotify import Notifier, watchdog_interval_s


def test_messages_arrive_on_a_path_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        n = Notifier(path)
        assert n.ready("mode=anc") and n.watchdog() and n.status("mode=passthrough")
        got = [server.recv(4096).decode() for _ in range(3)]
    assert got == ["READY=1\nSTATUS=mode=anc", "WATCHDOG=1", "STATUS=mode=passthrough"]


def test_an_at_sign_address_is_in_the_abstract_namespace() -> None:
    name = f"anc-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        assert Notifier("@" + name).stopping()
        assert server.recv(4096) == b"STOPPING=1"


def test_without_notify_socket_every_call_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled
    assert n.ready() is False


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "3000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval_s() == 1.5
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert watchdog_interval_s() is None
    monkeypatch.delenv("WATCHDOG_USEC")
    assert watchdog_interval_s() is None
