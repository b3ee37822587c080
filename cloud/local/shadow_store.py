"""The Device Shadow document model and rules, kept in SQLite: no MQTT here.

`ShadowStore.handle(operation, thing, shadow, payload)` takes one raw request (the body of a
`.../shadow[/name/S]/{get,update,delete}` publish) and returns the replies the Device Shadow
service sends for it, each as a topic suffix (`update/accepted`, `update/delta`, ...) and a
JSON document. `cloud/local/shadow_service.py` puts it on MQTT; tests drive it directly.

The rules follow the AWS IoT Core Developer Guide:
- "Device Shadow service documents" (device-shadow-document): request, /accepted, /delta and
  /documents response formats; the delta holds the `desired` fields whose value differs from
  `reported` (or is missing there), nested objects down the path to the root, arrays compared and
  copied as whole values; delta metadata equals the desired metadata; arrays may not hold null;
  `clientToken` at most 64 bytes ("Invalid clientToken"); a section set to null is removed.
- "Interacting with shadows" (device-shadow-data-flow): a null value deletes that key; a
  `version` that does not match the current one is rejected with 409 "Version conflict";
  setting `state` to null clears the document but keeps the shadow (the version still
  increments); delete answers `{"version", "timestamp"}` and does not reset the version: a
  shadow created again within 48 hours continues the old numbering, later it starts from 0.
- "Device Shadow MQTT topics" (device-shadow-mqtt): /update/delta carries the whole delta (every
  differing desired attribute, not only those in the request); /update/documents carries
  `previous` and `current` after every accepted update.
- "Device Shadow error messages" (device-shadow-error-messages): the 400/404/409/413/415/429/500
  messages used below, word for word.
- "Diagnosing problems with shadows" and the AWS IoT Core quotas: only the `desired` and
  `reported` sections count toward the 8 KB document size (metadata does not); the JSON of those
  sections is measured compactly, without insignificant whitespace, in UTF-8 bytes; at most 6
  levels of nesting in desired/reported (the level of the section's own object counts as 1; the
  error message says 6, the current quotas page says 8: `max_depth` sets it);
  shadow requests per thing are limited (20 per second here: a token bucket per thing). The numbers
  and the size and depth measures are `agent.sync.shadow_limits`, the same the device checks against.

Choices where the documentation is silent, made as AWS behaves in practice:
- /update/delta is sent only when the request touched `desired` and a delta remains.
- An update with `"state": {}` is accepted (version increments, nothing else changes).
- Empty top-level `desired`/`reported` sections are dropped from the document.
- /update/documents for the update that creates a shadow has no `previous` (there was none).
- The 404 names the shadow as AWS does: `'thing'` for the classic shadow, `'thing~name'` else.
"""

from __future__ import annotations

import copy
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agent.sync.ratelimit import TokenBucket
from agent.sync.shadow_limits import (
    MAX_CLIENT_TOKEN_BYTES,
    MAX_DEPTH,
    MAX_PAYLOAD_BYTES,
    MAX_STATE_BYTES,
    REQUESTS_PER_S_PER_THING,
    compact_size_bytes,
    nesting_depth,
)

log = logging.getLogger(__name__)

Operation = Literal["get", "update", "delete"]
OPERATIONS: tuple[Operation, ...] = ("get", "update", "delete")

MAX_THING_NAME_BYTES = 128
MAX_SHADOW_NAME_BYTES = 64
DELETED_VERSION_KEPT_S = 48 * 3600

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_-")
_SECTIONS = ("desired", "reported")


class _Absent:
    """Marks a request field that was not sent (as opposed to sent as null)."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()


class ShadowError(Exception):
    """A rejected request: the HTTP-style code and the AWS message, echoed with the client token."""

    def __init__(self, code: int, message: str, client_token: str | None = None) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message
        self.client_token = client_token

    def document(self, timestamp_s: int) -> dict[str, Any]:
        doc: dict[str, Any] = {"code": self.code, "message": self.message, "timestamp": timestamp_s}
        if self.client_token is not None:
            doc["clientToken"] = self.client_token
        return doc


@dataclass(frozen=True, slots=True)
class ShadowKey:
    """One shadow: a thing's classic shadow (`shadow_name` None) or one of its named shadows."""

    thing_name: str
    shadow_name: str | None = None

    def __post_init__(self) -> None:
        _check_name("thing name", self.thing_name, MAX_THING_NAME_BYTES)
        if self.shadow_name is not None:
            _check_name("shadow name", self.shadow_name, MAX_SHADOW_NAME_BYTES)

    @property
    def display_name(self) -> str:
        """The shadow as AWS names it in messages: `thing` or `thing~shadow`."""
        return self.thing_name if self.shadow_name is None else f"{self.thing_name}~{self.shadow_name}"

    @property
    def topic_prefix(self) -> str:
        base = f"$aws/things/{self.thing_name}/shadow"
        return base if self.shadow_name is None else f"{base}/name/{self.shadow_name}"


def _check_name(what: str, name: str, max_bytes: int) -> None:
    if not name or len(name.encode()) > max_bytes or not set(name) <= _NAME_CHARS:
        raise ShadowError(400, f"Invalid {what}: {name!r}; allowed: 1 to {max_bytes} of a-z A-Z 0-9 : _ -")


@dataclass(frozen=True, slots=True)
class Reply:
    """One message the service sends: topic suffix below the shadow's prefix, and its document."""

    suffix: str
    document: dict[str, Any]


@dataclass(frozen=True, slots=True)
class UpdateRequest:
    """A parsed /update body. `desired`/`reported`: ABSENT, None (remove the section) or a patch."""

    client_token: str | None
    version: int | None
    clear_state: bool
    desired: Any
    reported: Any


class KeyedBudget:
    """Per-key request budget: a `TokenBucket` of `rate_per_s` tokens a second, at most `burst` saved up,
    for each key, full at the key's first request."""

    def __init__(self, rate_per_s: float, burst: float, monotonic: Callable[[], float]) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"rate_per_s must be > 0 and burst >= 1, got {rate_per_s}, {burst}")
        self._rate_per_s = rate_per_s
        self._burst = burst
        self._monotonic = monotonic
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, key: str) -> bool:
        """Spend one token of `key`; False when none is left."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self._rate_per_s, self._burst, self._monotonic)
        return bucket.try_take(1.0)


# ---------------------------------------------------------------- JSON rules (pure functions)


def json_equal(a: Any, b: Any) -> bool:
    """Equality of two JSON values, never confusing true with 1 (Python's `==` does)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def compute_delta(desired: dict[str, Any], reported: dict[str, Any]) -> dict[str, Any]:
    """The desired fields that differ from reported (or are missing there); objects recurse,
    arrays and scalars are compared and copied whole. Empty when the two agree."""
    delta: dict[str, Any] = {}
    for key, want in desired.items():
        if key not in reported:
            delta[key] = copy.deepcopy(want)
        elif isinstance(want, dict) and isinstance(reported[key], dict):
            nested = compute_delta(want, reported[key])
            if nested:
                delta[key] = nested
        elif not json_equal(want, reported[key]):
            delta[key] = copy.deepcopy(want)
    return delta


def pick_metadata(metadata: dict[str, Any], shape: dict[str, Any]) -> dict[str, Any]:
    """The part of `metadata` that mirrors the keys of `shape` (for delta metadata)."""
    out: dict[str, Any] = {}
    for key, value in shape.items():
        meta = metadata.get(key)
        if meta is None:
            continue
        if isinstance(value, dict) and isinstance(meta, dict) and "timestamp" not in meta:
            out[key] = pick_metadata(meta, value)
        else:
            out[key] = meta
    return out


def mirror_metadata(value: Any, timestamp_s: int) -> Any:
    """Metadata mirroring a value: objects recurse, arrays become one entry per element, every
    other leaf (null included) becomes `{"timestamp": timestamp_s}`."""
    if isinstance(value, dict):
        return {k: mirror_metadata(v, timestamp_s) for k, v in value.items()}
    if isinstance(value, list):
        return [mirror_metadata(v, timestamp_s) for v in value]
    return {"timestamp": timestamp_s}


def merge_patch(
    target: dict[str, Any], metadata: dict[str, Any], patch: dict[str, Any], timestamp_s: int
) -> None:
    """Apply `patch` to `target` in place, keeping `metadata` mirrored: null deletes a key,
    objects merge recursively, arrays and scalars replace the old value whole."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
            metadata.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            meta = metadata.get(key)
            if not isinstance(meta, dict) or "timestamp" in meta:
                meta = {}
                metadata[key] = meta
            merge_patch(target[key], meta, value, timestamp_s)
        elif isinstance(value, dict):
            fresh: dict[str, Any] = {}
            fresh_meta: dict[str, Any] = {}
            merge_patch(fresh, fresh_meta, value, timestamp_s)
            target[key] = fresh
            metadata[key] = fresh_meta
        else:
            target[key] = copy.deepcopy(value)
            metadata[key] = mirror_metadata(value, timestamp_s)


def _array_holds_null(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_array_holds_null(v) for v in value.values())
    if isinstance(value, list):
        return any(v is None or _array_holds_null(v) for v in value)
    return False


# ---------------------------------------------------------------- parsing at the edge


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _decode_json(payload: bytes) -> Any:
    """Raises ShadowError 415 (not UTF-8) or 400 "Invalid JSON"."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise ShadowError(415, "Unsupported documented encoding; supported encoding is UTF-8") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        raise ShadowError(400, "Invalid JSON") from None


def _client_token_of(doc: Any) -> str | None:
    """The clientToken of a request, checked: a string of at most 64 bytes (else 400)."""
    if not isinstance(doc, dict) or "clientToken" not in doc:
        return None
    token = doc["clientToken"]
    if not isinstance(token, str) or len(token.encode()) > MAX_CLIENT_TOKEN_BYTES:
        raise ShadowError(400, "Invalid clientToken")
    return token


def peek_client_token(payload: bytes) -> str | None:
    """The client token of a payload when it has a valid one, for error replies; else None."""
    try:
        return _client_token_of(json.loads(payload.decode("utf-8")))
    except (ValueError, ShadowError):
        return None


def parse_optional_body(payload: bytes) -> str | None:
    """The clientToken of a /get or /delete body: these may be empty, and other content is ignored."""
    if not payload.strip():
        return None
    try:
        doc = json.loads(payload.decode("utf-8"))
    except ValueError:
        return None
    return _client_token_of(doc)


def parse_update(payload: bytes, max_depth: int = MAX_DEPTH) -> UpdateRequest:
    """Validate an /update body into an `UpdateRequest`; ShadowError with the AWS message if not."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ShadowError(413, "The payload exceeds the maximum size allowed", peek_client_token(payload))
    doc = _decode_json(payload)
    if not isinstance(doc, dict):
        raise ShadowError(400, "Invalid JSON")
    token = _client_token_of(doc)
    version = doc.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 0):
        raise ShadowError(400, "Invalid version", token)
    if "state" not in doc:
        raise ShadowError(400, "Missing required node: state", token)
    state = doc["state"]
    if state is None:
        return UpdateRequest(token, version, True, ABSENT, ABSENT)
    if not isinstance(state, dict):
        raise ShadowError(400, "State node must be an object", token)
    for key in state:
        if key not in _SECTIONS:
            raise ShadowError(400, f"State contains an invalid node: '{key}'", token)
    sections = {}
    for name in _SECTIONS:
        section = state.get(name, ABSENT)
        if section is not ABSENT and section is not None:
            if not isinstance(section, dict):
                raise ShadowError(400, f"{name.capitalize()} node must be an object", token)
            if nesting_depth(section) > max_depth:
                raise ShadowError(
                    400, f"JSON contains too many levels of nesting; maximum is {max_depth}", token
                )
            if _array_holds_null(section):
                raise ShadowError(400, f"State contains an invalid node: null in an array in '{name}'", token)
        sections[name] = section
    return UpdateRequest(token, version, False, sections["desired"], sections["reported"])


# ---------------------------------------------------------------- the store


@dataclass(slots=True)
class _Row:
    state: dict[str, Any]  # {"desired": {...}, "reported": {...}}, empty sections left out
    metadata: dict[str, Any]  # mirrors state
    version: int
    deleted: bool
    changed_s: int


_SCHEMA = """
CREATE TABLE IF NOT EXISTS shadows (
    thing_name  TEXT NOT NULL,
    shadow_name TEXT NOT NULL,          -- '' for the classic shadow
    state       TEXT NOT NULL,
    metadata    TEXT NOT NULL,
    version     INTEGER NOT NULL,
    deleted     INTEGER NOT NULL,       -- 1: deleted, row kept for its version number
    changed_s   INTEGER NOT NULL,
    PRIMARY KEY (thing_name, shadow_name)
)
"""


class ShadowStore:
    """Shadows of every thing in one SQLite file (WAL); safe to call from several threads.

    `clock` gives the epoch seconds written in timestamps; `monotonic` drives the rate limit
    (both injectable so tests control time). A database error answers 500 and changes nothing.
    """

    def __init__(
        self,
        db_path: str | Path = ":memory:",
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        max_state_bytes: int = MAX_STATE_BYTES,
        max_depth: int = MAX_DEPTH,
        requests_per_s: float = REQUESTS_PER_S_PER_THING,
        burst: float | None = None,
        busy_timeout_s: float = 5.0,
    ) -> None:
        self._clock = clock
        self._max_state_bytes = max_state_bytes
        self._max_depth = max_depth
        self._bucket = KeyedBudget(requests_per_s, burst if burst is not None else requests_per_s, monotonic)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            str(db_path), timeout=busy_timeout_s, check_same_thread=False, isolation_level=None
        )
        if str(db_path) != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _now_s(self) -> int:
        return int(self._clock())

    # -- the one entry point used by the MQTT front end

    def handle(
        self, operation: Operation, thing_name: str, shadow_name: str | None, payload: bytes
    ) -> list[Reply]:
        """Process one request; return the replies (accepted/rejected first, then delta, documents)."""
        if operation not in OPERATIONS:
            raise ValueError(f"operation must be one of {OPERATIONS}, got {operation!r}")
        with self._lock:
            try:
                key = ShadowKey(thing_name, shadow_name)
                if not self._bucket.take(thing_name):
                    raise ShadowError(429, "Too Many Requests", peek_client_token(payload))
                if operation == "get":
                    return [Reply("get/accepted", self._get(key, parse_optional_body(payload)))]
                if operation == "delete":
                    return [Reply("delete/accepted", self._delete(key, parse_optional_body(payload)))]
                return self._update(key, parse_update(payload, self._max_depth))
            except sqlite3.Error:
                log.exception("shadow store: %s of %s~%s failed", operation, thing_name, shadow_name)
                err = ShadowError(500, "Internal service failure", peek_client_token(payload))
                return [Reply(f"{operation}/rejected", err.document(self._now_s()))]
            except ShadowError as err:
                if err.client_token is None:
                    err.client_token = peek_client_token(payload)
                return [Reply(f"{operation}/rejected", err.document(self._now_s()))]

    # -- storage

    def _load(self, key: ShadowKey) -> _Row | None:
        row = self._db.execute(
            "SELECT state, metadata, version, deleted, changed_s FROM shadows "
            "WHERE thing_name = ? AND shadow_name = ?",
            (key.thing_name, key.shadow_name or ""),
        ).fetchone()
        if row is None:
            return None
        return _Row(json.loads(row[0]), json.loads(row[1]), row[2], bool(row[3]), row[4])

    def _save(self, key: ShadowKey, row: _Row) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO shadows VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                key.thing_name,
                key.shadow_name or "",
                json.dumps(row.state, separators=(",", ":")),
                json.dumps(row.metadata, separators=(",", ":")),
                row.version,
                int(row.deleted),
                row.changed_s,
            ),
        )

    def _live(self, key: ShadowKey, client_token: str | None) -> _Row:
        row = self._load(key)
        if row is None or row.deleted:
            raise ShadowError(404, f"No shadow exists with name: '{key.display_name}'", client_token)
        return row

    # -- operations

    def _get(self, key: ShadowKey, client_token: str | None) -> dict[str, Any]:
        row = self._live(key, client_token)
        state = copy.deepcopy(row.state)
        delta = compute_delta(row.state.get("desired", {}), row.state.get("reported", {}))
        if delta:
            state["delta"] = delta
        doc: dict[str, Any] = {
            "state": state,
            "metadata": copy.deepcopy(row.metadata),
            "version": row.version,
            "timestamp": self._now_s(),
        }
        if client_token is not None:
            doc["clientToken"] = client_token
        return doc

    def _delete(self, key: ShadowKey, client_token: str | None) -> dict[str, Any]:
        row = self._live(key, client_token)
        now_s = self._now_s()
        self._save(key, _Row({}, {}, row.version, True, now_s))
        doc: dict[str, Any] = {"version": row.version, "timestamp": now_s}
        if client_token is not None:
            doc["clientToken"] = client_token
        return doc

    def _update(self, key: ShadowKey, request: UpdateRequest) -> list[Reply]:
        now_s = self._now_s()
        token = request.client_token
        old = self._load(key)
        existed = old is not None and not old.deleted
        if old is None or (old.deleted and now_s - old.changed_s > DELETED_VERSION_KEPT_S):
            current_version = 0
        else:
            current_version = old.version
        if request.version is not None and request.version != current_version:
            raise ShadowError(409, "Version conflict", token)

        state: dict[str, Any] = copy.deepcopy(old.state) if existed and old else {}
        metadata: dict[str, Any] = copy.deepcopy(old.metadata) if existed and old else {}
        echo_state: Any
        echo_meta: dict[str, Any] = {}
        if request.clear_state:
            state, metadata, echo_state = {}, {}, None
        else:
            echo_state = {}
            for name in _SECTIONS:
                patch = getattr(request, name)
                if patch is ABSENT:
                    continue
                echo_state[name] = copy.deepcopy(patch)
                if patch is None:
                    state.pop(name, None)
                    metadata.pop(name, None)
                    echo_meta[name] = {"timestamp": now_s}
                    continue
                section = state.setdefault(name, {})
                section_meta = metadata.setdefault(name, {})
                merge_patch(section, section_meta, patch, now_s)
                echo_meta[name] = mirror_metadata(patch, now_s)
                if not section:
                    del state[name]
                    metadata.pop(name, None)
        if compact_size_bytes(state) > self._max_state_bytes:
            raise ShadowError(413, "The payload exceeds the maximum size allowed", token)

        version = current_version + 1
        self._save(key, _Row(state, metadata, version, False, now_s))

        accepted: dict[str, Any] = {
            "state": echo_state,
            "metadata": echo_meta,
            "version": version,
            "timestamp": now_s,
        }
        replies = [Reply("update/accepted", _with_token(accepted, token))]
        if request.desired is not ABSENT:
            delta = compute_delta(state.get("desired", {}), state.get("reported", {}))
            if delta:
                delta_doc = {
                    "state": delta,
                    "metadata": pick_metadata(metadata.get("desired", {}), delta),
                    "version": version,
                    "timestamp": now_s,
                }
                replies.append(Reply("update/delta", _with_token(delta_doc, token)))
        documents: dict[str, Any] = {}
        if existed and old is not None:
            documents["previous"] = {"state": old.state, "metadata": old.metadata, "version": old.version}
        documents["current"] = {
            "state": copy.deepcopy(state),
            "metadata": copy.deepcopy(metadata),
            "version": version,
        }
        documents["timestamp"] = now_s
        replies.append(Reply("update/documents", _with_token(documents, token)))
        return replies


def _with_token(doc: dict[str, Any], client_token: str | None) -> dict[str, Any]:
    if client_token is not None:
        doc["clientToken"] = client_token
    return doc
