"""The Device Shadow client: two named shadows per thing, `config` and `coefficients`.

On every connection it gets both shadows, applies `desired` (the cloud wins for desired) and reports the
full applied state (the device wins for reported: reported keys it does not own are deleted with null).
Then it follows `/update/delta` and `/update/documents`:

- Every request carries a fresh `clientToken` (<= 64 bytes); replies are matched by it, others ignored.
- Updates carry the shadow `version` held (optimistic locking): a 409 answer means someone else wrote
  first, so the client gets the shadow again and merges by the rules above.
- A delta or document older than the version held is discarded.
- Outgoing state is checked against the 8 KB budget and the depth limit before sending (413/400 never
  reach the service); requests pass a 20 per second token bucket; a 429 answer or a timeout is retried
  with full-jitter back-off. One update per shadow is in flight; a newer report waits and replaces it.
- Desired settings go through `ControlPort.apply_settings`. A value it refuses (ValueError naming the
  field) is reported as `last_rejection {field, reason, at}`; the other values still apply, the running
  value of the refused one stays, and the agent keeps running.
- `coefficients`: reported holds the device's current set (inline when it fits half the shadow budget,
  so a pushed desired set still fits beside it; else a pointer, with the data kept in the state dir);
  a desired set is decoded and checked (encoding, shapes against the engine's, checksum, finite values)
  before `ControlPort.load_coefficients`, then the desired section is cleared.

State kept in `<state_dir>/shadow/`: `config.json` (the last applied settings and the shadow version they
came with, for inspection and an offline restart), `coefficients.json` (the set version counter and the
checksum last reported) and `coefficients/*.npz` (sets too large for the shadow, named as their pointer).

Runs on the sync loop thread only.
"""

from __future__ import annotations

import io
import json
import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from agent.ports import ControlPort
from agent.sync import coefficients as coeffs
from agent.sync.loop import SyncLoop, Timer
from agent.sync.ratelimit import TokenBucket
from agent.sync.shadow_limits import (
    MAX_CLIENT_TOKEN_BYTES,
    MAX_STATE_BYTES,
    REQUESTS_PER_S_PER_THING,
    compact_json,
)
from agent.sync.shadow_rules import (
    CONFIG_KEYS,
    Rejection,
    ShadowLimitError,
    check_state,
    document_version,
    field_of_error,
    jsonable,
    parse_config_desired,
    parse_inbound,
    shadow_topic,
)
from agent.sync.transport import PublishOutcome, Transport
from provisioning.pki import write_file_atomic

log = logging.getLogger(__name__)

CONFIG = "config"
COEFFICIENTS = "coefficients"
SHADOWS = (CONFIG, COEFFICIENTS)
COEFFICIENTS_INLINE_BYTES = MAX_STATE_BYTES // 2
MAX_ATTEMPTS = 6
COEFFICIENTS_EMPTY_RETRY_S = 5.0
_OWN_COEFFICIENT_KEYS = frozenset(
    {"version", "encoding", "checksum", "shapes", "data", "s3_key", "last_rejection"}
)


@dataclass
class _Request:
    shadow: str
    op: str  # "get" | "update"
    token: str
    attempts: int = 0
    timer: Timer | None = None


@dataclass
class ShadowStats:
    """Counters for telemetry and tests."""

    applied: int = 0
    rejected: int = 0
    conflicts: int = 0
    throttled: int = 0
    timeouts: int = 0
    stale_discarded: int = 0
    malformed: int = 0
    coefficient_sets_loaded: int = 0
    reports_sent: dict[str, int] = field(default_factory=lambda: {s: 0 for s in SHADOWS})


class ShadowClient:
    def __init__(
        self,
        loop: SyncLoop,
        transport: Transport,
        control: ControlPort,
        thing_name: str,
        state_dir: Path,
        *,
        coefficients_interval_s: float = 600.0,
        request_timeout_s: float = 10.0,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._loop = loop
        self._transport = transport
        self._control = control
        self.thing_name = thing_name
        self._dir = Path(state_dir) / "shadow"
        self._coefficients_interval_s = coefficients_interval_s
        self._request_timeout_s = request_timeout_s
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()
        self._bucket = TokenBucket(REQUESTS_PER_S_PER_THING, REQUESTS_PER_S_PER_THING, loop.now_s)
        self._token_prefix = f"{thing_name[:24]}-{secrets.token_hex(4)}"
        self._token_counter = 0
        self.versions: dict[str, int] = {s: -1 for s in SHADOWS}
        self._pending: dict[str, _Request] = {}
        self._update_in_flight: dict[str, bool] = {s: False for s in SHADOWS}
        self._report_waiting: dict[str, bool] = {s: False for s in SHADOWS}
        self._nulls: dict[str, set[str]] = {s: set() for s in SHADOWS}
        self._clear_desired: dict[str, bool] = {s: False for s in SHADOWS}
        self.last_rejection: dict[str, Any] | None = None
        self.coefficients_rejection: dict[str, Any] | None = None
        self._coeff_state: dict[str, Any] = self._load_state(COEFFICIENTS)
        self._coeff_timer: Timer | None = None
        self._pointer_only = False
        self._empty_retry: Timer | None = None
        self.synced: dict[str, bool] = {s: False for s in SHADOWS}
        self.stats = ShadowStats()

    # ---- lifecycle ----

    def start(self) -> None:
        for shadow in SHADOWS:
            for op in ("get", "update"):
                self._transport.subscribe(shadow_topic(self.thing_name, shadow, op, "+"), 1, self._on_message)
        self._transport.on_connection_change(self._on_connection)
        if self._transport.connected:
            self._on_connection(True)

    def stop(self) -> None:
        self._drop_pending()
        for timer in (self._coeff_timer, self._empty_retry):
            if timer is not None:
                timer.cancel()
        self._coeff_timer = self._empty_retry = None

    def report_config(self) -> None:
        """Report the applied settings and status now (e.g. after a local change)."""
        self._request_update(CONFIG)

    def report_coefficients(self) -> None:
        """Report the current coefficient set now (skipped when unchanged since the last report)."""
        self._request_update(COEFFICIENTS)

    # ---- connection ----

    def _on_connection(self, up: bool) -> None:
        self._drop_pending()
        if not up:
            self.synced = {s: False for s in SHADOWS}
            return
        for shadow in SHADOWS:
            self._send_get(shadow)
        if self._coeff_timer is None:
            self._coeff_timer = self._loop.call_later(
                self._coefficients_interval_s, self._periodic_coefficients
            )

    def _periodic_coefficients(self) -> None:
        self._coeff_timer = self._loop.call_later(self._coefficients_interval_s, self._periodic_coefficients)
        if self._transport.connected and self.synced[COEFFICIENTS]:
            self._request_update(COEFFICIENTS)

    def _drop_pending(self) -> None:
        for req in self._pending.values():
            if req.timer is not None:
                req.timer.cancel()
        self._pending.clear()
        self._update_in_flight = {s: False for s in SHADOWS}
        self._report_waiting = {s: False for s in SHADOWS}  # the next connection re-gets and reports

    # ---- requests ----

    def _new_token(self) -> str:
        self._token_counter += 1
        token = f"{self._token_prefix}-{self._token_counter}"
        assert len(token.encode()) <= MAX_CLIENT_TOKEN_BYTES
        return token

    def _send_get(self, shadow: str) -> None:
        self._send(_Request(shadow, "get", self._new_token()))

    def _request_update(self, shadow: str) -> None:
        if not self._transport.connected:
            return
        if self._update_in_flight[shadow]:
            self._report_waiting[shadow] = True
            return
        self._update_in_flight[shadow] = True
        self._send(_Request(shadow, "update", self._new_token()))

    def _send(self, req: _Request) -> None:
        if not self._transport.connected:
            self._finish(req)
            return
        wait_s = self._bucket.delay_s()
        if wait_s > 0:
            self._pending[req.token] = req
            req.timer = self._loop.call_later(wait_s, lambda: self._send_now(req))
            return
        self._send_now(req)

    def _send_now(self, req: _Request) -> None:
        if not self._bucket.try_take():
            req.timer = self._loop.call_later(self._bucket.delay_s(), lambda: self._send_now(req))
            self._pending[req.token] = req
            return
        body = self._body(req)
        if body is None:
            self._finish(req)
            return
        req.attempts += 1
        self._pending[req.token] = req
        req.timer = self._loop.call_later(self._request_timeout_s, lambda: self._on_timeout(req))
        topic = shadow_topic(self.thing_name, req.shadow, req.op)
        self._transport.publish(topic, compact_json(body), 1, lambda o: self._on_published(req, o))

    def _body(self, req: _Request) -> dict[str, Any] | None:
        if req.op == "get":
            return {"clientToken": req.token}
        state = self._config_state() if req.shadow == CONFIG else self._coefficients_state()
        if state is None:
            return None
        body: dict[str, Any] = {"state": state, "clientToken": req.token}
        if self.versions[req.shadow] >= 0:
            body["version"] = self.versions[req.shadow]
        self.stats.reports_sent[req.shadow] += 1
        return body

    def _on_published(self, req: _Request, outcome: PublishOutcome) -> None:
        if not outcome.acked and req.token in self._pending:
            self._retry(req, "not delivered")  # the connection dropped; reconnect re-gets anyway

    def _on_timeout(self, req: _Request) -> None:
        if self._pending.get(req.token) is req:
            self.stats.timeouts += 1
            self._retry(req, "no reply")

    def _retry(self, req: _Request, why: str) -> None:
        if req.timer is not None:
            req.timer.cancel()
        self._pending.pop(req.token, None)
        if req.attempts >= MAX_ATTEMPTS or not self._transport.connected:
            log.warning("shadow %s %s given up after %d attempts (%s)", req.shadow, req.op, req.attempts, why)
            self._finish(req)
            return
        delay_s = self._rng.uniform(0.0, min(30.0, 0.25 * 2.0**req.attempts))
        retry = _Request(req.shadow, req.op, self._new_token(), req.attempts)
        self._pending[retry.token] = retry
        retry.timer = self._loop.call_later(delay_s, lambda: self._send_now(retry))

    def _finish(self, req: _Request) -> None:
        """A request is over (answered, given up or dropped)."""
        if req.timer is not None:
            req.timer.cancel()
        self._pending.pop(req.token, None)
        if req.op == "update":
            self._update_in_flight[req.shadow] = False
            if self._report_waiting[req.shadow]:
                self._report_waiting[req.shadow] = False
                self._request_update(req.shadow)

    # ---- replies ----

    def _on_message(self, topic: str, payload: bytes) -> None:
        parts = topic.split("/")
        if len(parts) != 8 or parts[5] not in SHADOWS:
            return
        shadow, op, result = parts[5], parts[6], parts[7]
        doc = parse_inbound(payload)
        if doc is None:
            self.stats.malformed += 1
            log.warning("shadow %s: ignored a malformed %s/%s message", shadow, op, result)
            return
        token = doc.get("clientToken")
        req = self._pending.get(token) if isinstance(token, str) else None
        if req is not None and (req.shadow, req.op) != (shadow, op):
            req = None
        if op == "update" and result == "delta":
            self._on_delta(shadow, doc)
        elif op == "update" and result == "documents":
            self._on_documents(shadow, doc)
        elif req is None:
            return  # a reply to someone else's request (accepted topics reach every subscriber)
        elif result == "accepted":
            self._on_accepted(req, doc)
        elif result == "rejected":
            self._on_rejected(req, doc)

    def _on_accepted(self, req: _Request, doc: dict[str, Any]) -> None:
        version = document_version(doc)
        if req.op == "get":
            self._finish(req)
            if version is not None and version < self.versions[req.shadow]:
                self.stats.stale_discarded += 1
                return
            self._on_full_document(req.shadow, doc, version)
        else:
            if version is not None:
                self.versions[req.shadow] = max(self.versions[req.shadow], version)
            self._nulls[req.shadow].clear()
            self._clear_desired[req.shadow] = False
            self._finish(req)  # may send a waiting report: after the version moved on

    def _on_rejected(self, req: _Request, doc: dict[str, Any]) -> None:
        code = doc.get("code")
        message = str(doc.get("message", ""))[:200]
        if code == 429:
            self.stats.throttled += 1
            self._retry(req, "throttled (429)")
            return
        self._finish(req)
        if req.op == "get" and code == 404:
            # No shadow yet: nothing desired; the first report creates it.
            self._on_full_document(req.shadow, {"state": {}}, None)
        elif req.op == "update" and code == 413 and req.shadow == COEFFICIENTS and not self._pointer_only:
            # The desired section left no room for the inline set: report by pointer from now on.
            self._pointer_only = True
            self._coeff_state["last_checksum"] = None
            self._request_update(COEFFICIENTS)
        elif req.op == "update" and code == 409:
            self.stats.conflicts += 1
            self._send_get(req.shadow)  # re-get and merge: desired from the cloud, reported from us
        else:
            log.warning("shadow %s %s rejected: %s %s", req.shadow, req.op, code, message)

    def _take_version(self, shadow: str, version: int | None) -> bool:
        """Move `shadow` to `version` and say True, unless the message had none (malformed) or an older
        one than already seen (stale): those are counted and answer False."""
        if version is None:
            self.stats.malformed += 1
            return False
        if version < self.versions[shadow]:
            self.stats.stale_discarded += 1
            return False
        self.versions[shadow] = version
        return True

    def _on_delta(self, shadow: str, doc: dict[str, Any]) -> None:
        if not self._take_version(shadow, document_version(doc)):
            return
        if shadow == CONFIG:
            self._apply_config(doc.get("state"))
            self._request_update(CONFIG)
        else:
            self._send_get(COEFFICIENTS)  # a delta is only a diff: get the whole pushed set

    def _on_documents(self, shadow: str, doc: dict[str, Any]) -> None:
        current = doc.get("current")
        self._take_version(shadow, document_version(current) if isinstance(current, dict) else None)

    def _on_full_document(self, shadow: str, doc: dict[str, Any], version: int | None) -> None:
        if version is not None:
            self.versions[shadow] = version
        state = doc.get("state")
        state = state if isinstance(state, dict) else {}
        desired = state.get("desired")
        reported = state.get("reported")
        if isinstance(reported, dict):
            self._nulls[shadow] = {str(k) for k in reported}
        if shadow == CONFIG:
            if desired is not None:
                self._apply_config(desired)
        else:
            if isinstance(reported, dict):
                self._adopt_reported_coefficients(reported)
            if desired is not None:
                self._apply_coefficients(desired)
        self.synced[shadow] = True
        self._request_update(shadow)

    # ---- config ----

    def _apply_config(self, desired: Any) -> None:
        now_s = self._wall_clock()
        settings, rejections = parse_config_desired(desired, now_s)
        try:
            current = self._control.current_settings()
        except Exception:
            log.exception("ControlPort.current_settings failed")
            current = {}
        changes = {k: v for k, v in settings.items() if not _same(current.get(k), v)}
        applied_before = self.stats.applied
        while changes:
            try:
                self._control.apply_settings(dict(changes))
                self.stats.applied += 1
                break
            except ValueError as exc:
                name = field_of_error(str(exc), list(changes))
                reason = str(exc)[:200]
                if name is None:
                    rejections += [Rejection(k, reason, int(now_s)) for k in changes]
                    break
                rejections.append(Rejection(name, reason, int(now_s)))
                changes.pop(name)
            except Exception as exc:  # a bug behind the port must not stop the agent
                log.exception("ControlPort.apply_settings failed")
                rejections += [
                    Rejection(k, f"internal error: {type(exc).__name__}", int(now_s)) for k in changes
                ]
                break
        if rejections:
            self.stats.rejected += len(rejections)
            self.last_rejection = rejections[0].document()
            log.warning("desired config rejected: %s", rejections[0].document())
        elif settings:
            self.last_rejection = None
        if self.stats.applied != applied_before:  # keep the last accepted settings in the state dir
            self._save_state(CONFIG, {"version": self.versions[CONFIG], "applied": self._safe_settings()})

    def _safe_settings(self) -> dict[str, Any]:
        try:
            return dict(self._control.current_settings())
        except Exception:
            log.exception("ControlPort.current_settings failed")
            return {}

    def _config_state(self) -> dict[str, Any] | None:
        settings = self._safe_settings()
        try:
            status = dict(self._control.status())
        except Exception:
            log.exception("ControlPort.status failed")
            status = {}
        reported: dict[str, Any] = {k: settings[k] for k in CONFIG_KEYS if k in settings}
        reported["agent_version"] = status.pop("agent_version", None)
        reported["profile"] = status.pop("profile", None)
        reported["status"] = status
        reported["last_rejection"] = self.last_rejection
        reported = jsonable(reported)
        for stale in self._nulls[CONFIG] - set(reported):
            reported[stale] = None  # the device wins for reported: delete what it does not own
        state = {"reported": reported}
        try:
            check_state(state)
        except ShadowLimitError as exc:
            log.error("config report not sent: %s", exc)
            reported["status"] = None
            check_state(state)
        return state

    # ---- coefficients ----

    def _adopt_reported_coefficients(self, reported: dict[str, Any]) -> None:
        version = reported.get("version")
        if isinstance(version, int) and not isinstance(version, bool):
            self._coeff_state["set_version"] = max(int(self._coeff_state.get("set_version", 0)), version)

    def _apply_coefficients(self, desired: Any) -> None:
        now_s = int(self._wall_clock())
        try:
            engine = self._control.coefficients()
            expected = {k: tuple(np.shape(v)) for k, v in engine.items()}
            arrays = coeffs.decode(desired, expected)
            self._control.load_coefficients(arrays)
        except ValueError as exc:
            reason = str(exc)[:200]
            name = reason.split(":", 1)[0] if reason.startswith("coefficients") else "coefficients"
            self.coefficients_rejection = Rejection(name, reason, now_s).document()
            self.stats.rejected += 1
            log.warning("desired coefficients rejected: %s", reason)
            self._clear_desired[COEFFICIENTS] = True
            return
        except Exception as exc:
            log.exception("loading desired coefficients failed")
            self.coefficients_rejection = Rejection(
                "coefficients", f"internal error: {type(exc).__name__}", now_s
            ).document()
            self._clear_desired[COEFFICIENTS] = True
            return
        assert isinstance(desired, dict)
        self.stats.coefficient_sets_loaded += 1
        self.coefficients_rejection = None
        self._coeff_state["installed_version"] = int(desired["version"])
        self._clear_desired[COEFFICIENTS] = True

    def _coefficients_state(self) -> dict[str, Any] | None:
        try:
            current = self._control.coefficients()
        except Exception:
            log.exception("ControlPort.coefficients failed")
            return None
        if not current:
            # No adaptive state yet (the engine is still identifying the secondary path): look again soon.
            if self._empty_retry is None:
                self._empty_retry = self._loop.call_later(COEFFICIENTS_EMPTY_RETRY_S, self._retry_empty)
            return None
        encoded = coeffs.encode(current, 0)
        clear = self._clear_desired[COEFFICIENTS]
        stale = self._nulls[COEFFICIENTS] - _OWN_COEFFICIENT_KEYS
        changed = encoded.checksum != self._coeff_state.get("last_checksum")
        if not (changed or clear or stale):
            return None  # unchanged since the last report
        set_version = int(self._coeff_state.get("set_version", 0))
        installed = self._coeff_state.pop("installed_version", None)
        if isinstance(installed, int):
            set_version = installed  # report a set pushed by the cloud under the cloud's version
        elif changed:
            set_version += 1
        encoded = replace(encoded, version=set_version)
        reported: dict[str, Any] = encoded.document() | {"s3_key": None}
        state: dict[str, Any] = {"reported": reported}
        if clear:
            state["desired"] = None
        if self._pointer_only or len(compact_json(state)) > COEFFICIENTS_INLINE_BYTES:
            self._keep_locally(encoded, current)
            reported = encoded.pointer(self.thing_name) | {"data": None}
            state["reported"] = reported
        reported["last_rejection"] = self.coefficients_rejection
        for key in stale:
            reported[key] = None
        check_state(state)
        self._coeff_state.update(set_version=set_version, last_checksum=encoded.checksum)
        self._save_state(COEFFICIENTS, self._coeff_state)
        return state

    def _retry_empty(self) -> None:
        self._empty_retry = None
        if self._transport.connected and self.synced[COEFFICIENTS]:
            self._request_update(COEFFICIENTS)

    def _keep_locally(self, encoded: coeffs.EncodedSet, current: dict[str, np.ndarray]) -> None:
        buf = io.BytesIO()
        arrays: dict[str, Any] = {k: np.asarray(v, dtype=np.float32) for k, v in current.items()}
        np.savez(buf, **arrays)
        name = encoded.pointer(self.thing_name)["s3_key"].rsplit("/", 1)[1]
        write_file_atomic(self._dir / "coefficients" / name, buf.getvalue(), mode=0o600)

    # ---- state files ----

    def _load_state(self, name: str) -> dict[str, Any]:
        try:
            data = json.loads((self._dir / f"{name}.json").read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _save_state(self, name: str, data: dict[str, Any]) -> None:
        try:
            write_file_atomic(self._dir / f"{name}.json", compact_json(jsonable(data)), mode=0o600)
        except OSError as exc:
            log.warning("could not save shadow state %s: %s", name, exc)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b
