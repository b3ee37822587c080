"""`anc-provision`: the documented contract, exit codes, and bad input that changes nothing."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from provisioning import pki
from tests.support.pki import PASSPHRASE, RunCli

ANC_PROVISION = str(Path(sys.executable).parent / "anc-provision")
PROFILE = "headphone-ff-48k"


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_minimum_contract_runs_as_documented(tmp_path: Path) -> None:
    (tmp_path / "pass.txt").write_text(PASSPHRASE + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANC_", "AWS_"))}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [ANC_PROVISION, "--home", "./fleet", *args], cwd=tmp_path, env=env, capture_output=True, text=True
        )

    assert run("ca", "init", "--passphrase-file", "pass.txt").returncode == 0
    shown = run("ca", "show", "--json")
    ca_info = json.loads(shown.stdout)
    assert Path(ca_info["certificate"]).is_file()
    assert ca_info["fingerprint"] == pki.fingerprint_sha256(
        pki.load_certificate(Path(ca_info["certificate"]).read_bytes())
    )
    issued = run("device", "issue", "SN-000123", "--passphrase-file", "pass.txt", "--json")
    device = json.loads(issued.stdout)
    assert device["thing_name"] == "anc-sn-000123"
    assert Path(device["certificate_path"]).is_file() and Path(device["key_path"]).is_file()
    bundled = run(
        "bundle", "anc-sn-000123", "--out", "./bundle", "--endpoint", "localhost:8883", "--profile", PROFILE
    )
    assert bundled.returncode == 0, bundled.stderr
    assert sorted(os.listdir(tmp_path / "bundle")) == [
        "agent.yaml",
        "device.crt",
        "device.key",
        "root-ca.pem",
    ]
    for output in (shown, issued, bundled):
        assert "PRIVATE KEY" not in output.stdout + output.stderr


def test_help_lists_the_exit_codes_for_every_command() -> None:
    for args in (["--help"], ["ca", "init", "--help"], ["device", "issue", "--help"], ["bulk", "--help"]):
        out = subprocess.run([ANC_PROVISION, *args], capture_output=True, text=True)
        assert out.returncode == 0
        assert "exit codes:" in out.stdout and "3  already exists" in out.stdout


def test_home_and_passphrase_come_from_the_environment(
    tmp_path: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANC_PROVISION_HOME", str(tmp_path / "env-home"))
    monkeypatch.setenv("ANC_CA_PASSPHRASE", PASSPHRASE)
    assert run_cli("ca", "init")[0] == 0
    code, device = run_cli("device", "issue", "SN-9")
    assert code == 0
    assert device["certificate_path"].startswith(str(tmp_path / "env-home"))


def test_device_key_is_0600_and_json_output_never_holds_key_material(
    fleet: Path, passphrase_file: Path, run_cli: RunCli
) -> None:
    code, device = run_cli("--home", fleet, "device", "issue", "SN-1", "--passphrase-file", passphrase_file)
    assert code == 0
    assert stat.S_IMODE(Path(device["key_path"]).stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(fleet / "ca" / "ca.key").stat().st_mode) == 0o600
    assert "PRIVATE KEY" not in json.dumps(device)


@pytest.mark.parametrize("serial", ["SN 1", "sn/1", "", "x" * 125, "SN-ü"])
def test_invalid_serial_is_bad_input_and_issues_nothing(
    serial: str, fleet: Path, passphrase_file: Path, run_cli: RunCli
) -> None:
    before = _tree(fleet)
    code, result = run_cli("--home", fleet, "device", "issue", serial, "--passphrase-file", passphrase_file)
    assert code == 2
    assert result["error"]["kind"] == "bad_input" and "serial" in result["error"]["message"]
    assert _tree(fleet) == before


def test_invalid_thing_name_is_bad_input(fleet: Path, tmp_path: Path, run_cli: RunCli) -> None:
    code, result = run_cli(
        "--home",
        fleet,
        "bundle",
        "anc/sn 1",
        "--out",
        tmp_path / "b",
        "--endpoint",
        "h",
        "--profile",
        PROFILE,
    )
    assert code == 2 and "thing name" in result["error"]["message"]
    assert not (tmp_path / "b").exists()


def test_wrong_passphrase_is_bad_input_and_issues_nothing(
    fleet: Path, tmp_path: Path, run_cli: RunCli
) -> None:
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not the passphrase")
    before = _tree(fleet)
    code, result = run_cli("--home", fleet, "device", "issue", "SN-1", "--passphrase-file", wrong)
    assert code == 2 and "passphrase" in result["error"]["message"]
    assert _tree(fleet) == before


def test_second_ca_init_is_refused_and_keeps_the_first(
    fleet: Path, passphrase_file: Path, run_cli: RunCli
) -> None:
    before = _tree(fleet)
    code, result = run_cli("--home", fleet, "ca", "init", "--passphrase-file", passphrase_file)
    assert code == 3 and result["error"]["kind"] == "already_exists"
    assert _tree(fleet) == before


def test_short_passphrase_for_a_new_ca_is_refused(tmp_path: Path, run_cli: RunCli) -> None:
    short = tmp_path / "short.txt"
    short.write_text("abc")
    code, result = run_cli("--home", tmp_path / "fleet", "ca", "init", "--passphrase-file", short)
    assert code == 2 and "at least 8" in result["error"]["message"]
    assert not (tmp_path / "fleet").exists()


def test_issuing_the_same_serial_twice_is_refused(
    fleet: Path, passphrase_file: Path, run_cli: RunCli
) -> None:
    assert run_cli("--home", fleet, "device", "issue", "SN-1", "--passphrase-file", passphrase_file)[0] == 0
    before = _tree(fleet)
    code, result = run_cli("--home", fleet, "device", "issue", "sn-1", "--passphrase-file", passphrase_file)
    assert code == 3 and "already issued" in result["error"]["message"]
    assert _tree(fleet) == before


def test_commands_without_a_ca_report_not_found(
    tmp_path: Path, passphrase_file: Path, run_cli: RunCli
) -> None:
    code, result = run_cli(
        "--home", tmp_path / "empty", "device", "issue", "SN-1", "--passphrase-file", passphrase_file
    )
    assert code == 4 and "ca init" in result["error"]["message"]
    assert run_cli("--home", tmp_path / "empty", "ca", "show")[0] == 4


def test_device_issue_from_csr_keeps_the_key_on_the_device(
    fleet: Path, passphrase_file: Path, tmp_path: Path, run_cli: RunCli
) -> None:
    key = pki.generate_key()
    csr_path = pki.write_file_atomic(tmp_path / "dev.csr", pki.csr_pem(pki.make_csr(key, "whatever")))
    pub_path = pki.write_file_atomic(tmp_path / "dev.pub", pki.public_key_pem(key.public_key()))
    code, device = run_cli(
        "--home", fleet, "device", "issue", "SN-CSR", "--csr", csr_path, "--expect-key", pub_path,
        "--passphrase-file", passphrase_file,
    )  # fmt: skip
    assert code == 0, device
    assert device["key_path"] is None and not (fleet / "devices" / "anc-sn-csr" / "device.key").exists()
    cert = pki.load_certificate(Path(device["certificate_path"]).read_bytes())
    assert pki.same_public_key(cert.public_key(), key.public_key())
    assert pki.common_name(cert) == "anc-sn-csr"  # the CSR's own subject is ignored


def test_csr_not_matching_the_expected_key_is_rejected(
    fleet: Path, passphrase_file: Path, tmp_path: Path, run_cli: RunCli
) -> None:
    csr_path = pki.write_file_atomic(tmp_path / "dev.csr", pki.csr_pem(pki.make_csr(pki.generate_key(), "x")))
    pub_path = pki.write_file_atomic(
        tmp_path / "other.pub", pki.public_key_pem(pki.generate_key().public_key())
    )
    before = _tree(fleet)
    code, result = run_cli(
        "--home", fleet, "device", "issue", "SN-CSR", "--csr", csr_path, "--expect-key", pub_path,
        "--passphrase-file", passphrase_file,
    )  # fmt: skip
    assert code == 2 and "does not match the expected key" in result["error"]["message"]
    assert _tree(fleet) == before


def test_corrupted_csr_is_rejected(
    fleet: Path, passphrase_file: Path, tmp_path: Path, run_cli: RunCli
) -> None:
    der = bytearray(pki.csr_der(pki.make_csr(pki.generate_key(), "x")))
    der[-5] ^= 0xFF
    csr_path = pki.write_file_atomic(tmp_path / "bad.csr", bytes(der))
    code, result = run_cli(
        "--home", fleet, "device", "issue", "SN-CSR", "--csr", csr_path, "--passphrase-file", passphrase_file
    )
    assert code == 2 and "csr" in result["error"]["message"]
