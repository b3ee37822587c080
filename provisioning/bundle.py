"""Device bundles: the files a device needs to join the fleet, in the layout the agent reads.

    <out>/agent.yaml     profile: <profile>
                         cloud: {thing_name, endpoint, port, ca_file, cert_file, key_file}
                         (file paths relative to <out>, as the agent's config loader resolves them)
    <out>/device.crt     the device certificate (PEM)
    <out>/device.key     its private key (PEM, mode 0600; absent when the key lives elsewhere, e.g. in a
                         secure element, and agent.yaml's key_file names where)
    <out>/root-ca.pem    the trust anchor for the broker's server certificate (the fleet CA for the
                         local stack; Amazon Root CA 1 for AWS IoT Core)

Writing is all-or-nothing: when <out> does not exist (or is an empty directory) the bundle is built in
a temp directory beside it and renamed into place in one step. When <out> already holds other files
(an /etc/anc-agent with unrelated configuration), the bundle's files are staged inside it and renamed
one by one, device.crt last (the first-boot unit's condition), each rename atomic. An existing bundle
file is never replaced without `force`.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agent.profiles import available_profiles
from provisioning import naming, pki
from provisioning.errors import AlreadyExistsError, BadInputError
from provisioning.home import FleetHome

CONFIG_FILE = "agent.yaml"
CERT_FILE = "device.crt"
KEY_FILE = "device.key"
ROOT_CA_FILE = "root-ca.pem"
BUNDLE_FILES = (KEY_FILE, ROOT_CA_FILE, CONFIG_FILE, CERT_FILE)  # rename order: device.crt last
DEFAULT_PORT = 8883
_HOST = re.compile(r"^[a-zA-Z0-9.-]{1,253}$")


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int = DEFAULT_PORT

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_endpoint(text: str) -> Endpoint:
    """`HOST[:PORT]` (port 1-65535, default 8883); BadInputError naming the problem otherwise."""
    host, sep, port_text = text.partition(":")
    if not _HOST.match(host):
        raise BadInputError(f"endpoint: {text!r}: host {host!r} is not a host name or IPv4 address")
    if not sep:
        return Endpoint(host)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise BadInputError(f"endpoint: {text!r}: port {port_text!r} is not an integer in [1, 65535]")
    return Endpoint(host, int(port_text))


def validate_profile(profile: str) -> str:
    """`profile` when it names a firmware profile (firmware_profiles/); else BadInputError listing them."""
    names = available_profiles()
    if profile not in names:
        raise BadInputError(f"profile: {profile!r} is not a firmware profile (allowed: {', '.join(names)})")
    return profile


def agent_yaml(thing_name: str, endpoint: Endpoint, profile: str, key_file: str = KEY_FILE) -> bytes:
    """The bundle's agent.yaml text (flat `cloud:` keys, paths relative to the bundle directory)."""
    config: dict[str, Any] = {
        "profile": profile,
        "cloud": {
            "thing_name": thing_name,
            "endpoint": endpoint.host,
            "port": endpoint.port,
            "ca_file": ROOT_CA_FILE,
            "cert_file": CERT_FILE,
            "key_file": key_file,
        },
    }
    stamp = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    header = f"# Written by anc-provision on {stamp}. File paths are relative to this directory.\n"
    return (header + yaml.safe_dump(config, sort_keys=False)).encode()


@dataclass(frozen=True)
class BundlePaths:
    directory: Path
    config: Path
    certificate: Path
    key: Path | None
    root_ca: Path

    def to_dict(self) -> dict[str, str | None]:
        return {
            "directory": str(self.directory),
            "config": str(self.config),
            "certificate": str(self.certificate),
            "key": str(self.key) if self.key else None,
            "root_ca": str(self.root_ca),
        }


def _write_files(directory: Path, files: dict[str, tuple[bytes, int]]) -> None:
    """Create and fsync every file in the fresh `directory`, then fsync the directory itself."""
    for name, (data, mode) in files.items():
        pki.write_new_file(directory / name, data, mode=mode)
    pki.fsync_dir(directory)


def write_bundle(
    out: str | os.PathLike[str],
    *,
    thing_name: str,
    endpoint: Endpoint,
    profile: str,
    cert_pem: bytes,
    ca_pem: bytes,
    key_pem: bytes | None,
    key_file: str | None = None,
    force: bool = False,
) -> BundlePaths:
    """Write a bundle into `out` (see the module docstring). `key_pem` None means the device keeps its
    key: then `key_file` (the path of the key on the device) is required and written into agent.yaml.
    AlreadyExistsError when a bundle file exists and not `force`; nothing is left half-written."""
    naming.validate_thing_name(thing_name)
    if key_pem is None and not key_file:
        raise BadInputError("key: this device has no key here (issued from a CSR); pass --key-file PATH")
    target = Path(out).absolute()
    files: dict[str, tuple[bytes, int]] = {
        ROOT_CA_FILE: (ca_pem, 0o644),
        CONFIG_FILE: (agent_yaml(thing_name, endpoint, profile, key_file or KEY_FILE), 0o644),
        CERT_FILE: (cert_pem, 0o644),
    }
    if key_pem is not None:
        files[KEY_FILE] = (key_pem, 0o600)
    ordered = {name: files[name] for name in BUNDLE_FILES if name in files}
    if target.exists() and not target.is_dir():
        raise BadInputError(f"out: {target} exists and is not a directory")
    existing = [n for n in BUNDLE_FILES if (target / n).exists()] if target.is_dir() else []
    if existing and not force:
        raise AlreadyExistsError(f"out: {target} already holds a bundle ({', '.join(existing)}); use --force")
    if not target.exists() or not any(target.iterdir()):
        tmp = pki.temporary_directory_next_to(target)
        try:
            _write_files(tmp, ordered)
            tmp.chmod(0o755)  # the directory; the key file inside stays 0600
            os.rename(tmp, target)  # replaces a missing or empty directory in one step
            pki.fsync_dir(target.parent)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    else:
        staging = pki.temporary_directory_next_to(target / ".bundle")
        try:
            _write_files(staging, ordered)
            for name in ordered:
                os.replace(staging / name, target / name)
            if force and key_pem is None:
                (target / KEY_FILE).unlink(missing_ok=True)  # a stale key must not sit beside a new cert
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        pki.fsync_dir(target)
    return BundlePaths(
        directory=target,
        config=target / CONFIG_FILE,
        certificate=target / CERT_FILE,
        key=target / KEY_FILE if key_pem is not None else None,
        root_ca=target / ROOT_CA_FILE,
    )


def verify_bundle(directory: str | os.PathLike[str], ca_cert_pem: bytes) -> dict[str, Any]:
    """Check a bundle: agent.yaml has the keys, device.crt is issued by the CA given (PEM) and valid now,
    CN = thing_name, device.key (if present) is 0600 and matches the certificate. Returns the `cloud:`
    section; BadInputError naming the first problem."""
    root = Path(directory)
    try:
        config = yaml.safe_load((root / CONFIG_FILE).read_text())
        cloud = config["cloud"]
        thing_name = cloud["thing_name"]
        cert = pki.load_certificate((root / cloud["cert_file"]).read_bytes())
        ca_cert = pki.load_certificate(ca_cert_pem)
        pki.verify_issued_by(cert, ca_cert)
    except (OSError, KeyError, TypeError, yaml.YAMLError, pki.PkiError) as exc:
        raise BadInputError(f"bundle {root}: {exc}") from exc
    if pki.common_name(cert) != thing_name:
        raise BadInputError(f"bundle {root}: certificate CN {pki.common_name(cert)!r} is not {thing_name!r}")
    key_path = root / cloud["key_file"]
    if key_path.exists():
        mode = key_path.stat().st_mode & 0o777
        if mode != 0o600:
            raise BadInputError(f"bundle {root}: {key_path.name} has mode {mode:o}, expected 600")
        key = pki.load_private_key(key_path.read_bytes())
        if not pki.same_public_key(key.public_key(), cert.public_key()):
            raise BadInputError(f"bundle {root}: {key_path.name} does not match {cloud['cert_file']}")
    return dict(cloud)


def check_device_certificate(home: FleetHome, thing_name: str) -> None:
    """BadInputError when the device certificate is not from this CA or not valid now; AlreadyExistsError
    (refused) when it is revoked."""
    cert = home.device_certificate(thing_name)
    try:
        pki.verify_issued_by(cert, home.ca_certificate())
    except pki.PkiError as exc:
        raise BadInputError(f"thing {thing_name!r}: {exc}") from exc
    if home.is_revoked(cert):
        raise AlreadyExistsError(f"thing {thing_name!r}: its certificate is revoked; refusing to bundle it")


def bundle_device(
    home: FleetHome,
    thing_name: str,
    out: Path,
    endpoint: Endpoint,
    profile: str,
    *,
    root_ca_pem: bytes | None = None,
    key_file: str | None = None,
    force: bool = False,
) -> BundlePaths:
    """Bundle an issued device from the fleet home (checks the certificate first)."""
    record = home.device(thing_name)
    check_device_certificate(home, thing_name)
    key_pem = Path(record.key_path).read_bytes() if record.key_path else None
    return write_bundle(
        out,
        thing_name=thing_name,
        endpoint=endpoint,
        profile=profile,
        cert_pem=Path(record.certificate_path).read_bytes(),
        ca_pem=root_ca_pem if root_ca_pem is not None else home.ca_cert_path.read_bytes(),
        key_pem=key_pem,
        key_file=key_file,
        force=force,
    )
