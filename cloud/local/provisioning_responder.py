"""The local stack's fleet-provisioning responder: AWS IoT's fleet-provisioning MQTT API on any broker.

It answers, in the documented JSON formats (payload-format `json` only):
  $aws/certificates/create-from-csr/json          {"certificateSigningRequest"}
      -> .../accepted {"certificateId", "certificatePem", "certificateOwnershipToken"}
  $aws/certificates/create/json                    {}
      -> .../accepted {"certificateId", "certificatePem", "privateKey", "certificateOwnershipToken"}
  $aws/provisioning-templates/<name>/provision/json {"certificateOwnershipToken", "parameters"}
      -> .../accepted {"thingName", "deviceConfiguration"}
  every failure -> .../rejected {"statusCode", "errorCode", "errorMessage"}
Certificates are signed by the local fleet CA (provisioning.pki) and kept in the local registry
(cloud.local.registry) as PENDING_ACTIVATION; RegisterThing consumes the one-time ownership token (valid
one hour), names the thing by the template's rule and activates the certificate for it.

Identity on a local broker: Mosquitto maps a client to its certificate CN (`use_identity_as_username`)
and the per-thing ACL uses that name, so a device certificate's CN must be its thing name. The claim
client (`anc-provision claim`) therefore puts CN = thing name in its CSR (harmless on AWS, which ignores
it). CreateCertificateFromCsr requires that CN to be a valid thing name not already registered (so a
claim identity cannot mint a certificate for a device that exists), and RegisterThing requires the
certificate's CN to equal the thing name the template derives from the parameters. CreateKeysAndCertificate
has no CSR: its certificate gets CN "pending-<hex>" (no topics), and RegisterThing hands the device a
certificate for the same key with CN = thing name in `deviceConfiguration["certificatePem"]` (a local
extension; AWS does not need it).

Templates (`ProvisioningTemplate`) are the local stand-in for AWS provisioning templates: the thing name
is derived from the `SerialNumber` parameter by the fleet naming rule (`anc-` + lowercased serial), the
required parameters become thing attributes, `device_configuration` is returned to the device, and an
optional `allowed_serials` set plays the part of a pre-provisioning hook.

Limitations of the local stand-in (see docs/provisioning.md): AWS delivers each response only on the
requesting connection; on Mosquitto every claim client subscribed to a response topic receives it (a
create-from-csr response carries no secret, but its ownership token could be raced by another claimant;
a `/create/json` response carries a private key: turn it off with `allow_create_keys=False`). A pending
certificate is accepted by the broker before RegisterThing (the broker cannot see registry state). Run it with
`python -m cloud.local.provisioning_responder --help`.
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloud.local.registry import Registry, TokenError
from provisioning import naming, pki

log = logging.getLogger("anc.provisioning_responder")

CREATE_FROM_CSR_TOPIC = "$aws/certificates/create-from-csr/json"
CREATE_KEYS_TOPIC = "$aws/certificates/create/json"
TEMPLATE_TOPIC_FILTER = "$aws/provisioning-templates/+/provision/json"
PENDING_CN_PREFIX = "pending-"


@dataclass(frozen=True)
class ProvisioningTemplate:
    """A local provisioning template: which parameters a device must send and what it gets back."""

    name: str
    required_parameters: tuple[str, ...] = ("SerialNumber",)
    device_configuration: Mapping[str, str] = field(default_factory=dict)
    certificate_validity_days: int = pki.DEVICE_VALIDITY_DAYS
    allowed_serials: frozenset[str] | None = None  # None: any valid serial (no pre-provisioning hook)


class Rejected(Exception):
    """A request answered on /rejected with this status code, error code and message."""

    def __init__(self, status_code: int, error_code: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error_code = error_code

    def payload(self) -> dict[str, Any]:
        return {"statusCode": self.status_code, "errorCode": self.error_code, "errorMessage": str(self)}


def _parse_json(payload: bytes) -> dict[str, Any]:
    try:
        data = json.loads(payload or b"{}")
    except ValueError as exc:
        raise Rejected(400, "InvalidPayload", f"payload is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise Rejected(400, "InvalidPayload", "payload must be a JSON object")
    return data


class ProvisioningResponder:
    """The request handlers (`handle`, pure: topic + payload in, responses out) and their MQTT wiring."""

    def __init__(
        self,
        ca: pki.CertificateAuthority,
        registry: Registry,
        templates: Sequence[ProvisioningTemplate],
        *,
        allow_create_keys: bool = True,
    ) -> None:
        self.ca = ca
        self.registry = registry
        self.templates = {t.name: t for t in templates}
        self.allow_create_keys = allow_create_keys
        self._client: Any = None
        self._subscribed = threading.Event()

    # ------------------------------------------------------------------------------------- handlers

    def handle(self, topic: str, payload: bytes) -> list[tuple[str, bytes]]:
        """Answer one request: [(response topic, JSON payload)]; never raises for bad requests."""
        try:
            if topic == CREATE_FROM_CSR_TOPIC:
                body = self._create_from_csr(_parse_json(payload))
            elif topic == CREATE_KEYS_TOPIC:
                body = self._create_keys(_parse_json(payload))
            elif topic.startswith("$aws/provisioning-templates/") and topic.endswith("/provision/json"):
                name = topic[len("$aws/provisioning-templates/") : -len("/provision/json")]
                body = self._register_thing(name, _parse_json(payload))
            else:
                return []
        except Rejected as exc:
            log.info("rejected %s: %s %s", topic, exc.error_code, exc)
            return [(f"{topic}/rejected", json.dumps(exc.payload()).encode())]
        except Exception as exc:  # a bug must not kill the responder; the device gets a 500
            log.exception("internal failure answering %s", topic)
            error = Rejected(500, "InternalFailure", f"internal failure: {type(exc).__name__}")
            return [(f"{topic}/rejected", json.dumps(error.payload()).encode())]
        return [(f"{topic}/accepted", json.dumps(body).encode())]

    def _issue_pending(self, public_key: pki.PublicKey, common_name: str) -> dict[str, Any]:
        cert = pki.issue_client_certificate(self.ca, public_key, common_name)
        cert_id = pki.fingerprint_sha256(cert)
        token = secrets.token_urlsafe(32)
        pem = pki.certificate_pem(cert).decode()
        self.registry.add_pending_certificate(cert_id, pem, token)
        log.info("certificate %s for %s created (pending activation)", cert_id, common_name)
        return {"certificateId": cert_id, "certificatePem": pem, "certificateOwnershipToken": token}

    def _create_from_csr(self, request: dict[str, Any]) -> dict[str, Any]:
        csr_pem = request.get("certificateSigningRequest")
        if not isinstance(csr_pem, str) or not csr_pem.strip():
            raise Rejected(400, "InvalidPayload", "certificateSigningRequest: missing (a PEM CSR string)")
        try:
            csr = pki.load_csr(csr_pem.encode())
            pki.verify_csr(csr)
        except pki.PkiError as exc:
            raise Rejected(400, "InvalidCSR", str(exc)) from exc
        common_name = pki.common_name(csr)
        try:
            naming.validate_thing_name(common_name)
        except naming.InvalidNameError as exc:
            raise Rejected(400, "InvalidCSR", f"CSR subject CN must be the thing name: {exc}") from exc
        if self.registry.thing(common_name) is not None:
            raise Rejected(409, "ResourceAlreadyExists", f"thing {common_name!r} is already registered")
        return self._issue_pending(pki.public_key_of(csr), common_name)

    def _create_keys(self, request: dict[str, Any]) -> dict[str, Any]:
        if not self.allow_create_keys:
            raise Rejected(403, "Forbidden", "CreateKeysAndCertificate is disabled here; use create-from-csr")
        key = pki.generate_key()
        body = self._issue_pending(key.public_key(), PENDING_CN_PREFIX + secrets.token_hex(8))
        body["privateKey"] = pki.private_key_pem(key).decode()
        return body

    def _register_thing(self, template_name: str, request: dict[str, Any]) -> dict[str, Any]:
        template = self.templates.get(template_name)
        if template is None:
            raise Rejected(
                404, "ResourceNotFound", f"template {template_name!r}: no such provisioning template"
            )
        token = request.get("certificateOwnershipToken")
        if not isinstance(token, str) or not token:
            raise Rejected(400, "InvalidPayload", "certificateOwnershipToken: missing")
        parameters = request.get("parameters") or {}
        if not isinstance(parameters, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in parameters.items()
        ):
            raise Rejected(400, "InvalidPayload", "parameters: must be an object of string values")
        missing = [p for p in template.required_parameters if not parameters.get(p)]
        if missing:
            raise Rejected(400, "InvalidParameters", f"parameters: missing {', '.join(missing)}")
        serial = parameters["SerialNumber"]
        try:
            thing_name = naming.thing_name_from_serial(serial)
        except naming.InvalidNameError as exc:
            raise Rejected(400, "InvalidParameters", f"parameters.SerialNumber: {exc}") from exc
        if template.allowed_serials is not None and serial not in template.allowed_serials:
            raise Rejected(
                403, "Forbidden", f"serial {serial!r} is not allowed by template {template.name!r}"
            )
        try:
            pending = self.registry.claim_certificate(token)
        except TokenError as exc:
            raise Rejected(403, "InvalidCertificateOwnershipToken", str(exc)) from exc
        cert = pki.load_certificate(pending.certificate_pem.encode())
        cert_id = pending.certificate_id
        configuration = dict(template.device_configuration)
        if pki.common_name(cert).startswith(PENDING_CN_PREFIX):  # CreateKeysAndCertificate: re-issue
            cert = pki.issue_client_certificate(
                self.ca,
                pki.public_key_of(cert),
                thing_name,
                validity_days=template.certificate_validity_days,
            )
            cert_id = pki.fingerprint_sha256(cert)
            pem = pki.certificate_pem(cert).decode()
            self.registry.add_pending_certificate(cert_id, pem, secrets.token_urlsafe(32))
            configuration["certificateId"] = cert_id
            configuration["certificatePem"] = pem
        elif pki.common_name(cert) != thing_name:
            raise Rejected(
                400,
                "InvalidParameters",
                f"certificate CN {pki.common_name(cert)!r} does not match thing name {thing_name!r}",
            )
        attributes = {k: v for k, v in parameters.items() if k in template.required_parameters}
        self.registry.register_thing(thing_name, template.name, attributes, cert_id)
        log.info("thing %s registered with certificate %s (template %s)", thing_name, cert_id, template.name)
        return {"thingName": thing_name, "deviceConfiguration": configuration}

    # ------------------------------------------------------------------------------------------ MQTT

    def connect(
        self,
        host: str,
        port: int,
        *,
        ca_file: str | Path | None = None,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        username: str | None = None,
        password: str | None = None,
        client_id: str = "anc-provisioning-responder",
        timeout_s: float = 10.0,
    ) -> None:
        """Connect (TLS with a client certificate when `cert_file` is given, else plain with a password),
        subscribe to the request topics and serve on paho's network thread until `stop()`."""
        import paho.mqtt.client as paho

        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        if cert_file is not None:
            client.tls_set(
                ca_certs=str(ca_file) if ca_file else None, certfile=str(cert_file), keyfile=str(key_file)
            )
        if username is not None:
            client.username_pw_set(username, password)
        topics = [(CREATE_FROM_CSR_TOPIC, 1), (TEMPLATE_TOPIC_FILTER, 1), (CREATE_KEYS_TOPIC, 1)]

        def on_connect(c: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
            if reason.is_failure:
                log.error("broker refused the connection: %s", reason)
                return
            c.subscribe(topics)

        def on_subscribe(_c: Any, _userdata: Any, _mid: int, _codes: Any, _props: Any) -> None:
            self._subscribed.set()

        def on_message(c: Any, _userdata: Any, message: Any) -> None:
            for topic, body in self.handle(message.topic, bytes(message.payload)):
                c.publish(topic, body, qos=1)

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.connect(host, port, keepalive=30)
        client.loop_start()
        self._client = client
        if not self._subscribed.wait(timeout_s):
            self.stop()
            raise TimeoutError(
                f"provisioning responder: not subscribed on {host}:{port} within {timeout_s} s"
            )

    def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until interrupted: `python -m cloud.local.provisioning_responder --home FLEET ...`."""
    from provisioning.cli import read_passphrase
    from provisioning.errors import ProvisionError
    from provisioning.home import FleetHome

    parser = argparse.ArgumentParser(prog="provisioning_responder", description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="fleet home holding the CA (default: $ANC_PROVISION_HOME)")
    parser.add_argument(
        "--passphrase-file", help="CA passphrase file (else $ANC_CA_PASSPHRASE, else a prompt)"
    )
    parser.add_argument("--registry", default="registry.sqlite", help="SQLite registry file")
    parser.add_argument("--template", action="append", default=[], help="template name (repeatable)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8883)
    parser.add_argument("--ca-file", help="broker CA (TLS)")
    parser.add_argument("--cert-file", help="service client certificate (TLS)")
    parser.add_argument("--key-file", help="service client key (TLS)")
    parser.add_argument("--username", help="plain listener: service user name")
    parser.add_argument("--password-file", help="plain listener: file holding the service password")
    parser.add_argument("--no-create-keys", action="store_true", help="refuse $aws/certificates/create/json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        ca = FleetHome(args.home).load_ca(read_passphrase(args))
    except ProvisionError as exc:
        print(f"provisioning_responder: error: {exc}", file=sys.stderr)
        return exc.exit_code
    password = Path(args.password_file).read_text().strip() if args.password_file else None
    templates = [ProvisioningTemplate(name) for name in (args.template or ["anc-edge-fleet"])]
    responder = ProvisioningResponder(
        ca, Registry(args.registry), templates, allow_create_keys=not args.no_create_keys
    )
    responder.connect(
        args.host,
        args.port,
        ca_file=args.ca_file,
        cert_file=args.cert_file,
        key_file=args.key_file,
        username=args.username,
        password=password,
    )
    log.info("serving templates %s on %s:%d", ", ".join(t.name for t in templates), args.host, args.port)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        responder.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
