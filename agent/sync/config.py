"""The `cloud:` section of agent.yaml, parsed once into a typed, validated `CloudConfig`.

Provisioning writes bundles holding thing_name, endpoint, port, ca_file, cert_file and key_file under
`cloud:`; every other key has a default. Relative file paths are resolved against the directory of the
file the section came from. Errors name the field (`cloud.<key>`) and the allowed values.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

TRANSPORTS = ("awsiot", "paho")
MQTT_VERSIONS = ("5", "3.1.1")
# AWS IoT thing names: 1-128 of [a-zA-Z0-9:_-]; MQTT topic levels must not hold wildcards or '/'.
_THING_NAME = re.compile(r"^[a-zA-Z0-9:_-]{1,128}$")
_RULE_NAME = re.compile(r"^[a-zA-Z0-9_]{1,128}$")
_HOST = re.compile(r"^[a-zA-Z0-9.-]{1,253}$")


class CloudConfigError(ValueError):
    """A `cloud:` section that cannot be used; the message names the field and what is allowed."""


@dataclass(frozen=True, slots=True)
class CloudConfig:
    thing_name: str
    endpoint: str
    ca_file: Path
    cert_file: Path
    key_file: Path
    port: int = 8883
    transport: str = "awsiot"
    client_id: str = ""  # empty: the thing name (AWS IoT policies usually require client id == thing)
    mqtt_version: str = "5"  # paho only; awsiotsdk always speaks MQTT 5
    # The bundle's starting telemetry interval. The running interval is the agent's setting (agent.yaml,
    # then the shadow's desired `telemetry_interval_s`), applied through the ControlPort, not here.
    telemetry_interval_s: float = 1.0
    basic_ingest: bool = False
    basic_ingest_rule: str = "anc_telemetry"
    spool_path: Path | None = None  # None: <state_dir>/spool.sqlite
    spool_max_mb: float = 64.0
    keepalive_s: int = 60
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 120.0
    coefficients_interval_s: float = 600.0

    @property
    def mqtt_client_id(self) -> str:
        return self.client_id or self.thing_name

    def telemetry_topic(self) -> str:
        topic = f"anc/{self.thing_name}/telemetry"
        return f"$aws/rules/{self.basic_ingest_rule}/{topic}" if self.basic_ingest else topic

    def spool_file(self, state_dir: Path) -> Path:
        return self.spool_path if self.spool_path is not None else Path(state_dir) / "spool.sqlite"

    def to_dict(self) -> dict[str, Any]:
        """The section as agent.yaml holds it (absolute paths); `parse_cloud_config` reads it back."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or value == "":
                continue  # unset: the default applies when read back
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out


_REQUIRED = ("thing_name", "endpoint", "ca_file", "cert_file", "key_file")
_ALLOWED = tuple(f.name for f in fields(CloudConfig))


def _fail(key: str, message: str) -> CloudConfigError:
    return CloudConfigError(f"cloud.{key}: {message}")


def _number(raw: dict[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(key, f"{value!r} is not a number (allowed: a number in [{lo:g}, {hi:g}])")
    if not lo <= value <= hi:
        raise _fail(key, f"{value:g} is outside [{lo:g}, {hi:g}]")
    return float(value)


def _integer(raw: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(key, f"{value!r} is not an integer (allowed: an integer in [{lo}, {hi}])")
    if not lo <= value <= hi:
        raise _fail(key, f"{value} is outside [{lo}, {hi}]")
    return value


def _text(raw: dict[str, Any], key: str, default: str, pattern: re.Pattern[str], allowed: str) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str) or not pattern.match(value):
        raise _fail(key, f"{value!r} is not valid (allowed: {allowed})")
    return value


def _choice(raw: dict[str, Any], key: str, default: str, choices: tuple[str, ...]) -> str:
    value = raw.get(key, default)
    if key == "mqtt_version" and isinstance(value, int | float) and not isinstance(value, bool):
        value = {5: "5", 3.1: "3.1.1", 311: "3.1.1"}.get(value, str(value))
    if value not in choices:
        raise _fail(key, f"{value!r} is not allowed (allowed values: {', '.join(choices)})")
    return str(value)


def _path(raw: dict[str, Any], key: str, base_dir: Path, must_exist: bool) -> Path:
    value = raw.get(key)
    if not isinstance(value, str | Path) or not str(value):
        raise _fail(key, f"{value!r} is not a file path (allowed: a path, relative to {base_dir})")
    path = Path(value).expanduser()
    path = path if path.is_absolute() else (base_dir / path)
    if must_exist and not path.is_file():
        raise _fail(key, f"{path} does not exist or is not a file")
    return path


def parse_cloud_config(section: Any, base_dir: Path | str, check_files: bool = True) -> CloudConfig:
    """Parse the `cloud:` mapping; relative paths resolve against `base_dir`.

    `check_files` also requires ca_file, cert_file and key_file to exist (the agent needs them to connect).
    Raises CloudConfigError naming `cloud.<field>` and the allowed values.
    """
    base = Path(base_dir)
    if not isinstance(section, dict):
        raise CloudConfigError("cloud: expected a mapping of keys to values")
    unknown = sorted(str(k) for k in section if k not in _ALLOWED)
    if unknown:
        raise _fail(unknown[0], f"unknown key (allowed keys: {', '.join(_ALLOWED)})")
    missing = [k for k in _REQUIRED if k not in section]
    if missing:
        raise _fail(missing[0], f"is required (required keys: {', '.join(_REQUIRED)})")

    thing_name = _text(section, "thing_name", "", _THING_NAME, "1-128 characters of a-z A-Z 0-9 : _ -")
    client_id = _text(section, "client_id", thing_name, _THING_NAME, "1-128 characters of a-z A-Z 0-9 : _ -")
    basic_ingest = section.get("basic_ingest", False)
    if not isinstance(basic_ingest, bool):
        raise _fail("basic_ingest", f"{basic_ingest!r} is not allowed (allowed values: true, false)")
    spool_raw = section.get("spool_path")
    reconnect_min_s = _number(section, "reconnect_min_s", 1.0, 0.01, 3600.0)
    reconnect_max_s = _number(section, "reconnect_max_s", 120.0, 0.01, 3600.0)
    if reconnect_max_s < reconnect_min_s:
        raise _fail("reconnect_max_s", f"{reconnect_max_s:g} is below reconnect_min_s {reconnect_min_s:g}")
    return CloudConfig(
        thing_name=thing_name,
        endpoint=_text(section, "endpoint", "", _HOST, "a host name or IP address"),
        ca_file=_path(section, "ca_file", base, check_files),
        cert_file=_path(section, "cert_file", base, check_files),
        key_file=_path(section, "key_file", base, check_files),
        port=_integer(section, "port", 8883, 1, 65535),
        transport=_choice(section, "transport", "awsiot", TRANSPORTS),
        client_id=client_id if client_id != thing_name else "",
        mqtt_version=_choice(section, "mqtt_version", "5", MQTT_VERSIONS),
        telemetry_interval_s=_number(section, "telemetry_interval_s", 1.0, 0.1, 3600.0),
        basic_ingest=basic_ingest,
        basic_ingest_rule=_text(
            section, "basic_ingest_rule", "anc_telemetry", _RULE_NAME, "1-128 characters of a-z A-Z 0-9 _"
        ),
        spool_path=None if spool_raw is None else _path(section, "spool_path", base, False),
        spool_max_mb=_number(section, "spool_max_mb", 64.0, 0.01, 65536.0),
        # IoT Core accepts 30-1200 s; a short keep-alive finds a dead link sooner at a few bytes' cost.
        keepalive_s=_integer(section, "keepalive_s", 60, 30, 1200),
        reconnect_min_s=reconnect_min_s,
        reconnect_max_s=reconnect_max_s,
        coefficients_interval_s=_number(section, "coefficients_interval_s", 600.0, 10.0, 86400.0),
    )
