"""The AWS IoT Device Shadow service's limits and the way it measures a document, in one place.

The device checks what it sends against these (`agent.sync.shadow_rules`) and the local shadow service
enforces them (`cloud.local.shadow_store`), so the two sides cannot disagree on what the service refuses.
From the AWS IoT Core Developer Guide ("Device Shadow service documents", AWS IoT Core quotas): the
`desired` plus `reported` sections of a shadow at most 8 KB of compact UTF-8 JSON (413 otherwise); at most
6 levels of nesting in a section (400 otherwise); `clientToken` at most 64 bytes; an MQTT payload at most
128 KB; 20 shadow requests per second per thing. Pure: standard library only.
"""

from __future__ import annotations

import json
from typing import Any

MAX_STATE_BYTES = 8 * 1024
MAX_DEPTH = 6
MAX_CLIENT_TOKEN_BYTES = 64
MAX_PAYLOAD_BYTES = 128 * 1024  # AWS IoT Core's MQTT payload limit
REQUESTS_PER_S_PER_THING = 20.0


def compact_json(value: Any, allow_nan: bool = False) -> bytes:
    """`value` as UTF-8 compact JSON (no insignificant whitespace), as the shadow service measures it.

    With `allow_nan` False a non-finite float raises ValueError (it is not JSON).
    """
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=allow_nan).encode()


def compact_size_bytes(value: Any) -> int:
    """UTF-8 bytes of `value` as compact JSON (a non-finite float counts as its Python token)."""
    return len(compact_json(value, allow_nan=True))


def nesting_depth(value: Any) -> int:
    """Levels of objects/arrays: a scalar is 0, `{"a": 1}` is 1, `{"a": {"b": 1}}` is 2."""
    if isinstance(value, dict):
        return 1 + max((nesting_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((nesting_depth(v) for v in value), default=0)
    return 0
