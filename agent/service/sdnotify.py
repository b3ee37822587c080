"""The systemd notification protocol (sd_notify), spoken directly over `$NOTIFY_SOCKET`.

Messages are newline-separated `KEY=value` assignments in one datagram on an AF_UNIX SOCK_DGRAM
socket; an address starting with `@` is in the abstract namespace (leading NUL byte). Without
`$NOTIFY_SOCKET` (not started by systemd with Type=notify) every call is a no-op. `watchdog_interval_s`
reads `$WATCHDOG_USEC` (and `$WATCHDOG_PID`, which must be us when set) and returns half of it, the ping
period systemd recommends.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify messages; a no-op when not run under systemd's notify protocol."""

    def __init__(self, address: str | None = None) -> None:
        addr = os.environ.get("NOTIFY_SOCKET") if address is None else address
        self._sock: socket.socket | None = None
        self._addr: str | bytes | None = None
        if not addr:
            return
        if addr.startswith("@"):
            self._addr = b"\0" + addr[1:].encode()
        elif addr.startswith("/"):
            self._addr = addr
        else:
            log.warning("NOTIFY_SOCKET %r is neither a path nor an abstract address; not notifying", addr)
            return
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *assignments: str) -> bool:
        """Send `KEY=value` lines in one datagram; False when disabled or the send failed (logged)."""
        if self._sock is None or self._addr is None:
            return False
        try:
            self._sock.sendto("\n".join(assignments).encode(), self._addr)
        except OSError as exc:
            log.warning("sd_notify to %r failed: %s", self._addr, exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def reloading(self) -> bool:
        return self.notify("RELOADING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval_s() -> float | None:
    """Half of `$WATCHDOG_USEC` in seconds, or None when systemd expects no watchdog pings from us."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("WATCHDOG_USEC=%r is not an integer; no watchdog pings", usec)
        return None
    return value / 2e6 if value > 0 else None
