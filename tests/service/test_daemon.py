"""`anc-agent run` as systemd runs it: sd_notify READY/STATUS/WATCHDOG, a stalled audio loop stops the
watchdog pings, SIGTERM stops within 2 s with a final checkpoint, a restart is warm, SIGHUP reloads live."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from agent.service.checkpoint import CURRENT_NAME

REPO = Path(__file__).resolve().parents[2]
WATCHDOG_USEC = 1_000_000  # pings expected every 0.5 s


class DaemonProcess:
    """The agent in a subprocess with a test NOTIFY_SOCKET; every datagram is kept with its arrival time."""

    def __init__(self, tmp: Path, config: dict, name: str) -> None:
        self.config_path = tmp / "agent.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.sock_path = str(tmp / f"notify-{name}")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.sock_path)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        env = dict(os.environ, NOTIFY_SOCKET=self.sock_path, WATCHDOG_USEC=str(WATCHDOG_USEC))
        env.pop("WATCHDOG_PID", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "--config", str(self.config_path)],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                if self.proc.poll() is not None:
                    return
                continue
            except OSError:
                return
            now = time.monotonic()
            with self._lock:
                self.messages.extend((now, line) for line in data.decode().split("\n"))

    def lines(self, prefix: str, since: float = 0.0) -> list[str]:
        with self._lock:
            return [m for t, m in self.messages if t >= since and m.startswith(prefix)]

    def wait_for(self, predicate, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            if self.proc.poll() is not None:
                return predicate()
            time.sleep(0.02)
        return predicate()

    def stop(self) -> tuple[float, str]:
        """SIGTERM; returns (seconds until the process exited, its stderr)."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        err = self.proc.communicate(timeout=30)[1]
        elapsed = time.monotonic() - t0
        self.sock.close()
        return elapsed, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            err = self.proc.communicate()[1]
            print("daemon stderr:", err[-3000:])
            print("notify messages:", self.messages[-40:])
        self.sock.close()


def _config(tmp: Path, **extra) -> dict:
    cfg = {
        "profile": "hvac-duct-16k",
        "backend": "simulated",
        "state_dir": str(tmp / "state"),
        "log_level": "info",
        "realtime_priority": 0,
        "checkpoint_interval_s": 60,
    }
    cfg.update(extra)
    return cfg


def test_notify_watchdog_stall_stop_and_warm_restart(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path, _config(tmp_path), "first")
    try:
        assert d.wait_for(lambda: d.lines("READY=1"), 90), d.messages
        assert d.wait_for(lambda: any("stage=control" in s for s in d.lines("STATUS=")), 60), d.messages
        status = d.lines("STATUS=")[-1]
        assert "mode=anc" in status and "attenuation=" in status
        t_ok = time.monotonic()
        assert d.wait_for(lambda: len(d.lines("WATCHDOG=1", since=t_ok)) >= 3, 10)

        d.proc.send_signal(signal.SIGUSR1)  # stall the simulated audio loop
        time.sleep(0.8)  # a ping already decided may still arrive
        t_stalled = time.monotonic()
        time.sleep(2.5)  # five ping periods
        assert d.lines("WATCHDOG=1", since=t_stalled) == []
        assert d.lines("STATUS=", since=t_stalled)  # the control thread itself is alive

        d.proc.send_signal(signal.SIGUSR1)  # resume
        t_resumed = time.monotonic()
        assert d.wait_for(lambda: len(d.lines("WATCHDOG=1", since=t_resumed)) >= 2, 5)

        elapsed, err = d.stop()
    finally:
        d.kill()
    assert d.proc.returncode == 0, err
    assert elapsed < 2.0, err
    assert "STOPPING=1" in d.lines("STOPPING=1")
    assert (tmp_path / "state" / CURRENT_NAME).exists()
    assert "final checkpoint written" in err

    d2 = DaemonProcess(tmp_path, _config(tmp_path, controller={"mode": "anc"}), "second")
    try:
        assert d2.wait_for(lambda: d2.lines("READY=1"), 90), d2.messages
        with d2._lock:
            first_status = next(m for _, m in d2.messages if m.startswith("STATUS="))
        assert "stage=control" in first_status  # no identification: the checkpoint's secondary path
        # SIGHUP with a changed mode applies without restarting the audio pipeline.
        d2.config_path.write_text(yaml.safe_dump(_config(tmp_path, controller={"mode": "passthrough"})))
        t_hup = time.monotonic()
        d2.proc.send_signal(signal.SIGHUP)
        assert d2.wait_for(lambda: any("mode=passthrough" in s for s in d2.lines("STATUS=", since=t_hup)), 10)
        assert d2.lines("RELOADING=1", since=t_hup)
        elapsed2, err2 = d2.stop()
    finally:
        d2.kill()
    assert d2.proc.returncode == 0, err2
    assert "warm start" in err2
    assert "reloaded without stopping audio" in err2 and "restarting" not in err2
    assert elapsed2 < 2.0
