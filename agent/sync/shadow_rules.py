"""The Device Shadow rules the device must respect before it sends, and the parsing of what it receives.

From the AWS IoT Core Developer Guide ("Device Shadow MQTT topics", "Device Shadow service documents",
AWS IoT Core quotas): named shadow topics `$aws/things/<thing>/shadow/name/<shadow>/<op>[/<result>]`;
`clientToken` at most 64 bytes; the `desired` plus `reported` sections of a named shadow at most 8 KB of
compact UTF-8 JSON (413 otherwise); at most 6 levels of nesting in a section (400 otherwise); a null value
deletes its key. The limits themselves, shared with the local shadow service, are in `shadow_limits`.
Inbound documents are parsed here once, at the edge: a malformed message becomes None or a `Rejection`,
never an exception in the client.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.sync.shadow_limits import (
    MAX_DEPTH,
    MAX_PAYLOAD_BYTES,
    MAX_STATE_BYTES,
    compact_json,
    nesting_depth,
)

MAX_SAFE_INTEGER = 2**53  # JSON numbers beyond this lose precision on most consumers

CONFIG_KEYS = (
    "mode",
    "algorithm",
    "mu",
    "taps",
    "leakage",
    "rls_taps",
    "rls_lambda",
    "telemetry_interval_s",
    "offload",
)


class ShadowLimitError(ValueError):
    """A document the shadow service would refuse; `code` is the code it would answer with."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code


def shadow_topic(thing_name: str, shadow_name: str, *suffix: str) -> str:
    return "/".join((f"$aws/things/{thing_name}/shadow/name/{shadow_name}", *suffix))


def jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars and arrays become numbers and lists, non-finite floats null."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def check_state(state: dict[str, Any], max_bytes: int = MAX_STATE_BYTES) -> int:
    """Raise ShadowLimitError if `state` ({"desired": ..., "reported": ...}) breaks a shadow limit;
    returns its compact size in bytes."""
    for section in ("desired", "reported"):
        if nesting_depth(state.get(section)) > MAX_DEPTH:
            raise ShadowLimitError(400, f"{section} nests deeper than {MAX_DEPTH} levels")
    size = len(compact_json({k: v for k, v in state.items() if v is not None}))
    if size > max_bytes:
        raise ShadowLimitError(413, f"state of {size} bytes exceeds the {max_bytes}-byte shadow budget")
    return size


def parse_inbound(payload: bytes) -> dict[str, Any] | None:
    """A shadow service message as a dict, or None when it is too large, not JSON or not an object."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return None
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def document_version(doc: dict[str, Any]) -> int | None:
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version < MAX_SAFE_INTEGER:
        return None
    return version


@dataclass(frozen=True, slots=True)
class Rejection:
    """A desired value the device refused: reported back as `last_rejection`."""

    field: str
    reason: str
    at: int  # Unix time, s

    def document(self) -> dict[str, Any]:
        return {"field": self.field, "reason": self.reason, "at": self.at}


def _scalar_problem(value: Any) -> str | None:
    if isinstance(value, bool | str):
        return None if not isinstance(value, str) or len(value) <= 64 else "is longer than 64 characters"
    if isinstance(value, int):
        return None if abs(value) < MAX_SAFE_INTEGER else "is too large"
    if isinstance(value, float):
        return None if math.isfinite(value) else "is not a finite number"
    return "is not a scalar (allowed: a string, a number or a boolean)"


def parse_config_desired(state: Any, now_s: float | None = None) -> tuple[dict[str, Any], list[Rejection]]:
    """Split a `config` desired state (or delta state) into candidate settings and structural rejections.

    Keys outside CONFIG_KEYS, nested values, overlong strings and non-finite or oversized numbers are
    rejected here; null values (a deleted desired key) are skipped. Bounds are judged by the ControlPort.
    """
    at = int(time.time() if now_s is None else now_s)
    if not isinstance(state, dict):
        return {}, [Rejection("desired", "expected an object of settings", at)]
    settings: dict[str, Any] = {}
    rejections: list[Rejection] = []
    for key, value in state.items():
        if key not in CONFIG_KEYS:
            name = key if len(key) <= 64 else key[:61] + "..."
            rejections.append(
                Rejection(name, f"unknown setting (allowed keys: {', '.join(CONFIG_KEYS)})", at)
            )
            continue
        if value is None:
            continue
        problem = _scalar_problem(value)
        if problem is not None:
            rejections.append(Rejection(key, f"{_short(value)} {problem}", at))
            continue
        settings[key] = value
    return settings, rejections


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def field_of_error(message: str, keys: list[str]) -> str | None:
    """The setting a ControlPort ValueError names: its `field:` prefix, else the longest key mentioned."""
    head = message.split(":", 1)[0].strip()
    if head in keys:
        return head
    for key in sorted(keys, key=len, reverse=True):
        if key in message:
            return key
    return None
