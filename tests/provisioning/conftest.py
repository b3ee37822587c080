"""Fixtures for the provisioning tests: the real Mosquitto broker, a fleet home with a CA, and a way to
run `anc-provision` in-process and read its --json answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from provisioning import cli
from tests.support.broker import broker, broker_session  # noqa: F401
from tests.support.pki import PASSPHRASE, RunCli


@pytest.fixture
def passphrase_file(tmp_path: Path) -> Path:
    path = tmp_path / "pass.txt"
    path.write_text(PASSPHRASE + "\n")
    return path


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> RunCli:
    """run_cli("--home", h, "ca", "show") -> (exit code, parsed --json output); --json is appended."""
    monkeypatch.delenv("ANC_CA_PASSPHRASE", raising=False)
    monkeypatch.delenv("ANC_PROVISION_HOME", raising=False)

    def run(*args: str) -> tuple[int, dict[str, Any]]:
        capsys.readouterr()
        code = cli.main([*map(str, args), "--json"])
        out = capsys.readouterr().out
        return code, json.loads(out) if out.strip() else {}

    return run


@pytest.fixture
def fleet(tmp_path: Path, passphrase_file: Path, run_cli: RunCli) -> Path:
    """A fleet home with a fresh CA (EC P-256, passphrase in `passphrase_file`)."""
    home = tmp_path / "fleet"
    code, result = run_cli("--home", home, "ca", "init", "--passphrase-file", passphrase_file)
    assert code == 0, result
    return home
