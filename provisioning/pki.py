"""Fleet PKI: the certificate authority that signs ANC Edge device certificates, on `cryptography`.

What it does, and nothing else (no CLI, no AWS):
- `create_ca` makes a self-signed fleet CA (EC P-256 by default, RSA 2048 optional); `save_ca` writes it
  with the private key encrypted at rest under a passphrase, `load_ca` reads it back
  (`WrongPassphraseError` when the passphrase does not open the key).
- `generate_key` + `make_csr` make a key and a certificate signing request (what a device or a secure
  element does); `verify_csr` checks its signature and, optionally, that it carries an expected public key.
- `issue_client_certificate` signs a CSR or public key into a TLS client certificate (clientAuth EKU,
  digitalSignature key usage, SKI/AKI, CN = the thing name); `issue_server_certificate` makes a broker's
  server certificate (serverAuth, SAN DNS:localhost + IP:127.0.0.1 by default).
- `build_crl` makes the CA's certificate revocation list; `verify_issued_by` checks that a certificate was
  signed by the CA and is valid now.
- `write_private_key` / `write_file_atomic` write files atomically (temp file + fsync + rename + directory
  fsync); private keys are created with mode 0600 from the first byte (`os.open(O_CREAT | O_EXCL, 0o600)`),
  never chmod-ed afterwards.

Validity defaults: CA 20 years, device certificates 10 years (devices in the field cannot always renew;
revocation goes through the CRL and AWS IoT deactivation), broker server certificates 825 days.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar, get_args

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KeyAlgorithm = Literal["ec-p256", "rsa-2048"]
KEY_ALGORITHMS: tuple[str, ...] = get_args(KeyAlgorithm)

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey
_Loaded = TypeVar("_Loaded", x509.Certificate, x509.CertificateSigningRequest)

CA_VALIDITY_DAYS = 7305
DEVICE_VALIDITY_DAYS = 3650
SERVER_VALIDITY_DAYS = 825
# Backdating absorbs clock skew between the signer and a freshly booted device.
_BACKDATE = dt.timedelta(minutes=5)


class PkiError(ValueError):
    """A certificate, key or CSR is unusable; the message names what and why."""


class WrongPassphraseError(PkiError):
    """The passphrase does not decrypt the CA private key."""


@dataclass(frozen=True)
class CertificateAuthority:
    """A loaded fleet CA: its certificate and its (decrypted, in-memory) private key."""

    certificate: x509.Certificate
    private_key: PrivateKey


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def generate_key(algorithm: KeyAlgorithm = "ec-p256") -> PrivateKey:
    """A new private key: EC on P-256 ("ec-p256") or RSA 2048 bits ("rsa-2048")."""
    if algorithm == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "rsa-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise PkiError(f"key algorithm: {algorithm!r} is not one of {', '.join(KEY_ALGORITHMS)}")


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _serial() -> int:
    # 159 random bits: positive, at most 20 octets (RFC 5280), unpredictable.
    return secrets.randbits(159) | 1


def _certificate_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: PublicKey,
    now: dt.datetime,
    not_after: dt.datetime,
    *,
    is_ca: bool,
) -> x509.CertificateBuilder:
    """A builder with subject, issuer, key, a fresh serial, validity from `now` (backdated) to `not_after`
    (both UTC), and the basic constraints of an end entity or (`is_ca`) of a CA without sub-CAs."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(_serial())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=0 if is_ca else None), critical=True)
    )


def _key_usage(*, signs_certificates: bool, key_encipherment: bool = False) -> x509.KeyUsage:
    """digitalSignature always; keyCertSign and cRLSign for a CA; keyEncipherment for RSA key exchange."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def create_ca(
    common_name: str = "ANC Edge Fleet CA",
    *,
    algorithm: KeyAlgorithm = "ec-p256",
    organization: str | None = "ANC Edge",
    validity_days: int = CA_VALIDITY_DAYS,
) -> CertificateAuthority:
    """A new self-signed CA allowed to sign certificates and CRLs (path length 0: no sub-CAs)."""
    key = generate_key(algorithm)
    name = _name(common_name, organization)
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        _certificate_builder(
            name, name, key.public_key(), now, now + dt.timedelta(days=validity_days), is_ca=True
        )
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(certificate=cert, private_key=key)


def make_csr(key: PrivateKey, common_name: str) -> x509.CertificateSigningRequest:
    """A CSR for `common_name` signed by `key` (SHA-256)."""
    return x509.CertificateSigningRequestBuilder().subject_name(_name(common_name)).sign(key, hashes.SHA256())


def csr_pem(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.PEM)


def csr_der(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.DER)


def crl_pem(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.PEM)


def _load_pem_or_der(
    data: bytes,
    load_pem: Callable[[bytes], _Loaded],
    load_der: Callable[[bytes], _Loaded],
    field: str,
    kind: str,
) -> _Loaded:
    """`load_pem(data)` when `data` is PEM, else `load_der(data)`; PkiError naming `field` and `kind` when
    it is neither."""
    try:
        if b"-----BEGIN" in data:
            return load_pem(data)
        return load_der(data)
    except ValueError as exc:
        raise PkiError(f"{field}: not a PEM or DER {kind} ({exc})") from exc


def load_csr(data: bytes) -> x509.CertificateSigningRequest:
    """Parse a PEM (or DER) CSR; PkiError when it is neither."""
    return _load_pem_or_der(
        data, x509.load_pem_x509_csr, x509.load_der_x509_csr, "csr", "certificate signing request"
    )


def _public_bytes(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_of(item: x509.Certificate | x509.CertificateSigningRequest) -> PublicKey:
    """The EC or RSA public key a certificate or CSR carries; PkiError for any other key type."""
    key = item.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise PkiError(f"key type {type(key).__name__} is not one of EC, RSA")
    return key


def same_public_key(a: CertificatePublicKeyTypes, b: CertificatePublicKeyTypes) -> bool:
    """True when both are the same public key (compared as DER SubjectPublicKeyInfo)."""
    return _public_bytes(a) == _public_bytes(b)


def verify_csr(csr: x509.CertificateSigningRequest, expected_public_key: PublicKey | None = None) -> None:
    """Raise PkiError unless the CSR's self-signature is valid, its key is EC P-256/P-384 or RSA >= 2048,
    and (when given) its public key equals `expected_public_key`."""
    if not csr.is_signature_valid:
        raise PkiError("csr: signature does not verify (corrupted, or not signed by the key it carries)")
    key = csr.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ("secp256r1", "secp384r1"):
            raise PkiError(f"csr: EC curve {key.curve.name} is not one of secp256r1, secp384r1")
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise PkiError(f"csr: RSA key of {key.key_size} bits is below the 2048-bit minimum")
    else:
        raise PkiError(f"csr: key type {type(key).__name__} is not one of EC, RSA")
    if expected_public_key is not None and not same_public_key(key, expected_public_key):
        raise PkiError("csr: its public key does not match the expected key")


def _client_or_server_certificate(
    ca: CertificateAuthority,
    public_key: PublicKey,
    common_name: str,
    validity_days: int,
    eku: x509.ObjectIdentifier,
    san: x509.SubjectAlternativeName | None,
) -> x509.Certificate:
    if validity_days < 1:
        raise PkiError(f"validity_days: {validity_days} must be >= 1")
    now = _now()
    ca_cert = ca.certificate
    not_after = min(now + dt.timedelta(days=validity_days), ca_cert.not_valid_after_utc)
    builder = (
        _certificate_builder(_name(common_name), ca_cert.subject, public_key, now, not_after, is_ca=False)
        .add_extension(
            # RSA key exchange needs keyEncipherment; EC (ECDHE) does not.
            _key_usage(signs_certificates=False, key_encipherment=isinstance(public_key, rsa.RSAPublicKey)),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.private_key.public_key()), critical=False
        )
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(ca.private_key, hashes.SHA256())


def issue_client_certificate(
    ca: CertificateAuthority,
    subject: x509.CertificateSigningRequest | PublicKey,
    common_name: str,
    *,
    validity_days: int = DEVICE_VALIDITY_DAYS,
) -> x509.Certificate:
    """A TLS client certificate (device, claim or service identity) with CN = `common_name`.

    `subject` is a CSR (verified first with `verify_csr`; only its public key is used, never its subject
    or extensions) or a bare public key. Validity never extends past the CA's own.
    """
    if isinstance(subject, x509.CertificateSigningRequest):
        verify_csr(subject)
        public_key = public_key_of(subject)
    else:
        public_key = subject
    return _client_or_server_certificate(
        ca, public_key, common_name, validity_days, ExtendedKeyUsageOID.CLIENT_AUTH, None
    )


def issue_server_certificate(
    ca: CertificateAuthority,
    public_key: PublicKey,
    *,
    common_name: str = "localhost",
    dns_names: Sequence[str] = ("localhost",),
    ip_addresses: Sequence[str] = ("127.0.0.1",),
    validity_days: int = SERVER_VALIDITY_DAYS,
) -> x509.Certificate:
    """A TLS server certificate for a broker (serverAuth EKU, SAN DNS names and IP addresses)."""
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    return _client_or_server_certificate(
        ca,
        public_key,
        common_name,
        validity_days,
        ExtendedKeyUsageOID.SERVER_AUTH,
        x509.SubjectAlternativeName(names),
    )


def build_crl(
    ca: CertificateAuthority,
    revoked: Iterable[tuple[int, dt.datetime]],
    *,
    next_update_days: int = 30,
) -> x509.CertificateRevocationList:
    """The CA's CRL listing `revoked` (certificate serial number, revocation time in UTC)."""
    now = _now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(now - _BACKDATE)
        .next_update(now + dt.timedelta(days=next_update_days))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.private_key.public_key()), critical=False
        )
    )
    for serial, when in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    return builder.sign(ca.private_key, hashes.SHA256())


def verify_issued_by(
    cert: x509.Certificate, ca_cert: x509.Certificate, *, at: dt.datetime | None = None
) -> None:
    """Raise PkiError unless `cert` is signed by `ca_cert` and valid at `at` (default now)."""
    when = at or _now()
    subject = cert.subject.rfc4514_string()
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise PkiError(
            f"certificate {subject}: not issued by this CA ({ca_cert.subject.rfc4514_string()})"
        ) from exc
    if when < cert.not_valid_before_utc:
        raise PkiError(f"certificate {subject}: not valid before {cert.not_valid_before_utc.isoformat()}")
    if when > cert.not_valid_after_utc:
        raise PkiError(f"certificate {subject}: expired on {cert.not_valid_after_utc.isoformat()}")


def common_name(cert: x509.Certificate | x509.CertificateSigningRequest) -> str:
    """The subject's CN (empty string when there is none)."""
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


def fingerprint_sha256(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint of the DER certificate, lowercase hex without separators (the AWS IoT
    certificate id has the same form)."""
    return cert.fingerprint(hashes.SHA256()).hex()


# ---------------------------------------------------------------------------------------------- encoding


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_certificate(data: bytes) -> x509.Certificate:
    """Parse one PEM (or DER) certificate; PkiError when it is neither."""
    return _load_pem_or_der(
        data,
        x509.load_pem_x509_certificate,
        x509.load_der_x509_certificate,
        "certificate",
        "X.509 certificate",
    )


def private_key_pem(key: PrivateKey, passphrase: bytes | None = None) -> bytes:
    """PKCS#8 PEM, encrypted with the best available scheme when `passphrase` is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def public_key_pem(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(data: bytes, passphrase: bytes | None = None) -> PrivateKey:
    """Parse a PEM private key; WrongPassphraseError when the passphrase is missing or wrong."""
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError as exc:
        raise WrongPassphraseError("private key: encrypted, and no passphrase was given") from exc
    except ValueError as exc:
        if b"ENCRYPTED" in data:
            raise WrongPassphraseError("private key: the passphrase does not decrypt it") from exc
        raise PkiError(f"private key: not a PEM private key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise PkiError(f"private key: type {type(key).__name__} is not one of EC, RSA")
    return key


# ------------------------------------------------------------------------------------------------ files


def fsync_dir(directory: Path) -> None:
    """fsync a directory, so renames inside it survive a power cut."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new_file(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644) -> Path:
    """Create `path` (O_CREAT | O_EXCL with `mode` from the first byte; FileExistsError if it exists),
    write `data` and fsync it. No rename: meant for files inside a fresh temp directory that is itself
    renamed into place (the caller fsyncs the directory once, not once per file)."""
    target = Path(path)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        target.unlink(missing_ok=True)
        raise
    os.close(fd)
    return target


def write_file_atomic(
    path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644, overwrite: bool = True
) -> Path:
    """Write `data` to `path` atomically: a temp file in the same directory created with `mode`
    (O_CREAT | O_EXCL, so a secret is never readable by others, not even briefly), fsync, then rename.

    With `overwrite=False` an existing `path` raises FileExistsError and is left untouched (the final
    step is a hard link, which fails atomically when the name exists). Returns the path written.
    """
    target = Path(path)
    directory = target.parent
    directory.mkdir(parents=True, exist_ok=True)
    if not overwrite and target.exists():
        raise FileExistsError(f"{target}: already exists")
    tmp = write_new_file(directory / f".{target.name}.{secrets.token_hex(6)}.tmp", data, mode=mode)
    try:
        if overwrite:
            os.replace(tmp, target)
        else:
            os.link(tmp, target)  # FileExistsError if someone created it meanwhile
            os.unlink(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(directory)
    return target


def write_private_key(
    path: str | os.PathLike[str],
    key: PrivateKey,
    *,
    passphrase: bytes | None = None,
    overwrite: bool = False,
) -> Path:
    """Write `key` as PKCS#8 PEM (encrypted when `passphrase` is given) to a 0600 file, atomically.
    Refuses to replace an existing key unless `overwrite` (FileExistsError)."""
    return write_file_atomic(path, private_key_pem(key, passphrase), mode=0o600, overwrite=overwrite)


def write_certificate(
    path: str | os.PathLike[str], cert: x509.Certificate, *, overwrite: bool = True
) -> Path:
    """Write `cert` as PEM (mode 0644), atomically."""
    return write_file_atomic(path, certificate_pem(cert), mode=0o644, overwrite=overwrite)


def save_ca(
    ca: CertificateAuthority,
    cert_path: str | os.PathLike[str],
    key_path: str | os.PathLike[str],
    passphrase: bytes,
    *,
    overwrite: bool = False,
) -> None:
    """Write the CA certificate and its key, the key encrypted with `passphrase` (required, non-empty)."""
    if not passphrase:
        raise PkiError("passphrase: the CA key must be encrypted at rest; an empty passphrase is refused")
    write_private_key(key_path, ca.private_key, passphrase=passphrase, overwrite=overwrite)
    write_certificate(cert_path, ca.certificate, overwrite=overwrite)


def load_ca(
    cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str], passphrase: bytes
) -> CertificateAuthority:
    """Read a CA written by `save_ca`; WrongPassphraseError for a wrong passphrase, PkiError when the key
    does not belong to the certificate."""
    cert = load_certificate(Path(cert_path).read_bytes())
    key = load_private_key(Path(key_path).read_bytes(), passphrase)
    if not same_public_key(key.public_key(), cert.public_key()):
        raise PkiError(f"{key_path}: this key does not belong to the CA certificate {cert_path}")
    return CertificateAuthority(certificate=cert, private_key=key)


def temporary_directory_next_to(target: str | os.PathLike[str]) -> Path:
    """A fresh 0700 directory beside `target` (same filesystem, so it can be renamed onto `target`)."""
    parent = Path(target).absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{Path(target).name}.", suffix=".tmp", dir=parent))
