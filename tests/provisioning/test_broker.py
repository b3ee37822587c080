"""The test broker enforces what AWS IoT Core enforces for a thing: mutual TLS and its own topics only."""

from __future__ import annotations

import queue
import ssl
from pathlib import Path

import pytest

from tests.support.broker import SERVICE_USER, Broker, MqttProbe
from tests.support.pki import PASSPHRASE, RunCli


def test_device_publishes_and_receives_on_its_own_topics(broker: Broker) -> None:
    cert, key = broker.issue_client("anc-sn-1")
    with MqttProbe(broker, cert, key, client_id="anc-sn-1") as device:
        assert device.subscribe("anc/anc-sn-1/#") == [1]
        assert device.subscribe("$aws/things/anc-sn-1/shadow/name/config/update/delta") == [1]
        device.publish("anc/anc-sn-1/telemetry", b'{"seq": 1}')
        device.publish("$aws/things/anc-sn-1/shadow/name/config/update/delta", b"{}")
        received = {device.next_message()[0], device.next_message()[0]}
    assert received == {"anc/anc-sn-1/telemetry", "$aws/things/anc-sn-1/shadow/name/config/update/delta"}


def test_subscriber_never_receives_another_things_messages(broker: Broker) -> None:
    with (
        MqttProbe(broker, *broker.service_cert()) as service,
        MqttProbe(broker, *broker.issue_client("anc-sn-1")) as intruder,
    ):
        intruder.subscribe("anc/anc-sn-2/commands")
        intruder.subscribe("$aws/things/anc-sn-2/shadow/#")
        intruder.subscribe("anc/anc-sn-1/commands")
        service.publish("anc/anc-sn-2/commands", b"passthrough")
        service.publish("$aws/things/anc-sn-2/shadow/update/delta", b"{}")
        service.publish("anc/anc-sn-1/commands", b"marker")
        assert intruder.next_message() == ("anc/anc-sn-1/commands", b"marker")
        with pytest.raises(queue.Empty):
            intruder.next_message(timeout_s=0.3)


def test_publish_to_another_things_topic_never_arrives(broker: Broker) -> None:
    with (
        MqttProbe(broker, *broker.service_cert()) as service,
        MqttProbe(broker, *broker.issue_client("anc-sn-1")) as intruder,
    ):
        assert service.subscribe("anc/#") == [1]
        intruder.publish("anc/anc-sn-2/commands", b"passthrough")
        intruder.publish("anc/anc-sn-1/events", b"marker")
        topic, payload = service.next_message()
        assert (topic, payload) == ("anc/anc-sn-1/events", b"marker")
        with pytest.raises(queue.Empty):
            service.next_message(timeout_s=0.3)


def test_service_user_reads_aws_reserved_topics(broker: Broker) -> None:
    with (
        MqttProbe(broker, *broker.service_cert(), client_id=SERVICE_USER) as service,
        MqttProbe(broker, *broker.issue_client("anc-sn-1")) as device,
    ):
        assert service.subscribe("$aws/things/+/shadow/#") == [1]
        device.publish("$aws/things/anc-sn-1/shadow/get", b"{}")
        assert service.next_message()[0] == "$aws/things/anc-sn-1/shadow/get"


def test_client_without_certificate_is_refused(broker: Broker) -> None:
    with pytest.raises((ConnectionError, ssl.SSLError)):
        MqttProbe(broker).connect(timeout_s=2)


def test_client_certificate_from_foreign_ca_is_refused(broker: Broker, tmp_path: Path) -> None:
    other = Broker(tmp_path / "other")  # never started: only its CA is used
    cert, key = other.issue_client("anc-sn-1")
    with pytest.raises((ConnectionError, ssl.SSLError)):
        MqttProbe(broker, cert, key).connect(timeout_s=2)


def test_restart_keeps_the_port_and_accepts_clients_again(broker: Broker) -> None:
    port = broker.port
    cert, key = broker.issue_client("anc-sn-1")
    broker.stop()
    assert not broker.running
    with pytest.raises(ConnectionError):
        MqttProbe(broker, cert, key).connect(timeout_s=1)
    broker.start()
    assert broker.port == port
    with MqttProbe(broker, cert, key) as device:
        assert device.subscribe("anc/anc-sn-1/commands") == [1]


def test_plain_listener_admits_the_service_user_by_password_only(tmp_path: Path) -> None:
    with Broker(tmp_path / "b", plain_listener=True) as b:
        with (
            MqttProbe(b, plain=True) as service,
            MqttProbe(b, *b.issue_client("anc-sn-1")) as device,  # TLS devices need no password
        ):
            assert service.subscribe("$aws/things/+/shadow/#") == [1]
            device.publish("$aws/things/anc-sn-1/shadow/update", b"{}")
            assert service.next_message() == ("$aws/things/anc-sn-1/shadow/update", b"{}")
        with pytest.raises(ConnectionError):
            MqttProbe(b, plain=True, password="wrong").connect(timeout_s=2)


def test_claim_identity_reaches_the_provisioning_topics_but_no_devices_topics(broker: Broker) -> None:
    with (
        MqttProbe(broker, *broker.issue_claim("claim-factory")) as claim,
        MqttProbe(broker, *broker.service_cert()) as service,
    ):
        assert claim.subscribe("$aws/certificates/create-from-csr/json/accepted") == [1]
        assert service.subscribe("anc/#") == [1]
        claim.publish("$aws/certificates/create-from-csr/json/accepted", b"echo")
        claim.publish("anc/claim-factory/telemetry", b"not a device")  # patterns apply to it too
        claim.publish("anc/anc-sn-1/telemetry", b"forged")
        assert claim.next_message() == ("$aws/certificates/create-from-csr/json/accepted", b"echo")
        assert service.next_message() == ("anc/claim-factory/telemetry", b"not a device")
        with pytest.raises(queue.Empty):
            service.next_message(timeout_s=0.3)


def test_revoked_certificate_is_refused_by_a_broker_with_the_crl(
    fleet: Path, passphrase_file: Path, tmp_path: Path, run_cli: RunCli
) -> None:
    for serial in ("SN-KEEP", "SN-GONE"):
        assert (
            run_cli("--home", fleet, "device", "issue", serial, "--passphrase-file", passphrase_file)[0] == 0
        )
    assert run_cli("--home", fleet, "revoke", "anc-sn-gone", "--passphrase-file", passphrase_file)[0] == 0
    crl = fleet / "ca" / "crl.pem"
    with Broker(tmp_path / "b", ca_dir=fleet / "ca", ca_passphrase=PASSPHRASE.encode(), crl_path=crl) as b:
        kept = fleet / "devices" / "anc-sn-keep"
        with MqttProbe(b, kept / "device.crt", kept / "device.key") as device:
            assert device.subscribe("anc/anc-sn-keep/commands") == [1]
        gone = fleet / "devices" / "anc-sn-gone"
        with pytest.raises((ConnectionError, ssl.SSLError)):
            MqttProbe(b, gone / "device.crt", gone / "device.key").connect(timeout_s=2)


def test_bundle_from_anc_provision_connects_to_a_broker_on_the_fleet_ca(
    fleet: Path, passphrase_file: Path, tmp_path: Path, run_cli: RunCli
) -> None:
    assert run_cli("--home", fleet, "device", "issue", "SN-BRK", "--passphrase-file", passphrase_file)[0] == 0
    with Broker(tmp_path / "b", ca_dir=fleet / "ca", ca_passphrase=PASSPHRASE.encode()) as b:
        out = tmp_path / "bundle"
        code, _ = run_cli(
            "--home", fleet, "bundle", "anc-sn-brk", "--out", out, "--endpoint", f"localhost:{b.port}",
            "--profile", "headphone-ff-48k",
        )  # fmt: skip
        assert code == 0
        with MqttProbe(b, out / "device.crt", out / "device.key", client_id="anc-sn-brk") as device:
            assert device.subscribe("anc/anc-sn-brk/commands") == [1]
            device.publish("anc/anc-sn-brk/commands", b"ping")
            assert device.next_message() == ("anc/anc-sn-brk/commands", b"ping")
