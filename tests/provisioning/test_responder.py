"""The local fleet-provisioning responder's answers, in AWS's payload formats, without a broker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from cloud.local.provisioning_responder import (
    CREATE_FROM_CSR_TOPIC,
    CREATE_KEYS_TOPIC,
    ProvisioningResponder,
    ProvisioningTemplate,
)
from cloud.local.registry import Registry
from provisioning import pki

TEMPLATE_TOPIC = "$aws/provisioning-templates/fleet/provision/json"
GARBLED_CSR = "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----"


@pytest.fixture(scope="module")
def ca() -> pki.CertificateAuthority:
    return pki.create_ca("Responder Test CA")


@pytest.fixture
def responder(ca: pki.CertificateAuthority) -> Iterator[ProvisioningResponder]:
    registry = Registry(":memory:")
    template = ProvisioningTemplate("fleet", device_configuration={"region": "local"}, allowed_serials=None)
    yield ProvisioningResponder(ca, registry, [template])
    registry.close()


def _ask(responder: ProvisioningResponder, topic: str, body: Any) -> tuple[str, dict[str, Any]]:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    [(response_topic, response)] = responder.handle(topic, payload)
    return response_topic, json.loads(response)


def _csr(common_name: str) -> tuple[pki.PrivateKey, str]:
    key = pki.generate_key()
    return key, pki.csr_pem(pki.make_csr(key, common_name)).decode()


def test_create_from_csr_then_register_thing_activates_the_certificate(
    responder: ProvisioningResponder, ca: pki.CertificateAuthority
) -> None:
    key, csr = _csr("anc-sn-100")
    topic, created = _ask(responder, CREATE_FROM_CSR_TOPIC, {"certificateSigningRequest": csr})
    assert topic == CREATE_FROM_CSR_TOPIC + "/accepted"
    assert set(created) == {"certificateId", "certificatePem", "certificateOwnershipToken"}
    cert = pki.load_certificate(created["certificatePem"].encode())
    pki.verify_issued_by(cert, ca.certificate)
    assert pki.same_public_key(cert.public_key(), key.public_key())
    assert responder.registry.certificate(created["certificateId"]).status == "PENDING_ACTIVATION"  # type: ignore[union-attr]

    request = {
        "certificateOwnershipToken": created["certificateOwnershipToken"],
        "parameters": {"SerialNumber": "SN-100"},
    }
    topic, registered = _ask(responder, TEMPLATE_TOPIC, request)
    assert topic == TEMPLATE_TOPIC + "/accepted"
    assert registered == {"thingName": "anc-sn-100", "deviceConfiguration": {"region": "local"}}
    assert responder.registry.certificate(created["certificateId"]).status == "ACTIVE"  # type: ignore[union-attr]

    topic, reused = _ask(responder, TEMPLATE_TOPIC, request)
    assert topic == TEMPLATE_TOPIC + "/rejected"
    assert reused["statusCode"] == 403 and reused["errorCode"] == "InvalidCertificateOwnershipToken"


@pytest.mark.parametrize(
    ("body", "error_code"),
    [
        ({}, "InvalidPayload"),
        (b"not json", "InvalidPayload"),
        ({"certificateSigningRequest": GARBLED_CSR}, "InvalidCSR"),
        ({"certificateSigningRequest": _csr("not a thing/name")[1]}, "InvalidCSR"),
    ],
)
def test_bad_create_from_csr_requests_are_rejected_in_the_aws_error_format(
    responder: ProvisioningResponder, body: Any, error_code: str
) -> None:
    topic, error = _ask(responder, CREATE_FROM_CSR_TOPIC, body)
    assert topic == CREATE_FROM_CSR_TOPIC + "/rejected"
    assert set(error) == {"statusCode", "errorCode", "errorMessage"}
    assert error["statusCode"] == 400 and error["errorCode"] == error_code


def test_register_thing_checks_template_parameters_and_certificate_name(
    responder: ProvisioningResponder,
) -> None:
    _key, csr = _csr("anc-sn-200")
    created = _ask(responder, CREATE_FROM_CSR_TOPIC, {"certificateSigningRequest": csr})[1]
    token = created["certificateOwnershipToken"]
    unknown = _ask(
        responder, "$aws/provisioning-templates/nope/provision/json", {"certificateOwnershipToken": token}
    )
    assert unknown[1]["statusCode"] == 404
    missing = _ask(responder, TEMPLATE_TOPIC, {"certificateOwnershipToken": token, "parameters": {}})
    assert missing[1]["errorCode"] == "InvalidParameters" and "SerialNumber" in missing[1]["errorMessage"]
    other = _ask(
        responder,
        TEMPLATE_TOPIC,
        {"certificateOwnershipToken": token, "parameters": {"SerialNumber": "SN-201"}},
    )
    assert other[1]["errorCode"] == "InvalidParameters" and "does not match" in other[1]["errorMessage"]
    assert responder.registry.thing("anc-sn-201") is None


def test_csr_for_an_already_registered_thing_is_refused(responder: ProvisioningResponder) -> None:
    _key, csr = _csr("anc-sn-300")
    token = _ask(responder, CREATE_FROM_CSR_TOPIC, {"certificateSigningRequest": csr})[1][
        "certificateOwnershipToken"
    ]
    _ask(
        responder,
        TEMPLATE_TOPIC,
        {"certificateOwnershipToken": token, "parameters": {"SerialNumber": "SN-300"}},
    )
    topic, error = _ask(
        responder, CREATE_FROM_CSR_TOPIC, {"certificateSigningRequest": _csr("anc-sn-300")[1]}
    )
    assert topic.endswith("/rejected") and error["statusCode"] == 409


def test_template_allow_list_acts_as_a_pre_provisioning_hook(ca: pki.CertificateAuthority) -> None:
    template = ProvisioningTemplate("fleet", allowed_serials=frozenset({"SN-OK"}))
    responder = ProvisioningResponder(ca, Registry(":memory:"), [template])
    token = _ask(responder, CREATE_FROM_CSR_TOPIC, {"certificateSigningRequest": _csr("anc-sn-bad")[1]})[1][
        "certificateOwnershipToken"
    ]
    topic, error = _ask(
        responder,
        TEMPLATE_TOPIC,
        {"certificateOwnershipToken": token, "parameters": {"SerialNumber": "SN-BAD"}},
    )
    assert topic.endswith("/rejected") and error["statusCode"] == 403


def test_create_keys_and_certificate_returns_a_key_and_a_named_certificate_on_register(
    responder: ProvisioningResponder, ca: pki.CertificateAuthority
) -> None:
    topic, created = _ask(responder, CREATE_KEYS_TOPIC, {})
    assert topic == CREATE_KEYS_TOPIC + "/accepted"
    key = pki.load_private_key(created["privateKey"].encode())
    token = created["certificateOwnershipToken"]
    registered = _ask(
        responder,
        TEMPLATE_TOPIC,
        {"certificateOwnershipToken": token, "parameters": {"SerialNumber": "SN-400"}},
    )[1]
    assert registered["thingName"] == "anc-sn-400"
    cert = pki.load_certificate(registered["deviceConfiguration"]["certificatePem"].encode())
    assert pki.common_name(cert) == "anc-sn-400"
    assert pki.same_public_key(cert.public_key(), key.public_key())
    pki.verify_issued_by(cert, ca.certificate)


def test_create_keys_can_be_disabled(ca: pki.CertificateAuthority) -> None:
    responder = ProvisioningResponder(ca, Registry(":memory:"), [], allow_create_keys=False)
    topic, error = _ask(responder, CREATE_KEYS_TOPIC, {})
    assert topic.endswith("/rejected") and error["statusCode"] == 403


def test_unrelated_topics_get_no_answer(responder: ProvisioningResponder) -> None:
    assert responder.handle("anc/anc-sn-1/telemetry", b"{}") == []
