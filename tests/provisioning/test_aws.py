"""AWS IoT registration and revocation against moto: complete, idempotent, thing-scoped, revocable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.server import ThreadedMotoServer

from provisioning import aws
from tests.support.broker import free_port
from tests.support.pki import PASSPHRASE, RunCli

REGION = "eu-west-1"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


@pytest.fixture
def iot(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("iot", region_name=REGION)


@pytest.fixture
def device(fleet: Path, passphrase_file: Path, run_cli: RunCli) -> str:
    code, result = run_cli(
        "--home", fleet, "device", "issue", "SN-AWS-1", "--passphrase-file", passphrase_file
    )
    assert code == 0, result
    return str(result["thing_name"])


def _state(iot: Any, thing: str) -> dict[str, Any]:
    certs = iot.list_certificates()["certificates"]
    return {
        "things": sorted(t["thingName"] for t in iot.list_things()["things"]),
        "types": sorted(t["thingTypeName"] for t in iot.list_thing_types()["thingTypes"]),
        "certs": sorted((c["certificateId"], c["status"]) for c in certs),
        "policies": sorted(p["policyName"] for p in iot.list_policies()["policies"]),
        "versions": len(iot.list_policy_versions(policyName="anc-edge-device")["policyVersions"]),
        "principals": sorted(iot.list_thing_principals(thingName=thing)["principals"]),
        "groups": sorted(
            g["groupName"] for g in iot.list_thing_groups_for_thing(thingName=thing)["thingGroups"]
        ),
        "attached": sorted(
            p["policyName"]
            for c in certs
            for p in iot.list_attached_policies(target=c["certificateArn"])["policies"]
        ),
    }


def test_register_creates_everything_and_a_second_run_changes_nothing(
    iot: Any, fleet: Path, device: str, passphrase_file: Path, run_cli: RunCli
) -> None:
    code, first = run_cli("--home", fleet, "aws", "register", device, "--passphrase-file", passphrase_file)
    assert code == 0, first
    assert len(first["changes"]) == 9 and first["ca_certificate_id"]
    state = _state(iot, device)
    assert state["things"] == [device] and state["types"] == ["anc-edge-device"]
    assert state["certs"] == [(first["certificate_id"], "ACTIVE")]
    assert state["principals"] == [first["certificate_arn"]]
    assert state["groups"] == ["anc-edge-fleet"] and state["attached"] == ["anc-edge-device"]
    assert iot.describe_thing(thingName=device)["attributes"] == {"serial": "SN-AWS-1"}
    ca = iot.describe_ca_certificate(certificateId=first["ca_certificate_id"])["certificateDescription"]
    assert ca["status"] == "ACTIVE"
    by_ca = iot.list_certificates_by_ca(caCertificateId=first["ca_certificate_id"])["certificates"]
    assert [c["certificateId"] for c in by_ca] == [first["certificate_id"]]

    code, second = run_cli("--home", fleet, "aws", "register", device)  # no passphrase needed any more
    assert code == 0, second
    assert second["changes"] == []
    assert second["certificate_id"] == first["certificate_id"]
    assert _state(iot, device) == state


def test_policy_confines_each_certificate_to_its_own_thing(iot: Any, fleet: Path, device: str) -> None:
    from provisioning.home import FleetHome

    aws.register_thing(
        FleetHome(fleet), device, aws.RegisterOptions(), passphrase=lambda: PASSPHRASE.encode()
    )
    document = json.loads(iot.get_policy(policyName="anc-edge-device")["policyDocument"])
    resources = [
        r
        for s in document["Statement"]
        for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])
    ]
    assert all("${iot:Connection.Thing.ThingName}" in r for r in resources)
    assert not any(r.endswith((":topic/*", ":topicfilter/*", ":client/*", "#")) for r in resources)
    connect = next(s for s in document["Statement"] if s["Action"] == "iot:Connect")
    assert connect["Resource"].endswith(":client/${iot:Connection.Thing.ThingName}")
    assert connect["Condition"] == {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}
    topics = {r.split(":", 5)[5] for r in resources}
    assert "topic/anc/${iot:Connection.Thing.ThingName}/*" in topics
    assert "topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*" in topics


def test_register_without_ca_uses_register_certificate_without_ca(
    iot: Any, fleet: Path, device: str, run_cli: RunCli
) -> None:
    code, result = run_cli("--home", fleet, "aws", "register", device, "--without-ca")
    assert code == 0, result
    assert result["ca_certificate_id"] is None
    description = iot.describe_certificate(certificateId=result["certificate_id"])["certificateDescription"]
    assert description["status"] == "ACTIVE" and not description.get("caCertificateId")


def test_revoke_deactivates_detaches_and_lists_the_certificate_in_the_crl(
    iot: Any, fleet: Path, device: str, passphrase_file: Path, run_cli: RunCli
) -> None:
    code, registered = run_cli(
        "--home", fleet, "aws", "register", device, "--passphrase-file", passphrase_file
    )
    assert code == 0
    code, revoked = run_cli("--home", fleet, "revoke", device, "--passphrase-file", passphrase_file)
    assert code == 0, revoked
    assert revoked["aws"]["status"] == "INACTIVE" and revoked["aws"]["detached_policies"] == [
        "anc-edge-device"
    ]
    arn = registered["certificate_arn"]
    assert iot.list_thing_principals(thingName=device)["principals"] == []
    assert iot.list_attached_policies(target=arn)["policies"] == []
    cert = fleet / "devices" / device / "device.crt"
    ca = fleet / "ca" / "ca.pem"
    verify = subprocess.run(
        ["openssl", "verify", "-crl_check", "-CAfile", str(ca), "-CRLfile", revoked["crl"], str(cert)],
        capture_output=True,
        text=True,
    )
    assert verify.returncode != 0 and "certificate revoked" in verify.stdout + verify.stderr
    code, again = run_cli("--home", fleet, "revoke", device, "--passphrase-file", passphrase_file)
    assert code == 0 and again["aws"]["detached_policies"] == []
    code, refused = run_cli("--home", fleet, "aws", "register", device)
    assert code == 3 and "revoked" in refused["error"]["message"]


def test_cli_honours_aws_endpoint_url(fleet: Path, device: str, passphrase_file: Path, aws_env: None) -> None:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        env = {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
        command = [
            str(Path(sys.executable).parent / "anc-provision"),
            "--home",
            str(fleet),
            "aws",
            "register",
        ]
        result = subprocess.run(
            [*command, device, "--passphrase-file", str(passphrase_file), "--json"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        client = boto3.client("iot", region_name=REGION, endpoint_url=f"http://127.0.0.1:{port}")
        assert client.describe_thing(thingName=device)["thingName"] == device
    finally:
        server.stop()


def test_missing_region_is_bad_input(
    fleet: Path, device: str, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    code, result = run_cli("--home", fleet, "aws", "register", device)
    assert code == 2 and "region" in result["error"]["message"]
