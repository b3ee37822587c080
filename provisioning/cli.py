"""`anc-provision`: fleet CA, device identities, bundles, AWS IoT registration and fleet provisioning.

Every command takes `--json` (one JSON object on stdout, for scripts; errors too) and reads the fleet
home from `--home`, else `$ANC_PROVISION_HOME`, else `$XDG_DATA_HOME/anc-provision`. The CA passphrase
comes from `--passphrase-file`, else `$ANC_CA_PASSPHRASE`, else a terminal prompt. Private keys are
never printed or logged: output holds paths, names and fingerprints only.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from provisioning import bundle, naming, pki
from provisioning.errors import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_RUNTIME,
    AlreadyExistsError,
    BadInputError,
    ProvisionError,
)
from provisioning.home import HOME_ENV, FleetHome

PASSPHRASE_ENV = "ANC_CA_PASSPHRASE"
MIN_PASSPHRASE_CHARS = 8

EPILOG = """\
exit codes:
  0  ok
  1  runtime failure (I/O, network, AWS or broker error, timeout)
  2  bad input (invalid serial, thing name, CSR, certificate, passphrase or argument)
  3  already exists or refused (CA, device or bundle present without --force; revoked certificate)
  4  not found (no fleet CA, unknown thing)

thing names: 'anc-' + the lowercased serial; a serial is 1-124 characters of A-Z a-z 0-9 _ -
environment: ANC_PROVISION_HOME (fleet home), ANC_CA_PASSPHRASE (CA passphrase),
             AWS_ENDPOINT_URL / AWS_REGION / AWS_PROFILE (aws commands, read by boto3)
"""


# ------------------------------------------------------------------------------------------ helpers


def read_passphrase(args: argparse.Namespace, *, confirm: bool = False) -> bytes:
    """The CA passphrase: --passphrase-file (one trailing newline stripped), else $ANC_CA_PASSPHRASE,
    else an interactive prompt (twice when `confirm`). BadInputError when none is available."""
    path: str | None = getattr(args, "passphrase_file", None)
    if path:
        try:
            text = Path(path).read_bytes()
        except OSError as exc:
            raise BadInputError(f"passphrase-file: cannot read {path}: {exc.strerror}") from exc
        value = text[:-1] if text.endswith(b"\n") else text
        value = value[:-1] if value.endswith(b"\r") else value
    elif os.environ.get(PASSPHRASE_ENV):
        value = os.environ[PASSPHRASE_ENV].encode()
    elif sys.stdin.isatty():
        value = getpass.getpass("CA passphrase: ").encode()
        if confirm and getpass.getpass("Repeat CA passphrase: ").encode() != value:
            raise BadInputError("passphrase: the two entries differ")
    else:
        raise BadInputError(
            f"passphrase: none given (use --passphrase-file, ${PASSPHRASE_ENV} or a terminal)"
        )
    if not value:
        raise BadInputError("passphrase: empty")
    if confirm and len(value) < MIN_PASSPHRASE_CHARS:
        raise BadInputError(
            f"passphrase: {len(value)} characters; a new CA needs at least {MIN_PASSPHRASE_CHARS}"
        )
    return value


def _home(args: argparse.Namespace) -> FleetHome:
    return FleetHome(args.home)


def _read_input_file(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise BadInputError(f"{what}: cannot read {path}: {exc.strerror}") from exc


def _emit(args: argparse.Namespace, result: dict[str, Any], text: str) -> None:
    if args.json:
        print(json.dumps({"ok": True, **result}, indent=2, sort_keys=True))
    else:
        print(text)


# ------------------------------------------------------------------------------------------ ca


def cmd_ca_init(args: argparse.Namespace) -> int:
    home = _home(args)
    if home.has_ca():
        raise AlreadyExistsError(f"{home.ca_dir}: a fleet CA already exists; refusing to replace it")
    passphrase = read_passphrase(args, confirm=True)
    cert = home.init_ca(passphrase, algorithm=args.algorithm, common_name=args.common_name)
    result = {
        "certificate": str(home.ca_cert_path),
        "key": str(home.ca_key_path),
        "crl": str(home.crl_path),
        "fingerprint": pki.fingerprint_sha256(cert),
        "subject": cert.subject.rfc4514_string(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "algorithm": args.algorithm,
    }
    _emit(
        args, result, f"fleet CA created: {home.ca_cert_path}\nSHA-256 fingerprint: {result['fingerprint']}"
    )
    return EXIT_OK


def cmd_ca_show(args: argparse.Namespace) -> int:
    home = _home(args)
    cert = home.ca_certificate()
    devices = home.devices_dir.iterdir() if home.devices_dir.is_dir() else iter(())
    issued = sorted(p.name for p in devices if not p.name.startswith("."))
    result = {
        "certificate": str(home.ca_cert_path),
        "fingerprint": pki.fingerprint_sha256(cert),
        "subject": cert.subject.rfc4514_string(),
        "serial_number": format(cert.serial_number, "x"),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "crl": str(home.crl_path) if home.crl_path.exists() else None,
        "devices_issued": len(issued),
        "devices_revoked": len(home.revoked()),
    }
    text = "\n".join(f"{k}: {v}" for k, v in result.items())
    _emit(args, result, text)
    return EXIT_OK


# -------------------------------------------------------------------------------------- device issue


def _load_expected_key(path: str) -> pki.PublicKey:
    """The public key in `path`: a PEM public key, or the key of a PEM certificate."""
    data = _read_input_file(path, "expect-key")
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        try:
            return pki.public_key_of(pki.load_certificate(data))
        except pki.PkiError as exc:
            raise BadInputError(f"expect-key: {path} is neither a PEM public key nor a certificate") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise BadInputError(f"expect-key: key type {type(key).__name__} is not one of EC, RSA")
    return key


def cmd_device_issue(args: argparse.Namespace) -> int:
    home = _home(args)
    serial = naming.validate_serial(args.serial)
    thing_name = (
        naming.validate_thing_name(args.thing_name)
        if args.thing_name
        else naming.thing_name_from_serial(serial)
    )
    if args.profile:
        bundle.validate_profile(args.profile)
    csr = None
    expected = None
    if args.csr:
        try:
            csr = pki.load_csr(_read_input_file(args.csr, "csr"))
        except pki.PkiError as exc:
            raise BadInputError(str(exc)) from exc
        if args.expect_key:
            expected = _load_expected_key(args.expect_key)
        try:
            pki.verify_csr(csr, expected)  # before asking for the passphrase
        except pki.PkiError as exc:
            raise BadInputError(str(exc)) from exc
    elif args.expect_key:
        raise BadInputError("expect-key: only meaningful with --csr")
    home.ca_certificate()
    if home.device_dir(thing_name).exists():
        raise AlreadyExistsError(f"thing {thing_name!r}: already issued ({home.device_dir(thing_name)})")
    ca = home.load_ca(read_passphrase(args))
    record = home.issue_device(
        ca,
        thing_name,
        serial=serial,
        csr=csr,
        expected_public_key=expected,
        algorithm=args.algorithm,
        validity_days=args.validity_days,
        profile=args.profile,
    )
    result = {**record.to_dict(), "device_dir": str(home.device_dir(thing_name))}
    _emit(args, result, f"issued {thing_name} (serial {serial})\ncertificate: {record.certificate_path}")
    return EXIT_OK


# ------------------------------------------------------------------------------------------- bundle


def _root_ca(args: argparse.Namespace) -> bytes | None:
    if not args.root_ca:
        return None
    data = _read_input_file(args.root_ca, "root-ca")
    try:
        pki.load_certificate(data)
    except pki.PkiError as exc:
        raise BadInputError(f"root-ca: {args.root_ca}: {exc}") from exc
    return data


def cmd_bundle(args: argparse.Namespace) -> int:
    home = _home(args)
    thing_name = naming.validate_thing_name(args.thing_name)
    endpoint = bundle.parse_endpoint(args.endpoint)
    profile = bundle.validate_profile(args.profile)
    paths = bundle.bundle_device(
        home,
        thing_name,
        Path(args.out),
        endpoint,
        profile,
        root_ca_pem=_root_ca(args),
        key_file=args.key_file,
        force=args.force,
    )
    result = {"thing_name": thing_name, "endpoint": str(endpoint), "profile": profile, **paths.to_dict()}
    _emit(args, result, f"bundle for {thing_name} written to {paths.directory}")
    return EXIT_OK


# -------------------------------------------------------------------------------------------- bulk


def cmd_bulk(args: argparse.Namespace) -> int:
    from provisioning import bulk

    home = _home(args)
    endpoint = bundle.parse_endpoint(args.endpoint)
    default_profile = bundle.validate_profile(args.profile)
    rows = bulk.read_csv(Path(args.csv), default_profile)
    home.ca_certificate()
    ca = home.load_ca(read_passphrase(args))
    summary = bulk.run_bulk(
        home,
        ca,
        rows,
        Path(args.out),
        endpoint,
        root_ca_pem=_root_ca(args),
        progress=not args.no_progress and not args.json,
    )
    _emit(args, summary.to_dict(), summary.text())
    return EXIT_OK if not summary.failed else EXIT_RUNTIME


# --------------------------------------------------------------------------------------- aws / revoke


def cmd_aws_register(args: argparse.Namespace) -> int:
    from provisioning import aws

    home = _home(args)
    thing_name = naming.validate_thing_name(args.thing_name)
    home.device(thing_name)
    bundle.check_device_certificate(home, thing_name)
    options = aws.RegisterOptions(
        thing_type=args.thing_type,
        thing_group=args.thing_group,
        policy_name=args.policy_name,
        with_ca=not args.without_ca,
    )
    result = aws.register_thing(
        home, thing_name, options, passphrase=lambda: read_passphrase(args), region=args.region
    )
    changed = ", ".join(result.changes) if result.changes else "nothing (already registered)"
    _emit(args, result.to_dict(), f"{thing_name} registered in AWS IoT ({result.region}); changed: {changed}")
    return EXIT_OK


def cmd_revoke(args: argparse.Namespace) -> int:
    home = _home(args)
    thing_name = naming.validate_thing_name(args.thing_name)
    home.device(thing_name)
    ca = home.load_ca(read_passphrase(args))
    serial_hex, crl_path = home.revoke_device(ca, thing_name)
    result: dict[str, Any] = {"thing_name": thing_name, "serial_number": serial_hex, "crl": str(crl_path)}
    if home.aws_record(thing_name) and not args.local_only:
        from provisioning import aws

        result["aws"] = aws.revoke_thing(home, thing_name).to_dict()
    _emit(args, result, f"{thing_name} revoked (certificate serial {serial_hex}); CRL: {crl_path}")
    return EXIT_OK


# --------------------------------------------------------------------------------------------- claim


def cmd_claim(args: argparse.Namespace) -> int:
    from provisioning import claim

    endpoint = bundle.parse_endpoint(args.endpoint)
    profile = bundle.validate_profile(args.profile)
    if args.serial_file:
        serial = (
            _read_input_file(args.serial_file, "serial-file").decode(errors="replace").strip().strip("\x00")
        )
    elif args.serial:
        serial = args.serial
    else:
        raise BadInputError("serial: give --serial or --serial-file")
    naming.validate_serial(serial)
    for option in ("claim_cert", "claim_key", "root_ca"):
        if not Path(getattr(args, option)).is_file():
            raise BadInputError(f"{option.replace('_', '-')}: {getattr(args, option)} is not a file")
    request = claim.ClaimRequest(
        endpoint=endpoint,
        claim_cert=Path(args.claim_cert),
        claim_key=Path(args.claim_key),
        root_ca=Path(args.root_ca),
        template_name=args.template,
        serial=serial,
        profile=profile,
        out=Path(args.out),
        force=args.force,
        timeout_s=args.timeout_s,
        client_id=args.client_id,
    )
    result = claim.provision_by_claim(request)
    _emit(
        args,
        result.to_dict(),
        f"provisioned {result.thing_name}; bundle written to {result.bundle.directory}",
    )
    return EXIT_OK


# -------------------------------------------------------------------------------------------- parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON object on stdout (errors too)")
    passphrase = argparse.ArgumentParser(add_help=False)
    passphrase.add_argument(
        "--passphrase-file",
        metavar="FILE",
        help=f"CA passphrase file (else ${PASSPHRASE_ENV}, else a prompt)",
    )
    fmt = argparse.RawDescriptionHelpFormatter

    parser = argparse.ArgumentParser(
        prog="anc-provision", description=__doc__.splitlines()[0], epilog=EPILOG, formatter_class=fmt
    )
    parser.add_argument(
        "--home",
        default=None,
        help=f"fleet home directory (default: ${HOME_ENV}, else $XDG_DATA_HOME/anc-provision)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def leaf(
        group: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        help_text: str,
        func: Callable[[argparse.Namespace], int],
        parents: Sequence[argparse.ArgumentParser] = (),
    ) -> argparse.ArgumentParser:
        p = group.add_parser(
            name,
            help=help_text,
            description=help_text,
            parents=[common, *parents],
            epilog=EPILOG,
            formatter_class=fmt,
        )
        p.set_defaults(func=func)
        return p

    ca = sub.add_parser("ca", help="the fleet certificate authority", epilog=EPILOG, formatter_class=fmt)
    ca_sub = ca.add_subparsers(dest="ca_command", metavar="CA_COMMAND")
    p = leaf(
        ca_sub, "init", "create the fleet CA (key encrypted with the passphrase)", cmd_ca_init, [passphrase]
    )
    p.add_argument(
        "--algorithm", choices=pki.KEY_ALGORITHMS, default="ec-p256", help="key type (default ec-p256)"
    )
    p.add_argument("--common-name", default="ANC Edge Fleet CA", help="CA subject CN")
    leaf(ca_sub, "show", "print the CA certificate path, fingerprint and validity", cmd_ca_show)

    device = sub.add_parser("device", help="device identities", epilog=EPILOG, formatter_class=fmt)
    device_sub = device.add_subparsers(dest="device_command", metavar="DEVICE_COMMAND")
    p = leaf(device_sub, "issue", "issue a device certificate for SERIAL", cmd_device_issue, [passphrase])
    p.add_argument("serial", metavar="SERIAL", help="device serial number (1-124 of A-Z a-z 0-9 _ -)")
    p.add_argument(
        "--csr", metavar="FILE", help="sign this CSR (the device keeps its key) instead of making a key"
    )
    p.add_argument(
        "--expect-key",
        metavar="FILE",
        help="with --csr: the public key (or a certificate) the CSR must carry",
    )
    p.add_argument("--thing-name", help="override the thing name (default: anc-<serial, lowercased>)")
    p.add_argument("--profile", help="firmware profile recorded with the device")
    p.add_argument(
        "--algorithm", choices=pki.KEY_ALGORITHMS, default="ec-p256", help="key type (default ec-p256)"
    )
    p.add_argument(
        "--validity-days", type=_positive_int, default=pki.DEVICE_VALIDITY_DAYS, help="certificate validity"
    )

    p = leaf(sub, "bundle", "write the agent's bundle (agent.yaml, certificate, key, root CA)", cmd_bundle)
    p.add_argument("thing_name", metavar="THING_NAME")
    p.add_argument("--out", required=True, metavar="DIR", help="bundle directory (e.g. /etc/anc-agent)")
    p.add_argument(
        "--endpoint", required=True, metavar="HOST[:PORT]", help="broker / AWS IoT endpoint (port 8883)"
    )
    p.add_argument("--profile", required=True, help="firmware profile name")
    p.add_argument(
        "--root-ca", metavar="FILE", help="server trust anchor (default: the fleet CA; AWS: AmazonRootCA1)"
    )
    p.add_argument(
        "--key-file", metavar="PATH", help="for CSR-issued devices: where the device keeps its key"
    )
    p.add_argument("--force", action="store_true", help="replace an existing bundle")

    p = leaf(
        sub,
        "bulk",
        "issue and bundle every device of a CSV (serial[,profile]); resumable",
        cmd_bulk,
        [passphrase],
    )
    p.add_argument("csv", metavar="CSV")
    p.add_argument("--out", required=True, metavar="DIR", help="one bundle per device: DIR/<thing_name>/")
    p.add_argument("--endpoint", required=True, metavar="HOST[:PORT]")
    p.add_argument("--profile", required=True, help="profile for rows that name none")
    p.add_argument("--root-ca", metavar="FILE", help="server trust anchor (default: the fleet CA)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    aws_parser = sub.add_parser("aws", help="AWS IoT Core", epilog=EPILOG, formatter_class=fmt)
    aws_sub = aws_parser.add_subparsers(dest="aws_command", metavar="AWS_COMMAND")
    p = leaf(
        aws_sub,
        "register",
        "register the CA, the device certificate, thing, policy and group in AWS IoT (idempotent)",
        cmd_aws_register,
        [passphrase],
    )
    p.add_argument("thing_name", metavar="THING_NAME")
    p.add_argument("--thing-type", default="anc-edge-device")
    p.add_argument("--thing-group", default="anc-edge-fleet")
    p.add_argument(
        "--policy-name", default="anc-edge-device", help="per-thing policy (uses thing-name variables)"
    )
    p.add_argument("--without-ca", action="store_true", help="register the certificate without our CA")
    p.add_argument("--region", help="AWS region (default: AWS_REGION / AWS_DEFAULT_REGION)")

    p = leaf(
        sub, "revoke", "revoke a device: CRL, and deactivate + detach in AWS IoT", cmd_revoke, [passphrase]
    )
    p.add_argument("thing_name", metavar="THING_NAME")
    p.add_argument("--local-only", action="store_true", help="only the local CRL, not AWS")

    p = leaf(
        sub,
        "claim",
        "first boot: get a device identity by fleet provisioning with a claim certificate",
        cmd_claim,
    )
    p.add_argument("--endpoint", required=True, metavar="HOST[:PORT]")
    p.add_argument("--claim-cert", required=True, metavar="FILE")
    p.add_argument("--claim-key", required=True, metavar="FILE")
    p.add_argument("--root-ca", required=True, metavar="FILE", help="server trust anchor")
    p.add_argument("--template", required=True, help="provisioning template name")
    p.add_argument("--serial", help="device serial (the template parameter SerialNumber)")
    p.add_argument("--serial-file", metavar="FILE", help="read the serial from this file")
    p.add_argument("--profile", required=True, help="firmware profile name")
    p.add_argument("--out", required=True, metavar="DIR", help="bundle directory (e.g. /etc/anc-agent)")
    p.add_argument("--client-id", help="MQTT client id for the claim connection (default: the serial)")
    p.add_argument("--timeout-s", type=float, default=30.0, help="per-request timeout in seconds")
    p.add_argument("--force", action="store_true", help="replace leftovers of an earlier attempt")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 2 for usage errors, 0 for --help
        return int(exc.code or 0)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return int(func(args))
    except (ProvisionError, naming.InvalidNameError, pki.PkiError) as exc:
        code = getattr(exc, "exit_code", EXIT_BAD_INPUT)
        kind = getattr(exc, "kind", "bad_input")
        return _fail(args, code, kind, str(exc))
    except KeyboardInterrupt:
        return _fail(args, EXIT_RUNTIME, "interrupted", "interrupted")
    except OSError as exc:
        return _fail(args, EXIT_RUNTIME, "runtime_failure", f"{exc.filename or ''}: {exc.strerror or exc}")


def _fail(args: argparse.Namespace, code: int, kind: str, message: str) -> int:
    print(f"anc-provision: error: {message}", file=sys.stderr)
    if getattr(args, "json", False):
        print(
            json.dumps(
                {"ok": False, "exit_code": code, "error": {"kind": kind, "message": message}}, indent=2
            )
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
