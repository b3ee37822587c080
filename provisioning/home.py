"""The fleet home: where `anc-provision` keeps the fleet CA, the issued device identities and the CRL.

Layout (all under `--home`, default `$ANC_PROVISION_HOME`, else `$XDG_DATA_HOME/anc-provision`, else
`~/.local/share/anc-provision`):

    ca/ca.pem             fleet CA certificate
    ca/ca.key             fleet CA private key, PKCS#8 encrypted with the passphrase, mode 0600
    ca/crl.pem            certificate revocation list (rewritten by every revoke)
    ca/revoked.json       what the CRL lists: {serial_hex: {"thing_name", "revoked_at"}}
    ca/aws.json           the CA's AWS IoT registration ({"ca_certificate_id": ...}), once registered
    devices/<thing>/      one directory per device, created atomically (temp dir + rename):
        device.crt        its certificate (CN = thing name)
        device.key        its private key, mode 0600 (absent when the device sent a CSR and keeps its key)
        device.json       metadata: serial, thing_name, certificate_id, serial_number, not_after, profile
        aws.json          its AWS IoT registration, once registered

Nothing here logs or returns key material: callers get paths and metadata only.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from provisioning import naming, pki
from provisioning.errors import AlreadyExistsError, BadInputError, NotFoundError

HOME_ENV = "ANC_PROVISION_HOME"


def default_home() -> Path:
    """`$ANC_PROVISION_HOME`, else `$XDG_DATA_HOME/anc-provision`, else `~/.local/share/anc-provision`."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "anc-provision"


@dataclass(frozen=True)
class DeviceRecord:
    """What the fleet home knows about one device (paths and public facts; never key material)."""

    thing_name: str
    serial: str
    certificate_path: str
    key_path: str | None  # None: the device keeps its own key (issued from a CSR)
    certificate_id: str  # SHA-256 of the DER certificate, hex (the AWS IoT certificate id)
    serial_number: str  # certificate serial number, hex
    not_after: str  # ISO 8601, UTC
    profile: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _write_json(path: Path, data: dict[str, Any], *, mode: int = 0o644) -> None:
    pki.write_file_atomic(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode(), mode=mode)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise BadInputError(f"{path}: unreadable or not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise BadInputError(f"{path}: expected a JSON object")
    return data


class FleetHome:
    """The fleet home directory; see the module docstring for the layout."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = (Path(root).expanduser() if root is not None else default_home()).absolute()
        self.ca_dir = self.root / "ca"
        self.ca_cert_path = self.ca_dir / "ca.pem"
        self.ca_key_path = self.ca_dir / "ca.key"
        self.crl_path = self.ca_dir / "crl.pem"
        self.revoked_path = self.ca_dir / "revoked.json"
        self.ca_aws_path = self.ca_dir / "aws.json"
        self.devices_dir = self.root / "devices"

    # ---------------------------------------------------------------------------------------------- CA

    def has_ca(self) -> bool:
        return self.ca_cert_path.exists() or self.ca_key_path.exists()

    def init_ca(
        self,
        passphrase: bytes,
        *,
        algorithm: pki.KeyAlgorithm = "ec-p256",
        common_name: str = "ANC Edge Fleet CA",
        validity_days: int = pki.CA_VALIDITY_DAYS,
    ) -> x509.Certificate:
        """Create the fleet CA (refused with AlreadyExistsError when one exists: a CA is never replaced)."""
        if self.has_ca():
            raise AlreadyExistsError(f"{self.ca_dir}: a fleet CA already exists; refusing to replace it")
        if algorithm not in pki.KEY_ALGORITHMS:
            raise BadInputError(f"algorithm: {algorithm!r} is not one of {', '.join(pki.KEY_ALGORITHMS)}")
        if not passphrase:
            raise BadInputError("passphrase: empty; the CA key must be encrypted at rest")
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.ca_dir.mkdir(exist_ok=True, mode=0o700)
        ca = pki.create_ca(common_name, algorithm=algorithm, validity_days=validity_days)
        try:
            pki.save_ca(ca, self.ca_cert_path, self.ca_key_path, passphrase)
        except FileExistsError as exc:
            raise AlreadyExistsError(f"{exc}; refusing to replace the fleet CA") from exc
        self.write_crl(ca)
        return ca.certificate

    def ca_certificate(self) -> x509.Certificate:
        if not self.ca_cert_path.exists():
            raise NotFoundError(f"{self.ca_cert_path}: no fleet CA; run 'anc-provision ca init' first")
        return pki.load_certificate(self.ca_cert_path.read_bytes())

    def load_ca(self, passphrase: bytes) -> pki.CertificateAuthority:
        """The CA with its decrypted key; BadInputError for a wrong passphrase, NotFoundError without a CA."""
        self.ca_certificate()
        try:
            return pki.load_ca(self.ca_cert_path, self.ca_key_path, passphrase)
        except pki.WrongPassphraseError as exc:
            raise BadInputError(
                f"CA passphrase: wrong ({self.ca_key_path} does not decrypt with it)"
            ) from exc
        except pki.PkiError as exc:
            raise BadInputError(str(exc)) from exc

    # ----------------------------------------------------------------------------------------- devices

    def device_dir(self, thing_name: str) -> Path:
        return self.devices_dir / naming.validate_thing_name(thing_name)

    def has_device(self, thing_name: str) -> bool:
        return (self.device_dir(thing_name) / "device.json").exists()

    def device(self, thing_name: str) -> DeviceRecord:
        """The stored record of `thing_name`; NotFoundError when it was never issued here."""
        path = self.device_dir(thing_name) / "device.json"
        if not path.exists():
            raise NotFoundError(f"thing {thing_name!r}: not issued in {self.root} (no {path})")
        data = _read_json(path)
        try:
            return DeviceRecord(
                thing_name=str(data["thing_name"]),
                serial=str(data["serial"]),
                certificate_path=str(data["certificate_path"]),
                key_path=str(data["key_path"]) if data.get("key_path") else None,
                certificate_id=str(data["certificate_id"]),
                serial_number=str(data["serial_number"]),
                not_after=str(data["not_after"]),
                profile=str(data["profile"]) if data.get("profile") else None,
            )
        except KeyError as exc:
            raise BadInputError(f"{path}: missing key {exc.args[0]!r}") from exc

    def device_certificate(self, thing_name: str) -> x509.Certificate:
        return pki.load_certificate(Path(self.device(thing_name).certificate_path).read_bytes())

    def issue_device(
        self,
        ca: pki.CertificateAuthority,
        thing_name: str,
        *,
        serial: str,
        csr: x509.CertificateSigningRequest | None = None,
        expected_public_key: pki.PublicKey | None = None,
        algorithm: pki.KeyAlgorithm = "ec-p256",
        validity_days: int = pki.DEVICE_VALIDITY_DAYS,
        profile: str | None = None,
    ) -> DeviceRecord:
        """Issue `thing_name`'s certificate: from `csr` (verified; checked against `expected_public_key`
        when given) or from a key generated here. The device directory appears complete or not at all;
        AlreadyExistsError when the thing was already issued."""
        naming.validate_thing_name(thing_name)
        final = self.device_dir(thing_name)
        if final.exists():
            raise AlreadyExistsError(
                f"thing {thing_name!r}: already issued ({final}); revoke it or pick another"
            )
        key: pki.PrivateKey | None = None
        if csr is not None:
            try:
                pki.verify_csr(csr, expected_public_key)
            except pki.PkiError as exc:
                raise BadInputError(str(exc)) from exc
            subject: x509.CertificateSigningRequest | pki.PublicKey = csr
        else:
            key = pki.generate_key(algorithm)
            subject = key.public_key()
        cert = pki.issue_client_certificate(ca, subject, thing_name, validity_days=validity_days)
        self.devices_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = pki.temporary_directory_next_to(final)
        try:
            pki.write_new_file(tmp / "device.crt", pki.certificate_pem(cert))
            if key is not None:
                pki.write_new_file(tmp / "device.key", pki.private_key_pem(key), mode=0o600)
            record = DeviceRecord(
                thing_name=thing_name,
                serial=serial,
                certificate_path=str(final / "device.crt"),
                key_path=str(final / "device.key") if key is not None else None,
                certificate_id=pki.fingerprint_sha256(cert),
                serial_number=format(cert.serial_number, "x"),
                not_after=cert.not_valid_after_utc.isoformat(),
                profile=profile,
            )
            pki.write_new_file(tmp / "device.json", (json.dumps(record.to_dict(), indent=2) + "\n").encode())
            pki.fsync_dir(tmp)
            try:
                os.rename(tmp, final)  # fails when `final` appeared meanwhile (non-empty directory)
            except OSError as exc:
                raise AlreadyExistsError(f"thing {thing_name!r}: already issued ({final})") from exc
            pki.fsync_dir(self.devices_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return record

    def aws_record(self, thing_name: str) -> dict[str, Any]:
        return _read_json(self.device_dir(thing_name) / "aws.json")

    def save_aws_record(self, thing_name: str, data: dict[str, Any]) -> None:
        _write_json(self.device_dir(thing_name) / "aws.json", data)

    def ca_aws_record(self) -> dict[str, Any]:
        return _read_json(self.ca_aws_path)

    def save_ca_aws_record(self, data: dict[str, Any]) -> None:
        _write_json(self.ca_aws_path, data)

    # -------------------------------------------------------------------------------------- revocation

    def revoked(self) -> dict[str, dict[str, str]]:
        """{certificate serial (hex): {"thing_name", "revoked_at"}} of every revoked certificate."""
        return _read_json(self.revoked_path)

    def is_revoked(self, cert: x509.Certificate) -> bool:
        return format(cert.serial_number, "x") in self.revoked()

    def write_crl(self, ca: pki.CertificateAuthority) -> Path:
        """Rewrite ca/crl.pem from ca/revoked.json, signed by `ca`."""
        entries = [
            (int(serial_hex, 16), dt.datetime.fromisoformat(info["revoked_at"]))
            for serial_hex, info in self.revoked().items()
        ]
        crl = pki.build_crl(ca, entries)
        return pki.write_file_atomic(self.crl_path, pki.crl_pem(crl))

    def revoke_device(self, ca: pki.CertificateAuthority, thing_name: str) -> tuple[str, Path]:
        """Add `thing_name`'s certificate to the CRL and rewrite crl.pem. Returns (serial hex, CRL path).
        Idempotent: revoking twice keeps the first revocation time."""
        record = self.device(thing_name)
        revoked = self.revoked()
        if record.serial_number not in revoked:
            revoked[record.serial_number] = {
                "thing_name": thing_name,
                "revoked_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
            }
            _write_json(self.revoked_path, revoked)
        return record.serial_number, self.write_crl(ca)
