"""The fleet PKI: certificates that openssl accepts, keys that nobody else can read, atomic writes."""

from __future__ import annotations

import datetime as dt
import os
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from provisioning import pki


def _openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def ca() -> pki.CertificateAuthority:
    return pki.create_ca("Test Fleet CA")


def test_device_certificate_verifies_with_openssl_and_has_client_auth_usage(
    ca: pki.CertificateAuthority, tmp_path: Path
) -> None:
    key = pki.generate_key()
    cert = pki.issue_client_certificate(ca, pki.make_csr(key, "anc-sn-1"), "anc-sn-1", validity_days=365)
    ca_path = pki.write_certificate(tmp_path / "ca.pem", ca.certificate)
    cert_path = pki.write_certificate(tmp_path / "device.crt", cert)
    verify = _openssl("verify", "-purpose", "sslclient", "-CAfile", str(ca_path), str(cert_path))
    assert verify.returncode == 0, verify.stderr
    text = _openssl("x509", "-in", str(cert_path), "-noout", "-text").stdout
    assert "Subject: CN = anc-sn-1" in text
    assert "TLS Web Client Authentication" in text
    assert "Digital Signature" in text
    assert "CA:FALSE" in text
    assert "X509v3 Subject Key Identifier" in text and "X509v3 Authority Key Identifier" in text
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=365) <= lifetime <= dt.timedelta(days=365, minutes=10)


def test_server_certificate_names_localhost_and_loopback(
    ca: pki.CertificateAuthority, tmp_path: Path
) -> None:
    cert = pki.issue_server_certificate(ca, pki.generate_key().public_key())
    ca_path = pki.write_certificate(tmp_path / "ca.pem", ca.certificate)
    cert_path = pki.write_certificate(tmp_path / "server.crt", cert)
    assert (
        _openssl("verify", "-purpose", "sslserver", "-CAfile", str(ca_path), str(cert_path)).returncode == 0
    )
    text = _openssl("x509", "-in", str(cert_path), "-noout", "-text").stdout
    assert "DNS:localhost" in text and "IP Address:127.0.0.1" in text
    assert "TLS Web Server Authentication" in text


def test_rsa_ca_signs_certificates_that_verify(tmp_path: Path) -> None:
    rsa_ca = pki.create_ca(algorithm="rsa-2048")
    cert = pki.issue_client_certificate(rsa_ca, pki.generate_key("rsa-2048").public_key(), "anc-sn-2")
    pki.verify_issued_by(cert, rsa_ca.certificate)
    assert rsa_ca.certificate.public_key().key_size == 2048  # type: ignore[union-attr]


def test_private_key_file_is_0600_and_encrypted_when_a_passphrase_is_given(
    ca: pki.CertificateAuthority, tmp_path: Path
) -> None:
    os.umask(0o022)
    path = pki.write_private_key(tmp_path / "ca.key", ca.private_key, passphrase=b"s3cret-pass")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in path.read_bytes()
    assert not list(tmp_path.glob(".*.tmp"))


def test_save_ca_then_load_with_wrong_passphrase_names_the_problem(
    ca: pki.CertificateAuthority, tmp_path: Path
) -> None:
    pki.save_ca(ca, tmp_path / "ca.pem", tmp_path / "ca.key", b"right-passphrase")
    loaded = pki.load_ca(tmp_path / "ca.pem", tmp_path / "ca.key", b"right-passphrase")
    assert loaded.certificate == ca.certificate
    with pytest.raises(pki.WrongPassphraseError, match="passphrase does not decrypt"):
        pki.load_ca(tmp_path / "ca.pem", tmp_path / "ca.key", b"wrong")


def test_empty_ca_passphrase_is_refused(ca: pki.CertificateAuthority, tmp_path: Path) -> None:
    with pytest.raises(pki.PkiError, match="passphrase"):
        pki.save_ca(ca, tmp_path / "ca.pem", tmp_path / "ca.key", b"")
    assert not list(tmp_path.iterdir())


def test_write_without_overwrite_keeps_the_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "device.key"
    target.write_bytes(b"original")
    with pytest.raises(FileExistsError):
        pki.write_private_key(target, pki.generate_key())
    assert target.read_bytes() == b"original"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["device.key"]


def test_csr_whose_key_differs_from_the_expected_key_is_rejected() -> None:
    csr = pki.make_csr(pki.generate_key(), "anc-sn-3")
    with pytest.raises(pki.PkiError, match="does not match the expected key"):
        pki.verify_csr(csr, pki.generate_key().public_key())


def test_csr_with_a_bad_signature_is_rejected() -> None:
    key, other = pki.generate_key(), pki.generate_key()
    # A CSR whose signature bytes were altered in transit.
    good = pki.make_csr(key, "anc-sn-4")
    forged_der = bytearray(pki.csr_der(good))
    forged_der[-5] ^= 0xFF  # corrupt the signature bytes
    with pytest.raises(pki.PkiError):
        pki.verify_csr(pki.load_csr(bytes(forged_der)))
    mismatched = (
        x509.CertificateSigningRequestBuilder().subject_name(good.subject).sign(other, hashes.SHA256())
    )
    pki.verify_csr(mismatched)  # a valid CSR, but for `other`'s key, not `key`'s
    with pytest.raises(pki.PkiError):
        pki.verify_csr(mismatched, key.public_key())


def test_certificate_from_a_foreign_ca_or_expired_is_refused(ca: pki.CertificateAuthority) -> None:
    foreign = pki.create_ca("Someone Else")
    cert = pki.issue_client_certificate(foreign, pki.generate_key().public_key(), "anc-sn-5")
    with pytest.raises(pki.PkiError, match="not issued by this CA"):
        pki.verify_issued_by(cert, ca.certificate)
    ours = pki.issue_client_certificate(ca, pki.generate_key().public_key(), "anc-sn-5", validity_days=1)
    with pytest.raises(pki.PkiError, match="expired"):
        pki.verify_issued_by(ours, ca.certificate, at=dt.datetime.now(dt.UTC) + dt.timedelta(days=2))


def test_crl_lists_the_revoked_certificate_and_openssl_refuses_it(
    ca: pki.CertificateAuthority, tmp_path: Path
) -> None:
    revoked = pki.issue_client_certificate(ca, pki.generate_key().public_key(), "anc-sn-6")
    kept = pki.issue_client_certificate(ca, pki.generate_key().public_key(), "anc-sn-7")
    crl = pki.build_crl(ca, [(revoked.serial_number, dt.datetime.now(dt.UTC))])
    ca_path = pki.write_certificate(tmp_path / "ca.pem", ca.certificate)
    crl_path = pki.write_file_atomic(tmp_path / "crl.pem", pki.crl_pem(crl))
    outcomes = {}
    for cert in (revoked, kept):
        path = pki.write_certificate(tmp_path / f"{pki.common_name(cert)}.crt", cert)
        result = _openssl(
            "verify", "-crl_check", "-CAfile", str(ca_path), "-CRLfile", str(crl_path), str(path)
        )
        outcomes[pki.common_name(cert)] = (result.returncode, result.stdout + result.stderr)
    assert outcomes["anc-sn-7"][0] == 0, outcomes
    assert outcomes["anc-sn-6"][0] != 0 and "certificate revoked" in outcomes["anc-sn-6"][1], outcomes
