"""A local Mosquitto broker that behaves like AWS IoT Core for one fleet: mutual TLS, per-thing ACLs, on
a free port, in its own directory. The local stack, the demo and the tests all run it.

    with Broker(workdir) as broker:                             # start() ... close()
        cert, key = broker.issue_client("anc-sn-000123")       # CN = thing name = MQTT username
        client = paho.mqtt.client.Client(...)
        client.tls_set(ca_certs=str(broker.ca_path), certfile=str(cert), keyfile=str(key))
        client.connect(broker.host, broker.port)

What the broker enforces (like AWS IoT Core with a per-thing policy):
- One TLS listener on `host:port` (127.0.0.1): `require_certificate true`, `use_identity_as_username true`,
  so a client's MQTT username is its certificate's CN. The server certificate (CN/SAN localhost,
  127.0.0.1) and the CA come from `provisioning.pki`; `ca_path` is what clients pass as their root CA.
- ACL patterns for every client: `$aws/things/%u/shadow/#` and `anc/%u/#` (readwrite). Anything else is
  denied, silently: a denied PUBLISH is dropped (it never reaches any subscriber), and Mosquitto 2.0's
  built-in ACL check does not judge SUBSCRIBE at all (the SUBACK grants it) but never delivers a message
  on a topic the subscriber may not read.
- A privileged service user (`SERVICE_USER`, "anc-local-service") with `topic readwrite #` and
  `topic readwrite $aws/#` (MQTT wildcards never match topics starting with `$`), for the local shadow
  service and the provisioning responder. It connects over TLS with `service_cert()`, or, when the broker
  was made with `plain_listener=True`, without TLS on `127.0.0.1:plain_port` with username
  `SERVICE_USER` and password `service_password` (no anonymous access on either listener).
- `extra_acl` lines (constructor) and `add_acl(lines)` (at run time, applied with SIGHUP) add anything
  else, e.g. a claim identity limited to the fleet-provisioning topics:
  `broker.add_acl(["user NAME", "topic readwrite some/topic/#"])`. Lines are appended after the
  built-in blocks; start a block with `user NAME`. `issue_claim(name)` does this for a fleet-provisioning
  claim identity (the `$aws/certificates/...` and `$aws/provisioning-templates/...` topics).
- Optional `crl_path`: a CRL (PEM) from the same CA; revoked client certificates are refused at the TLS
  handshake.
- Optional `persistence=True`: Mosquitto saves its state (persistent sessions with their subscriptions and
  queued QoS 1 messages, retained messages) to `<dir>/mosquitto.db` when stopped and loads it at start, so
  a client with a persistent session misses nothing across `stop()` / `start()`. Mosquitto 2.0.11 restores
  MQTT 3.1.1 `clean_session=False` sessions from that file, but not MQTT 5 sessions (measured: CONNACK
  session present is 0 after a restart even with a session expiry interval).
- `set_tcp_nodelay true`: small MQTT packets leave at once instead of waiting on Nagle's algorithm
  (measured: it halves the shadow round trip on loopback).

Lifecycle: `start()` picks a free port (first start only), writes the config, launches
`/usr/sbin/mosquitto -c ...` and returns once the port accepts TCP connections; `stop()` terminates it
(SIGTERM, then SIGKILL); `restart()` = stop + start on the SAME port (for outage tests: stop, wait,
start). Use as a context manager. The broker log is at `log_path`; `log_text()` returns it. The CA is
created once per Broker (with `ca_dir` you may pass an existing fleet CA written by
`provisioning.pki.save_ca` with `ca_passphrase`, e.g. an `anc-provision` fleet home's `ca/`).
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from provisioning import pki

if TYPE_CHECKING:
    from cloud.local.shadow_service import BrokerEndpoint

MOSQUITTO = "/usr/sbin/mosquitto"
SERVICE_USER = "anc-local-service"
DEVICE_ACL_PATTERNS = ("pattern readwrite $aws/things/%u/shadow/#", "pattern readwrite anc/%u/#")
# What a fleet-provisioning claim identity may reach (and nothing else).
CLAIM_ACL_TOPICS = (
    "$aws/certificates/create-from-csr/#",
    "$aws/certificates/create/#",
    "$aws/provisioning-templates/#",
)
_START_TIMEOUT_S = 10.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _port_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def mosquitto_password_hash(password: str) -> str:
    """A Mosquitto 2.0 password-file hash: `$7$` PBKDF2-HMAC-SHA512, 101 iterations, 12-byte salt."""
    salt = secrets.token_bytes(12)
    iterations = 101
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, dklen=64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


class Broker:
    """A Mosquitto process with mutual TLS and per-thing ACLs; see the module docstring."""

    def __init__(
        self,
        workdir: str | os.PathLike[str] | None = None,
        *,
        extra_acl: Sequence[str] = (),
        plain_listener: bool = False,
        crl_path: str | os.PathLike[str] | None = None,
        ca_dir: str | os.PathLike[str] | None = None,
        ca_passphrase: bytes | None = None,
        persistence: bool = False,
    ) -> None:
        self._own_dir = workdir is None
        self.dir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="anc-broker-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = 0
        self.plain_port: int | None = 0 if plain_listener else None
        self.crl_path = Path(crl_path) if crl_path is not None else None
        self.persistence = persistence
        self.service_password = secrets.token_urlsafe(18)
        self._extra_acl: list[str] = list(extra_acl)
        self._proc: subprocess.Popen[bytes] | None = None
        self.conf_path = self.dir / "mosquitto.conf"
        self.acl_path = self.dir / "acl"
        self.passwd_path = self.dir / "passwd"
        self.log_path = self.dir / "mosquitto.log"
        self.clients_dir = self.dir / "clients"
        if ca_dir is not None:
            ca_dir = Path(ca_dir)
            if ca_passphrase is None:
                raise ValueError("ca_passphrase: required with ca_dir")
            self.ca = pki.load_ca(ca_dir / "ca.pem", ca_dir / "ca.key", ca_passphrase)
        else:
            self.ca = pki.create_ca("ANC Edge Local Fleet CA")
        self.ca_path = pki.write_certificate(self.dir / "ca.pem", self.ca.certificate)
        server_key = pki.generate_key()
        server_cert = pki.issue_server_certificate(self.ca, server_key.public_key())
        self.server_cert_path = pki.write_certificate(self.dir / "server.crt", server_cert)
        self.server_key_path = pki.write_private_key(self.dir / "server.key", server_key, overwrite=True)

    # ------------------------------------------------------------------------------------- identities

    def issue_client(self, common_name: str, *, validity_days: int = 30) -> tuple[Path, Path]:
        """A client certificate + key (0600) signed by the broker's CA, CN = `common_name` (the MQTT
        username the ACLs see). Returns (cert_path, key_path) under `<dir>/clients/`."""
        key = pki.generate_key()
        cert = pki.issue_client_certificate(
            self.ca, key.public_key(), common_name, validity_days=validity_days
        )
        cert_path = pki.write_certificate(self.clients_dir / f"{common_name}.crt", cert)
        key_path = pki.write_private_key(self.clients_dir / f"{common_name}.key", key, overwrite=True)
        return cert_path, key_path

    def service_cert(self) -> tuple[Path, Path]:
        """The privileged service user's (cert_path, key_path), issued on first use."""
        cert_path = self.clients_dir / f"{SERVICE_USER}.crt"
        key_path = self.clients_dir / f"{SERVICE_USER}.key"
        if cert_path.exists() and key_path.exists():
            return cert_path, key_path
        return self.issue_client(SERVICE_USER)

    def service_endpoint(self) -> BrokerEndpoint:
        """Where and how the local services (shadow service, observers) connect: TLS as `SERVICE_USER`."""
        from cloud.local.shadow_service import BrokerEndpoint

        cert, key = self.service_cert()
        return BrokerEndpoint(self.host, self.port, tls_ca=self.ca_path, tls_cert=cert, tls_key=key)

    def issue_claim(self, common_name: str = "claim-factory") -> tuple[Path, Path]:
        """A fleet-provisioning claim identity: its (cert_path, key_path), and an ACL block giving it the
        provisioning topics (CLAIM_ACL_TOPICS; like every client it also matches the patterns for its own
        name, which no device has). Applied at once when the broker runs."""
        if f"user {common_name}" not in self._extra_acl:
            self.add_acl([f"user {common_name}", *(f"topic readwrite {t}" for t in CLAIM_ACL_TOPICS)])
        return self.issue_client(common_name)

    # ------------------------------------------------------------------------------------------ config

    def _acl_text(self) -> str:
        lines = ["# every client: its own thing's topics (username = certificate CN)", *DEVICE_ACL_PATTERNS]
        lines += ["", f"user {SERVICE_USER}", "topic readwrite #", "topic readwrite $aws/#", ""]
        lines += self._extra_acl
        return "\n".join(lines) + "\n"

    def _conf_text(self) -> str:
        lines = [
            "per_listener_settings false",
            *(
                ("persistence true", f"persistence_location {self.dir}/")
                if self.persistence
                else ("persistence false",)
            ),
            "allow_anonymous false",
            f"acl_file {self.acl_path}",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "set_tcp_nodelay true",  # send each small MQTT packet at once: halves the round-trip latency
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # keep reading the 0600 server key instead of dropping to 'mosquitto'
        if self.plain_port is not None:
            lines.append(f"password_file {self.passwd_path}")
        lines += [
            "",
            f"listener {self.port} {self.host}",
            f"cafile {self.ca_path}",
            f"certfile {self.server_cert_path}",
            f"keyfile {self.server_key_path}",
            "tls_version tlsv1.2",
            "require_certificate true",
            "use_identity_as_username true",
        ]
        if self.crl_path is not None:
            lines.append(f"crlfile {self.crl_path}")
        if self.plain_port is not None:
            lines += ["", f"listener {self.plain_port} 127.0.0.1"]
        return "\n".join(lines) + "\n"

    def _write_config(self) -> None:
        pki.write_file_atomic(self.acl_path, self._acl_text().encode(), mode=0o600)
        if self.plain_port is not None:
            line = f"{SERVICE_USER}:{mosquitto_password_hash(self.service_password)}\n"
            pki.write_file_atomic(self.passwd_path, line.encode(), mode=0o600)
        pki.write_file_atomic(self.conf_path, self._conf_text().encode(), mode=0o600)

    def add_acl(self, lines: Sequence[str]) -> None:
        """Append ACL lines (e.g. a `user NAME` block); a running broker reloads them at once."""
        self._extra_acl += list(lines)
        pki.write_file_atomic(self.acl_path, self._acl_text().encode(), mode=0o600)
        if self.running:
            assert self._proc is not None
            self._proc.send_signal(signal.SIGHUP)
            time.sleep(0.2)  # mosquitto applies the reload on its next loop iteration

    # --------------------------------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> Broker:
        """Launch Mosquitto and wait until the TLS port accepts connections (at most 10 s per try)."""
        if self.running:
            return self
        first_start = self.port == 0
        for _attempt in range(5):
            if first_start:
                self.port = free_port()
                if self.plain_port is not None:
                    self.plain_port = free_port()
            self._write_config()
            if self._launch():
                return self
            if not first_start:
                time.sleep(0.5)  # the port may still be held by the previous process: try again
        raise RuntimeError(f"mosquitto did not start on port {self.port}; log:\n{self.log_text()}")

    def _running_lines(self) -> int:
        return self.log_text().count(" running")

    def _launch(self) -> bool:
        """Start mosquitto; True once it logged "mosquitto version ... running" (its signal handlers are
        installed by then, so an early SIGHUP cannot kill it) and its ports accept connections."""
        runs_before = self._running_lines()
        with open(self.dir / "mosquitto.stderr", "ab") as stderr:
            self._proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        deadline = time.monotonic() + _START_TIMEOUT_S
        ports = [self.port] + ([self.plain_port] if self.plain_port else [])
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._proc = None
                return False
            if self._running_lines() > runs_before and all(_port_accepts(self.host, p) for p in ports):
                return True
            time.sleep(0.02)
        self.stop()
        return False

    def stop(self) -> None:
        """Terminate the broker (SIGTERM, SIGKILL after 5 s); idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def restart(self) -> Broker:
        """Stop, then start again on the same port(s)."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop and remove the working directory (when the Broker created it)."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
