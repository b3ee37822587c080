"""AWS IoT Core registration and revocation of devices issued by the fleet CA (boto3 `iot`).

`register_thing` makes, each step only when missing (so a second run changes nothing):
  thing type -> thing (attribute `serial`) -> thing group -> our CA (`register_ca_certificate` with a
  verification certificate for the account's registration code; this needs the CA key, so the passphrase
  is asked only then) -> the device certificate (ACTIVE; `register_certificate` with the CA, or
  `register_certificate_without_ca` when the CA cannot be registered or `with_ca` is off) -> the device
  policy -> policy attached to the certificate -> certificate attached to the thing -> thing in the group.
  What AWS returned (certificate id and ARN, CA id) is kept in the fleet home (devices/<thing>/aws.json,
  ca/aws.json) per region, so later runs find the resources again.

The policy is one document for the whole fleet whose resources are built from
`${iot:Connection.Thing.ThingName}`, so it confines every certificate to its own thing: connect only as
client id = its thing name (and only while the certificate is attached to that thing), publish, receive
and subscribe only under `$aws/things/<thing>/shadow/` and `anc/<thing>/` (plus Basic Ingest publishes
`$aws/rules/<rule>/anc/<thing>/...`). One shared document stays within the account's policy quota.

`revoke_thing` sets the certificate INACTIVE and detaches it from its policies and its thing.

boto3 reads credentials, `AWS_REGION`/`AWS_DEFAULT_REGION` and `AWS_ENDPOINT_URL` (a local endpoint such
as moto's server) from the environment itself.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from provisioning import pki
from provisioning.errors import BadInputError, NotFoundError, ProvisionError
from provisioning.home import FleetHome


@dataclass(frozen=True)
class RegisterOptions:
    thing_type: str = "anc-edge-device"
    thing_group: str = "anc-edge-fleet"
    policy_name: str = "anc-edge-device"
    with_ca: bool = True


@dataclass
class RegisterResult:
    thing_name: str
    region: str
    thing_arn: str = ""
    certificate_id: str = ""
    certificate_arn: str = ""
    ca_certificate_id: str | None = None
    policy_name: str = ""
    thing_group: str = ""
    changes: list[str] = field(default_factory=list)  # what this run created or attached

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RevokeResult:
    certificate_id: str
    status: str
    detached_policies: list[str]
    detached_from_thing: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _not_found(exc: ClientError) -> bool:
    return _error_code(exc) in ("ResourceNotFoundException", "NotFoundException")


def _resource_id(exc: ClientError) -> str | None:
    """The existing resource's id in a ResourceAlreadyExistsException, when AWS (or moto) gives it."""
    value = exc.response.get("resourceId") or exc.response.get("Error", {}).get("resourceId")
    return str(value) if value else None


def iot_session(region: str | None = None) -> tuple[Any, str, str, str]:
    """(iot client, region, account id, partition); BadInputError without a region, ProvisionError
    without credentials."""
    session = boto3.session.Session(region_name=region)
    region_name = session.region_name
    if not region_name:
        raise BadInputError("AWS region: not set (set AWS_REGION or AWS_DEFAULT_REGION, or pass --region)")
    try:
        account = session.client("sts").get_caller_identity()["Account"]
    except NoCredentialsError as exc:
        raise ProvisionError("AWS credentials: none found (environment, ~/.aws or instance role)") from exc
    except (ClientError, BotoCoreError) as exc:
        raise ProvisionError(f"AWS sts get-caller-identity: {exc}") from exc
    partition = session.get_partition_for_region(region_name)
    return session.client("iot"), region_name, str(account), partition


def device_policy_document(region: str, account: str, partition: str = "aws") -> dict[str, Any]:
    """The fleet's device policy (IAM policy JSON); each certificate reaches only its own thing's topics."""
    arn = f"arn:{partition}:iot:{region}:{account}"
    thing = "${iot:Connection.Thing.ThingName}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "iot:Connect",
                "Resource": f"{arn}:client/{thing}",
                "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}},
            },
            {
                "Effect": "Allow",
                "Action": ["iot:Publish", "iot:Receive"],
                "Resource": [
                    f"{arn}:topic/$aws/things/{thing}/shadow/*",
                    f"{arn}:topic/anc/{thing}/*",
                ],
            },
            {
                "Effect": "Allow",
                "Action": "iot:Publish",
                "Resource": f"{arn}:topic/$aws/rules/*/anc/{thing}/*",
            },
            {
                "Effect": "Allow",
                "Action": "iot:Subscribe",
                "Resource": [
                    f"{arn}:topicfilter/$aws/things/{thing}/shadow/*",
                    f"{arn}:topicfilter/anc/{thing}/*",
                ],
            },
        ],
    }


def verification_certificate(ca: pki.CertificateAuthority, registration_code: str) -> bytes:
    """The proof-of-possession certificate AWS wants with `register_ca_certificate` (CN = the code)."""
    key = pki.generate_key()
    cert = pki.issue_client_certificate(ca, key.public_key(), registration_code, validity_days=1)
    return pki.certificate_pem(cert)


class _Registrar:
    """One `register_thing` run: the client, the result being filled in, and a call wrapper."""

    def __init__(
        self, home: FleetHome, thing_name: str, options: RegisterOptions, client: Any, region: str
    ) -> None:
        self.home = home
        self.thing_name = thing_name
        self.options = options
        self.iot = client
        self.result = RegisterResult(
            thing_name=thing_name,
            region=region,
            policy_name=options.policy_name,
            thing_group=options.thing_group,
        )

    def call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.iot, operation)(**kwargs)
        except ClientError as exc:
            raise ProvisionError(f"AWS iot {operation}: {_error_code(exc)}: {exc}") from exc

    def exists(self, operation: str, **kwargs: Any) -> dict[str, Any] | None:
        try:
            return dict(getattr(self.iot, operation)(**kwargs))
        except ClientError as exc:
            if _not_found(exc):
                return None
            raise ProvisionError(f"AWS iot {operation}: {_error_code(exc)}: {exc}") from exc

    def ensure_thing_type(self) -> None:
        if self.exists("describe_thing_type", thingTypeName=self.options.thing_type) is None:
            self.call(
                "create_thing_type",
                thingTypeName=self.options.thing_type,
                thingTypeProperties={
                    "thingTypeDescription": "ANC Edge device",
                    "searchableAttributes": ["serial"],
                },
            )
            self.result.changes.append(f"created thing type {self.options.thing_type}")

    def ensure_thing(self, serial: str) -> None:
        found = self.exists("describe_thing", thingName=self.thing_name)
        if found is None:
            found = self.call(
                "create_thing",
                thingName=self.thing_name,
                thingTypeName=self.options.thing_type,
                attributePayload={"attributes": {"serial": serial}},
            )
            self.result.changes.append(f"created thing {self.thing_name}")
        self.result.thing_arn = str(found.get("thingArn", ""))

    def ensure_thing_group(self) -> None:
        if self.exists("describe_thing_group", thingGroupName=self.options.thing_group) is None:
            self.call("create_thing_group", thingGroupName=self.options.thing_group)
            self.result.changes.append(f"created thing group {self.options.thing_group}")

    def ensure_ca(self, passphrase: Callable[[], bytes]) -> str | None:
        """The CA's AWS certificate id, registering it first when needed; None when AWS refuses it."""
        region = self.result.region
        record = self.home.ca_aws_record()
        known = record.get(region, {}).get("ca_certificate_id")
        if known and self.exists("describe_ca_certificate", certificateId=known) is not None:
            return str(known)
        ca = self.home.load_ca(passphrase())
        code = self.call("get_registration_code")["registrationCode"]
        try:
            response = self.iot.register_ca_certificate(
                caCertificate=pki.certificate_pem(ca.certificate).decode(),
                verificationCertificate=verification_certificate(ca, code).decode(),
                setAsActive=True,
                allowAutoRegistration=False,
            )
            ca_id = str(response["certificateId"])
            self.result.changes.append(f"registered CA {ca_id}")
        except ClientError as exc:
            existing = _resource_id(exc) if _error_code(exc) == "ResourceAlreadyExistsException" else None
            if existing is None:
                return None  # AWS refuses our CA here: the certificate is registered without it
            ca_id = existing
        record[region] = {"ca_certificate_id": ca_id}
        self.home.save_ca_aws_record(record)
        return ca_id

    def ensure_certificate(self, cert_pem: str, ca_pem: str | None) -> None:
        region = self.result.region
        record = self.home.aws_record(self.thing_name)
        known = record.get(region, {}).get("certificate_id")
        found = self.exists("describe_certificate", certificateId=known) if known else None
        if found is None:
            try:
                if ca_pem is not None:
                    response = self.iot.register_certificate(
                        certificatePem=cert_pem, caCertificatePem=ca_pem, status="ACTIVE"
                    )
                else:
                    response = self.iot.register_certificate_without_ca(
                        certificatePem=cert_pem, status="ACTIVE"
                    )
                cert_id, cert_arn = str(response["certificateId"]), str(response["certificateArn"])
                self.result.changes.append(f"registered certificate {cert_id}")
            except ClientError as exc:
                cert_id = _resource_id(exc) or ""
                if _error_code(exc) != "ResourceAlreadyExistsException" or not cert_id:
                    raise ProvisionError(f"AWS iot register_certificate: {_error_code(exc)}: {exc}") from exc
                described = self.call("describe_certificate", certificateId=cert_id)
                cert_arn = str(described["certificateDescription"]["certificateArn"])
        else:
            description = found["certificateDescription"]
            cert_id, cert_arn = str(description["certificateId"]), str(description["certificateArn"])
            if description.get("status") != "ACTIVE":
                raise ProvisionError(
                    f"certificate {cert_id} of {self.thing_name} is {description.get('status')} in AWS IoT; "
                    "refusing to re-activate it (issue a new identity instead)"
                )
        self.result.certificate_id, self.result.certificate_arn = cert_id, cert_arn
        record[region] = {"certificate_id": cert_id, "certificate_arn": cert_arn}
        self.home.save_aws_record(self.thing_name, record)

    def ensure_policy(self, account: str, partition: str) -> None:
        document = device_policy_document(self.result.region, account, partition)
        name = self.options.policy_name
        found = self.exists("get_policy", policyName=name)
        if found is None:
            self.call("create_policy", policyName=name, policyDocument=json.dumps(document))
            self.result.changes.append(f"created policy {name}")
        elif json.loads(found["policyDocument"]) != document:
            versions = self.call("list_policy_versions", policyName=name)["policyVersions"]
            if len(versions) >= 5:  # AWS keeps at most five: drop the oldest non-default one
                oldest = min(
                    (v for v in versions if not v["isDefaultVersion"]), key=lambda v: v["createDate"]
                )
                self.call("delete_policy_version", policyName=name, policyVersionId=oldest["versionId"])
            self.call(
                "create_policy_version",
                policyName=name,
                policyDocument=json.dumps(document),
                setAsDefault=True,
            )
            self.result.changes.append(f"updated policy {name}")

    def ensure_attachments(self) -> None:
        arn = self.result.certificate_arn
        attached = self.call("list_attached_policies", target=arn)["policies"]
        if self.options.policy_name not in {p["policyName"] for p in attached}:
            self.call("attach_policy", policyName=self.options.policy_name, target=arn)
            self.result.changes.append(f"attached policy {self.options.policy_name}")
        principals = self.call("list_thing_principals", thingName=self.thing_name)["principals"]
        if arn not in principals:
            self.call("attach_thing_principal", thingName=self.thing_name, principal=arn)
            self.result.changes.append("attached certificate to thing")
        groups = self.call("list_thing_groups_for_thing", thingName=self.thing_name)["thingGroups"]
        if self.options.thing_group not in {g["groupName"] for g in groups}:
            self.call(
                "add_thing_to_thing_group", thingGroupName=self.options.thing_group, thingName=self.thing_name
            )
            self.result.changes.append(f"added to thing group {self.options.thing_group}")


def register_thing(
    home: FleetHome,
    thing_name: str,
    options: RegisterOptions,
    *,
    passphrase: Callable[[], bytes],
    region: str | None = None,
) -> RegisterResult:
    """Register an issued device in AWS IoT (see the module docstring). `passphrase` is called only when
    the CA must be registered. ProvisionError (exit 1) on an AWS failure."""
    record = home.device(thing_name)
    cert_pem = home.device_certificate(thing_name)
    client, region_name, account, partition = iot_session(region)
    run = _Registrar(home, thing_name, options, client, region_name)
    try:
        run.ensure_thing_type()
        run.ensure_thing(record.serial)
        run.ensure_thing_group()
        ca_id = run.ensure_ca(passphrase) if options.with_ca else None
        run.result.ca_certificate_id = ca_id
        ca_pem = home.ca_cert_path.read_text() if ca_id else None
        run.ensure_certificate(pki.certificate_pem(cert_pem).decode(), ca_pem)
        run.ensure_policy(account, partition)
        run.ensure_attachments()
    except BotoCoreError as exc:
        raise ProvisionError(f"AWS: {exc}") from exc
    saved = home.aws_record(thing_name)
    saved.setdefault(region_name, {})["registered_at"] = saved.get(region_name, {}).get(
        "registered_at", dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    )
    home.save_aws_record(thing_name, saved)
    return run.result


def revoke_thing(home: FleetHome, thing_name: str, *, region: str | None = None) -> RevokeResult:
    """Deactivate the thing's certificate and detach it from its policies and the thing (idempotent).
    NotFoundError when the thing was never registered in that region."""
    records = home.aws_record(thing_name)
    client, region_name, _account, _partition = iot_session(
        region or (next(iter(records)) if records else None)
    )
    entry = records.get(region_name)
    if not entry or "certificate_id" not in entry:
        raise NotFoundError(f"thing {thing_name!r}: not registered in AWS IoT region {region_name}")
    cert_id, cert_arn = entry["certificate_id"], entry["certificate_arn"]
    try:
        client.update_certificate(certificateId=cert_id, newStatus="INACTIVE")
        policies = [p["policyName"] for p in client.list_attached_policies(target=cert_arn)["policies"]]
        for name in policies:
            client.detach_policy(policyName=name, target=cert_arn)
        principals = client.list_thing_principals(thingName=thing_name)["principals"]
        if cert_arn in principals:
            client.detach_thing_principal(thingName=thing_name, principal=cert_arn)
        status = client.describe_certificate(certificateId=cert_id)["certificateDescription"]["status"]
    except (ClientError, BotoCoreError) as exc:
        raise ProvisionError(f"AWS iot revoke {thing_name}: {exc}") from exc
    entry["revoked_at"] = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    home.save_aws_record(thing_name, records)
    return RevokeResult(cert_id, str(status), policies, cert_arn in principals)
