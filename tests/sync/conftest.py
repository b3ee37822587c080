"""Fixtures for the sync tests: a TLS Mosquitto with per-device ACLs, and a running sync loop."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.sync.loop import SyncLoop
from tests.sync.tls_broker import TlsBroker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[TlsBroker]:
    b = TlsBroker(tmp_path / "broker").start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def loop() -> Iterator[SyncLoop]:
    lp = SyncLoop().start()
    try:
        yield lp
    finally:
        lp.stop(5.0)
