"""Fleet provisioning by claim, end to end: the AWS IoT Device SDK's identity client, over mutual TLS to a
real Mosquitto, answered by the local responder; the resulting bundle reaches its own topics only."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud.local.provisioning_responder import ProvisioningResponder, ProvisioningTemplate
from cloud.local.registry import Registry
from provisioning import bundle, cli
from tests.support.broker import Broker, MqttProbe
from tests.support.pki import PASSPHRASE

REPO_ROOT = Path(__file__).resolve().parents[2]

TEMPLATE = "anc-edge-fleet"


@pytest.fixture
def responder(broker: Broker, tmp_path: Path) -> Iterator[ProvisioningResponder]:
    registry = Registry(tmp_path / "registry.sqlite")
    template = ProvisioningTemplate(TEMPLATE, device_configuration={"fleet": "test"})
    service = ProvisioningResponder(broker.ca, registry, [template])
    cert, key = broker.service_cert()
    service.connect(broker.host, broker.port, ca_file=broker.ca_path, cert_file=cert, key_file=key)
    yield service
    service.stop()
    registry.close()


def _claim(
    broker: Broker, out: Path, serial: str, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, dict]:
    claim_cert, claim_key = broker.issue_claim()
    code = cli.main(
        [
            "claim",
            "--endpoint", f"{broker.host}:{broker.port}",
            "--claim-cert", str(claim_cert),
            "--claim-key", str(claim_key),
            "--root-ca", str(broker.ca_path),
            "--template", TEMPLATE,
            "--serial", serial,
            "--profile", "headphone-ff-48k",
            "--out", str(out),
            "--timeout-s", "10",
            "--json",
            *extra,
        ]
    )  # fmt: skip
    return code, json.loads(capsys.readouterr().out)


def test_claim_provisions_a_device_whose_bundle_reaches_only_its_own_topics(
    broker: Broker, responder: ProvisioningResponder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "etc-anc-agent"
    code, result = _claim(broker, out, "SN-000777", capsys)
    assert code == 0, result
    assert result["thing_name"] == "anc-sn-000777"
    assert result["device_configuration"] == {"fleet": "test"}
    assert "PRIVATE KEY" not in json.dumps(result)
    assert (out / "device.key").stat().st_mode & 0o777 == 0o600
    cloud = bundle.verify_bundle(out, broker.ca_path.read_bytes())
    assert cloud["thing_name"] == "anc-sn-000777"
    thing = responder.registry.thing("anc-sn-000777")
    assert thing is not None and thing.attributes == {"SerialNumber": "SN-000777"}
    assert responder.registry.certificate(result["certificate_id"]).status == "ACTIVE"  # type: ignore[union-attr]

    with (
        MqttProbe(broker, *broker.service_cert()) as service,
        MqttProbe(broker, out / "device.crt", out / "device.key", client_id="anc-sn-000777") as device,
    ):
        assert service.subscribe("anc/+/telemetry") == [1]
        device.subscribe("anc/anc-sn-000777/commands")
        device.subscribe("anc/anc-sn-000001/commands")  # another thing's topic: granted, never delivered
        device.publish("anc/anc-sn-000001/telemetry", b"forged")  # dropped by the ACL
        device.publish("anc/anc-sn-000777/telemetry", b"mine")
        assert service.next_message() == ("anc/anc-sn-000777/telemetry", b"mine")
        service.publish("anc/anc-sn-000001/commands", b"not for you")
        service.publish("anc/anc-sn-000777/commands", b"for you")
        assert device.next_message() == ("anc/anc-sn-000777/commands", b"for you")
        with pytest.raises(queue.Empty):
            service.next_message(timeout_s=0.3)
        with pytest.raises(queue.Empty):
            device.next_message(timeout_s=0.3)


def test_claim_refuses_to_overwrite_an_existing_bundle_and_writes_nothing(
    broker: Broker, responder: ProvisioningResponder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "etc-anc-agent"
    out.mkdir()
    (out / "device.crt").write_text("old")
    code, result = _claim(broker, out, "SN-000778", capsys)
    assert code == 3
    assert result["error"]["kind"] == "already_exists"
    assert sorted(p.name for p in out.iterdir()) == ["device.crt"]
    assert (out / "device.crt").read_text() == "old"


def test_claim_for_a_registered_thing_is_rejected_with_the_error_code(
    broker: Broker, responder: ProvisioningResponder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _claim(broker, tmp_path / "first", "SN-000779", capsys)[0] == 0
    code, result = _claim(broker, tmp_path / "second", "SN-000779", capsys)
    assert code == 1
    assert "CreateCertificateFromCsr rejected: 409 ResourceAlreadyExists" in result["error"]["message"]
    assert not (tmp_path / "second").exists()


def test_claim_without_a_responder_times_out_with_exit_code_1(
    broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "etc-anc-agent"
    code, result = _claim(broker, out, "SN-000780", capsys, "--timeout-s", "1")
    assert code == 1 and "CreateCertificateFromCsr: no response within 1 s" in result["error"]["message"]
    assert not out.exists()


def test_claim_with_a_foreign_claim_certificate_cannot_connect(
    broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    foreign = Broker(tmp_path / "foreign")  # never started: only its CA signs the claim certificate
    cert, key = foreign.issue_client("claim-factory")
    code = cli.main(
        [
            "claim", "--endpoint", f"{broker.host}:{broker.port}", "--claim-cert", str(cert),
            "--claim-key", str(key), "--root-ca", str(broker.ca_path), "--template", TEMPLATE,
            "--serial", "SN-000781", "--profile", "headphone-ff-48k", "--out", str(tmp_path / "out"),
            "--timeout-s", "3", "--json",
        ]
    )  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert code == 1 and "claim" in result["error"]["message"]
    assert not (tmp_path / "out").exists()


def test_responder_command_serves_a_fleet_home_ca_to_the_claim_command(
    fleet: Path, passphrase_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Broker(tmp_path / "b", ca_dir=fleet / "ca", ca_passphrase=PASSPHRASE.encode()) as b:
        cert, key = b.service_cert()
        command = [
            sys.executable, "-m", "cloud.local.provisioning_responder", "--home", str(fleet),
            "--passphrase-file", str(passphrase_file), "--registry", str(tmp_path / "registry.sqlite"),
            "--template", TEMPLATE, "--host", b.host, "--port", str(b.port), "--ca-file", str(b.ca_path),
            "--cert-file", str(cert), "--key-file", str(key),
        ]  # fmt: skip
        log_path = tmp_path / "responder.log"
        with log_path.open("w") as log:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        try:
            deadline = time.monotonic() + 20
            while "serving templates" not in log_path.read_text() and time.monotonic() < deadline:
                assert proc.poll() is None, log_path.read_text()
                time.sleep(0.05)
            code, result = _claim(b, tmp_path / "etc", "SN-000782", capsys)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        assert code == 0, (result, log_path.read_text())
        assert result["thing_name"] == "anc-sn-000782"
        assert bundle.verify_bundle(tmp_path / "etc", (fleet / "ca" / "ca.pem").read_bytes())
        assert "PRIVATE KEY" not in log_path.read_text()
        assert Registry(tmp_path / "registry.sqlite").thing("anc-sn-000782") is not None
