"""Bundles: the layout the agent reads, all-or-nothing writes, and refusal of unusable certificates."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from agent.config import load_config
from agent.sync.config import parse_cloud_config
from provisioning import bundle, pki
from provisioning.errors import BadInputError
from provisioning.home import FleetHome
from tests.support.pki import PASSPHRASE, RunCli

PROFILE = "vehicle-cabin-48k"


@pytest.fixture
def issued(fleet: Path, passphrase_file: Path, run_cli: RunCli) -> str:
    code, device = run_cli("--home", fleet, "device", "issue", "SN-42", "--passphrase-file", passphrase_file)
    assert code == 0, device
    return str(device["thing_name"])


def _bundle(run_cli: RunCli, fleet: Path, thing: str, out: Path, *extra: str) -> tuple[int, dict]:
    endpoint = "iot.example.com:8883"
    return run_cli(
        "--home", fleet, "bundle", thing, "--out", out, "--endpoint", endpoint, "--profile", PROFILE, *extra
    )


def test_bundle_is_read_by_the_agents_config_loader(
    fleet: Path, issued: str, tmp_path: Path, run_cli: RunCli
) -> None:
    out = tmp_path / "etc-anc-agent"
    code, result = _bundle(run_cli, fleet, issued, out)
    assert code == 0, result
    config = yaml.safe_load((out / "agent.yaml").read_text())
    assert config["profile"] == PROFILE
    cloud = parse_cloud_config(config["cloud"], out)
    assert (cloud.thing_name, cloud.endpoint, cloud.port) == (issued, "iot.example.com", 8883)
    assert cloud.cert_file == out / "device.crt" and cloud.key_file == out / "device.key"
    assert stat.S_IMODE((out / "device.key").stat().st_mode) == 0o600
    assert bundle.verify_bundle(out, (fleet / "ca" / "ca.pem").read_bytes())["thing_name"] == issued
    agent_config = load_config(out / "agent.yaml")  # the daemon's own loader accepts the whole file
    assert agent_config.profile == PROFILE and agent_config.cloud == config["cloud"]


def test_existing_bundle_is_kept_without_force_and_replaced_with_it(
    fleet: Path, issued: str, tmp_path: Path, run_cli: RunCli
) -> None:
    out = tmp_path / "b"
    assert _bundle(run_cli, fleet, issued, out)[0] == 0
    (out / "agent.yaml").write_text("# local edit\n")
    code, result = _bundle(run_cli, fleet, issued, out)
    assert code == 3 and "--force" in result["error"]["message"]
    assert (out / "agent.yaml").read_text() == "# local edit\n"
    assert _bundle(run_cli, fleet, issued, out, "--force")[0] == 0
    assert "thing_name" in (out / "agent.yaml").read_text()


def test_bundle_into_a_directory_with_other_files_keeps_them(
    fleet: Path, issued: str, tmp_path: Path, run_cli: RunCli
) -> None:
    out = tmp_path / "etc"
    (out / "claim").mkdir(parents=True)
    (out / "claim" / "claim.crt").write_text("claim")
    assert _bundle(run_cli, fleet, issued, out)[0] == 0
    assert (out / "claim" / "claim.crt").read_text() == "claim"
    assert sorted(p.name for p in out.iterdir()) == [
        "agent.yaml",
        "claim",
        "device.crt",
        "device.key",
        "root-ca.pem",
    ]


def test_failure_mid_write_leaves_nothing_behind(
    fleet: Path, issued: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = FleetHome(fleet)
    calls = {"n": 0}
    real = pki.write_new_file

    def failing(path: object, data: bytes, **kwargs: object) -> Path:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        return real(path, data, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pki, "write_new_file", failing)
    with pytest.raises(OSError):
        bundle.bundle_device(home, issued, tmp_path / "b", bundle.Endpoint("h"), PROFILE)
    assert list(tmp_path.glob("b*")) == [] and list(tmp_path.glob(".b*")) == []


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [("host:0", "port"), ("host:x", "port"), ("ho st", "host"), ("a:1:2", "port"), ("", "host")],
)
def test_bad_endpoint_names_the_problem(endpoint: str, message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        bundle.parse_endpoint(endpoint)


def test_unknown_profile_lists_the_allowed_ones(
    fleet: Path, issued: str, tmp_path: Path, run_cli: RunCli
) -> None:
    code, result = run_cli(
        "--home", fleet, "bundle", issued, "--out", tmp_path / "b", "--endpoint", "h", "--profile", "toaster"
    )
    assert code == 2 and "headphone-ff-48k" in result["error"]["message"]
    assert not (tmp_path / "b").exists()


def _replace_certificate(home: FleetHome, thing: str, cert: x509.Certificate) -> None:
    pki.write_certificate(home.device(thing).certificate_path, cert)


def test_expired_device_certificate_is_refused(
    fleet: Path, issued: str, tmp_path: Path, run_cli: RunCli
) -> None:
    home = FleetHome(fleet)
    ca = home.load_ca(PASSPHRASE.encode())
    old = home.device_certificate(issued)
    now = dt.datetime.now(dt.UTC)
    expired = (
        x509.CertificateBuilder()
        .subject_name(old.subject)
        .issuer_name(ca.certificate.subject)
        .public_key(old.public_key())
        .serial_number(old.serial_number)
        .not_valid_before(now - dt.timedelta(days=30))
        .not_valid_after(now - dt.timedelta(days=1))
        .sign(ca.private_key, hashes.SHA256())
    )
    _replace_certificate(home, issued, expired)
    code, result = _bundle(run_cli, fleet, issued, tmp_path / "b")
    assert code == 2 and "expired" in result["error"]["message"]
    assert not (tmp_path / "b").exists()


def test_foreign_device_certificate_is_refused(
    fleet: Path, issued: str, tmp_path: Path, run_cli: RunCli
) -> None:
    home = FleetHome(fleet)
    foreign = pki.issue_client_certificate(pki.create_ca("Other"), pki.generate_key().public_key(), issued)
    _replace_certificate(home, issued, foreign)
    code, result = _bundle(run_cli, fleet, issued, tmp_path / "b")
    assert code == 2 and "not issued by this CA" in result["error"]["message"]


def test_revoked_device_is_not_bundled(
    fleet: Path, issued: str, passphrase_file: Path, tmp_path: Path, run_cli: RunCli
) -> None:
    assert run_cli("--home", fleet, "revoke", issued, "--passphrase-file", passphrase_file)[0] == 0
    code, result = _bundle(run_cli, fleet, issued, tmp_path / "b")
    assert code == 3 and "revoked" in result["error"]["message"]


def test_csr_device_bundle_needs_the_key_location(
    fleet: Path, passphrase_file: Path, tmp_path: Path, run_cli: RunCli
) -> None:
    csr_path = pki.write_file_atomic(tmp_path / "d.csr", pki.csr_pem(pki.make_csr(pki.generate_key(), "x")))
    assert (
        run_cli(
            "--home",
            fleet,
            "device",
            "issue",
            "SN-SE",
            "--csr",
            csr_path,
            "--passphrase-file",
            passphrase_file,
        )[0]
        == 0
    )
    code, result = _bundle(run_cli, fleet, "anc-sn-se", tmp_path / "b")
    assert code == 2 and "--key-file" in result["error"]["message"]
    code, result = _bundle(run_cli, fleet, "anc-sn-se", tmp_path / "b", "--key-file", "/dev/se/slot0")
    assert code == 0
    assert yaml.safe_load((tmp_path / "b" / "agent.yaml").read_text())["cloud"]["key_file"] == "/dev/se/slot0"
    assert not (tmp_path / "b" / "device.key").exists()
