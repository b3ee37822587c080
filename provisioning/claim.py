"""First-boot fleet provisioning by claim, with the AWS IoT Device SDK's identity client.

`provision_by_claim` does, on the device:
1. make a fresh EC P-256 key and a CSR (CN = the thing name the fleet rule derives from the serial, which
   a local broker needs for its per-thing ACL and AWS ignores); the key stays in memory until step 5;
2. connect with the claim certificate over mutual TLS (`awsiot.mqtt5_client_builder.mtls_from_path`);
3. `IotIdentityClient`: subscribe to the CreateCertificateFromCsr and RegisterThing accepted/rejected
   topics, then publish CreateCertificateFromCsr and wait for the certificate and ownership token;
4. publish RegisterThing(template, ownership token, parameters {"SerialNumber": serial}) and wait for the
   thing name (and device configuration);
5. check the certificate carries our key, then write the bundle atomically (provisioning.bundle: key 0600,
   root CA, agent.yaml with the returned thing name) and disconnect.
A rejection or a timeout raises ProvisionError naming the step, the status code and error code; nothing is
written then.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioning import bundle, naming, pki
from provisioning.errors import ProvisionError


@dataclass(frozen=True)
class ClaimRequest:
    endpoint: bundle.Endpoint
    claim_cert: Path
    claim_key: Path
    root_ca: Path
    template_name: str
    serial: str
    profile: str
    out: Path
    force: bool = False
    timeout_s: float = 30.0
    client_id: str | None = None


@dataclass(frozen=True)
class ClaimResult:
    thing_name: str
    certificate_id: str
    device_configuration: dict[str, str]
    bundle: bundle.BundlePaths

    def to_dict(self) -> dict[str, Any]:
        config = {k: v for k, v in self.device_configuration.items() if k != "certificatePem"}
        return {
            "thing_name": self.thing_name,
            "certificate_id": self.certificate_id,
            "device_configuration": config,
            **self.bundle.to_dict(),
        }


def _wait(responses: queue.Queue[tuple[str, Any]], step: str, timeout_s: float) -> Any:
    try:
        kind, value = responses.get(timeout=timeout_s)
    except queue.Empty:
        raise ProvisionError(f"claim: {step}: no response within {timeout_s:g} s") from None
    if kind == "rejected":
        raise ProvisionError(
            f"claim: {step} rejected: {value.status_code} {value.error_code}: {value.error_message}"
        )
    return value


def provision_by_claim(request: ClaimRequest) -> ClaimResult:
    """Run the claim flow (see the module docstring); returns the thing name and the bundle written."""
    from awscrt import mqtt, mqtt5
    from awsiot import iotidentity, mqtt5_client_builder

    thing_name_hint = naming.thing_name_from_serial(request.serial)
    key = pki.generate_key()
    csr_pem = pki.csr_pem(pki.make_csr(key, thing_name_hint)).decode()

    connected = threading.Event()
    failure: list[BaseException] = []

    def on_success(_data: mqtt5.LifecycleConnectSuccessData) -> None:
        connected.set()

    def on_failure(data: mqtt5.LifecycleConnectFailureData) -> None:
        failure.append(data.exception)
        connected.set()

    client = mqtt5_client_builder.mtls_from_path(
        endpoint=request.endpoint.host,
        port=request.endpoint.port,
        cert_filepath=str(request.claim_cert),
        pri_key_filepath=str(request.claim_key),
        ca_filepath=str(request.root_ca),
        client_id=request.client_id or f"claim-{thing_name_hint}",
        clean_start=True,
        on_lifecycle_connection_success=on_success,
        on_lifecycle_connection_failure=on_failure,
    )
    csr_responses: queue.Queue[tuple[str, Any]] = queue.Queue()
    register_responses: queue.Queue[tuple[str, Any]] = queue.Queue()
    qos = mqtt.QoS.AT_LEAST_ONCE
    timeout_s = request.timeout_s
    client.start()
    try:
        if not connected.wait(timeout_s):
            raise ProvisionError(f"claim: connect to {request.endpoint}: no answer within {timeout_s:g} s")
        if failure:
            raise ProvisionError(
                f"claim: connect to {request.endpoint} with the claim certificate: {failure[0]}"
            )
        identity = iotidentity.IotIdentityClient(client)
        template = request.template_name
        subscriptions = [
            identity.subscribe_to_create_certificate_from_csr_accepted(
                iotidentity.CreateCertificateFromCsrSubscriptionRequest(),
                qos,
                lambda r: csr_responses.put(("accepted", r)),
            ),
            identity.subscribe_to_create_certificate_from_csr_rejected(
                iotidentity.CreateCertificateFromCsrSubscriptionRequest(),
                qos,
                lambda e: csr_responses.put(("rejected", e)),
            ),
            identity.subscribe_to_register_thing_accepted(
                iotidentity.RegisterThingSubscriptionRequest(template_name=template),
                qos,
                lambda r: register_responses.put(("accepted", r)),
            ),
            identity.subscribe_to_register_thing_rejected(
                iotidentity.RegisterThingSubscriptionRequest(template_name=template),
                qos,
                lambda e: register_responses.put(("rejected", e)),
            ),
        ]
        for future, topic in subscriptions:
            try:
                future.result(timeout_s)
            except Exception as exc:
                raise ProvisionError(f"claim: subscribe to {topic}: {exc}") from exc

        identity.publish_create_certificate_from_csr(
            iotidentity.CreateCertificateFromCsrRequest(certificate_signing_request=csr_pem), qos
        ).result(timeout_s)
        created = _wait(csr_responses, "CreateCertificateFromCsr", timeout_s)

        identity.publish_register_thing(
            iotidentity.RegisterThingRequest(
                template_name=template,
                certificate_ownership_token=created.certificate_ownership_token,
                parameters={"SerialNumber": request.serial},
            ),
            qos,
        ).result(timeout_s)
        registered = _wait(register_responses, "RegisterThing", timeout_s)
    finally:
        client.stop()

    configuration: dict[str, str] = dict(registered.device_configuration or {})
    cert_pem = str(configuration.get("certificatePem") or created.certificate_pem).encode()
    try:
        cert = pki.load_certificate(cert_pem)
    except pki.PkiError as exc:
        raise ProvisionError(f"claim: the certificate received is unusable: {exc}") from exc
    if not pki.same_public_key(cert.public_key(), key.public_key()):
        raise ProvisionError("claim: the certificate received does not carry this device's key")
    thing_name = naming.validate_thing_name(str(registered.thing_name))
    paths = bundle.write_bundle(
        request.out,
        thing_name=thing_name,
        endpoint=request.endpoint,
        profile=request.profile,
        cert_pem=cert_pem,
        ca_pem=request.root_ca.read_bytes(),
        key_pem=pki.private_key_pem(key),
        force=request.force,
    )
    return ClaimResult(
        thing_name=thing_name,
        certificate_id=str(configuration.get("certificateId") or created.certificate_id),
        device_configuration={k: str(v) for k, v in configuration.items()},
        bundle=paths,
    )
