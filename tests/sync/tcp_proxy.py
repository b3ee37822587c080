"""A TCP proxy the test can cut: a network outage between one device and the broker.

Other clients (the cloud side of a test) keep talking to the broker directly, so they see everything
the device manages to deliver; TLS passes through untouched. While cut, every connection is closed and
new ones are closed as soon as they are accepted (like a dead uplink that still resolves).
"""

from __future__ import annotations

import contextlib
import socket
import threading

from tests.support.broker import free_port


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = "127.0.0.1"
        self.port = free_port()
        self._cut = False
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._server = socket.create_server((self.host, self.port))
        self._server.settimeout(0.2)
        self._running = True
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self._thread.start()

    def cut(self) -> None:
        """Drop every connection and refuse new ones until `restore()`."""
        with self._lock:
            self._cut = True
            sockets, self._sockets = self._sockets, set()
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def close(self) -> None:
        self._running = False
        self.cut()
        self._thread.join(2.0)
        self._server.close()

    def _accept_loop(self) -> None:
        while self._running:
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                cut = self._cut
            if cut:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=2.0)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for s in (client, upstream):  # forward small MQTT packets at once, as the endpoints do
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
