"""A real Mosquitto on a free port with mutual TLS and per-device ACLs, for the sync tests.

Device certificates carry the thing name as CN; `use_identity_as_username` turns it into the user name,
and the ACL patterns give each device its own shadow and `anc/<thing>/...` topics only. The user `cloud`
(certificate CN `cloud`) may use every thing's shadow and `anc/` topics, as a shadow service would.
"""

from __future__ import annotations

import datetime as dt
import getpass
import ipaddress
import shutil
import socket
import subprocess
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
CLOUD_USER = "cloud"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)


def _cert(
    subject_cn: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    ca: bool,
    san: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


class TlsBroker:
    """Mosquitto with TLS >= 1.2 and client certificates, in `workdir`, on a free port."""

    def __init__(self, workdir: Path) -> None:
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host = "localhost"
        self._ca_key = ec.generate_private_key(ec.SECP256R1())
        self._ca = _cert("anc-test-ca", self._ca_key, None, self._ca_key, ca=True)
        self.ca_file = self.dir / "ca.pem"
        self.ca_file.write_bytes(self._ca.public_bytes(serialization.Encoding.PEM))
        server_key = ec.generate_private_key(ec.SECP256R1())
        san: list[x509.GeneralName] = [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]
        server = _cert("localhost", server_key, self._ca.subject, self._ca_key, ca=False, san=san)
        (self.dir / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
        _write_key(self.dir / "server.key", server_key)
        (self.dir / "acl").write_text(
            f"user {CLOUD_USER}\ntopic readwrite $aws/things/+/shadow/#\ntopic readwrite anc/#\n\n"
            "pattern readwrite $aws/things/%u/shadow/#\npattern readwrite anc/%u/#\n"
        )
        (self.dir / "mosquitto.conf").write_text(
            # as root, mosquitto drops to the `user` named here; keep the one that owns the files
            f"user {getpass.getuser()}\n"
            "per_listener_settings false\nallow_anonymous false\npersistence false\n"
            f"acl_file {self.dir / 'acl'}\nlog_dest file {self.dir / 'mosquitto.log'}\n"
            f"listener {self.port} 127.0.0.1\n"
            f"cafile {self.ca_file}\ncertfile {self.dir / 'server.pem'}\nkeyfile {self.dir / 'server.key'}\n"
            "require_certificate true\nuse_identity_as_username true\ntls_version tlsv1.2\n"
        )
        self._proc: subprocess.Popen[bytes] | None = None

    def issue_client(self, thing: str) -> tuple[Path, Path]:
        """A device certificate and key with CN = `thing`; returns (cert_file, key_file)."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(thing, key, self._ca.subject, self._ca_key, ca=False)
        cert_file, key_file = self.dir / f"{thing}.pem", self.dir / f"{thing}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key_file, key)
        return cert_file, key_file

    def cloud_section(self, thing: str, **extra: object) -> dict[str, object]:
        """A `cloud:` section of agent.yaml for `thing` against this broker."""
        cert_file, key_file = self.issue_client(thing)
        return {
            "thing_name": thing,
            "endpoint": self.host,
            "port": self.port,
            "ca_file": str(self.ca_file),
            "cert_file": str(cert_file),
            "key_file": str(key_file),
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 1.0,
            **extra,
        }

    def start(self) -> TlsBroker:
        with (self.dir / "mosquitto.stderr").open("ab") as err:
            self._proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.dir / "mosquitto.conf")], stdout=subprocess.DEVNULL, stderr=err
            )
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {(self.dir / 'mosquitto.stderr').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening within 10 s")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()
