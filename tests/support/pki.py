"""Shared helpers for tests that use the fleet PKI and `anc-provision`: the test passphrase, the type of
the in-process CLI runner (fixture `run_cli` in tests/provisioning/conftest.py), and a fleet CA maker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from provisioning import pki

PASSPHRASE = "correct horse battery staple"

# run_cli("--home", home, "ca", "show") -> (exit code, parsed --json output)
RunCli = Callable[..., tuple[int, dict[str, Any]]]


def write_fleet_ca(directory: Path, passphrase: str = PASSPHRASE) -> pki.CertificateAuthority:
    """A new fleet CA saved as directory/ca.pem + directory/ca.key (encrypted), as `anc-provision ca init`
    lays it out; returns it with its key loaded."""
    ca = pki.create_ca("ANC Edge Test Fleet CA")
    pki.save_ca(ca, directory / "ca.pem", directory / "ca.key", passphrase.encode())
    return ca
