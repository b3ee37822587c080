"""The cloud side's view of one device on the local broker: what it publishes, and its `config` shadow.

    observer = DeviceObserver(endpoint, "anc-demo-0001").start()
    observer.latest_telemetry()                  # the newest 1 Hz record (a dict), or None
    outcome = observer.update_config_desired({"mu": 0.02}, lambda reported: reported.get("mu") == 0.02)
    outcome.round_trip_ms                        # desired published -> the device's report seen
    observer.stop()

It connects as the broker's privileged service user (MQTT 3.1.1, TLS client certificate or a password on
the plain listener, as `BrokerEndpoint` says) and subscribes to `anc/<thing>/telemetry`,
`anc/<thing>/events` and the `config` shadow's `/update/documents` and `/update/rejected` topics.
Telemetry is kept by `seq` (the publisher is at-least-once: duplicates are counted, not kept), so
`seq_gaps()` tells whether any record went missing. Every parse happens here, at the edge: a payload
that is not a JSON object is counted in `malformed` and dropped.

Runs on paho-mqtt's network thread; the public methods may be called from any thread.
"""

from __future__ import annotations

import itertools
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from cloud.local.shadow_service import BrokerEndpoint

CONFIG_SHADOW = "config"
_RETRY_429_S = 0.25


class ObserverError(RuntimeError):
    """The observer could not connect, subscribe or get an update through; the message says which."""


@dataclass(frozen=True, slots=True)
class ShadowRoundTrip:
    """One desired change seen through to the device's report.

    `round_trip_ms`: from publishing the desired update to receiving the `/update/documents` message
    whose reported section met the condition (the device applied or refused it and reported back).
    """

    desired: dict[str, Any]
    reported: dict[str, Any]
    round_trip_ms: float


def _json_object(payload: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


class DeviceObserver:
    """Subscribes to one thing's telemetry, events and config shadow (see the module docstring)."""

    def __init__(self, endpoint: BrokerEndpoint, thing_name: str, *, client_id: str | None = None) -> None:
        self.thing_name = thing_name
        self._endpoint = endpoint
        self._shadow_prefix = f"$aws/things/{thing_name}/shadow/name/{CONFIG_SHADOW}"
        self._topics = {
            f"anc/{thing_name}/telemetry": self._on_telemetry,
            f"anc/{thing_name}/events": self._on_event,
            f"{self._shadow_prefix}/update/documents": self._on_documents,
            f"{self._shadow_prefix}/update/rejected": self._on_rejected,
        }
        self._cond = threading.Condition()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._connect_error: str | None = None
        self._subscribe_mid: int | None = None
        self.telemetry: dict[int, dict[str, Any]] = {}
        self.duplicates = 0
        self.malformed = 0
        self.events: list[dict[str, Any]] = []
        self._reported: dict[str, Any] = {}
        self._reported_count = 0
        self._reported_at = 0.0
        self._rejections: dict[str, dict[str, Any]] = {}  # clientToken -> error document
        self._client = endpoint.paho_client(
            client_id or f"anc-observer-{secrets.token_hex(4)}", clean_session=True
        )
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    # ------------------------------------------------------------------------------------ lifecycle

    def start(self, timeout_s: float = 10.0) -> DeviceObserver:
        """Connect and subscribe; ObserverError when that does not happen within `timeout_s`."""
        try:
            self._client.connect(self._endpoint.host, self._endpoint.port, keepalive=30)
        except OSError as exc:
            where = f"{self._endpoint.host}:{self._endpoint.port}"
            raise ObserverError(f"observer: cannot reach {where}: {exc}") from exc
        self._client.loop_start()
        if not self._subscribed.wait(timeout_s):
            self.stop()
            why = self._connect_error or "no CONNACK/SUBACK (refused at TLS or by the ACL?)"
            raise ObserverError(f"observer: not subscribed within {timeout_s:g} s: {why}")
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    # -------------------------------------------------------------------------------------- queries

    def latest_telemetry(self) -> dict[str, Any] | None:
        """The telemetry record with the highest `seq` received so far, or None."""
        with self._cond:
            return self.telemetry[max(self.telemetry)] if self.telemetry else None

    def telemetry_records(self) -> list[dict[str, Any]]:
        """Every distinct record received, in `seq` order."""
        with self._cond:
            return [self.telemetry[s] for s in sorted(self.telemetry)]

    def seq_gaps(self) -> list[tuple[int, int]]:
        """Missing `seq` ranges (first, last inclusive) between the lowest and highest seq received."""
        with self._cond:
            seqs = sorted(self.telemetry)
        return [(a + 1, b - 1) for a, b in itertools.pairwise(seqs) if b - a > 1]

    def wait_telemetry(self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float) -> bool:
        """True once a received telemetry record satisfies `predicate` (already received ones count)."""
        with self._cond:
            return self._cond.wait_for(lambda: any(predicate(r) for r in self.telemetry.values()), timeout_s)

    def send_command(self, command: dict[str, Any]) -> None:
        """Publish `command` (QoS 1) on `anc/<thing>/commands`, as the cloud's emergency Lambda does."""
        info = self._client.publish(f"anc/{self.thing_name}/commands", json.dumps(command), qos=1)
        info.wait_for_publish(5.0)

    def update_config_desired(
        self,
        desired: dict[str, Any],
        until: Callable[[dict[str, Any]], bool],
        timeout_s: float = 10.0,
    ) -> ShadowRoundTrip:
        """Publish `desired` to the `config` shadow and wait until a reported section satisfying `until`
        arrives after it. ObserverError when the shadow service rejects the update or the device does not
        report in time. A 429 (the per-thing rate, shared with the device) is retried."""
        deadline = time.monotonic() + timeout_s
        while True:
            rejection, reported, round_trip_ms = self._publish_desired(desired, until, deadline)
            if rejection is None:
                break
            if rejection.get("code") == 429 and time.monotonic() + _RETRY_429_S < deadline:
                time.sleep(_RETRY_429_S)
                continue
            raise ObserverError(
                f"shadow update {desired} rejected by the shadow service: "
                f"{rejection.get('code')} {rejection.get('message')}"
            )
        if round_trip_ms is None:
            raise ObserverError(
                f"shadow update {desired}: the device's report did not show it within {timeout_s:g} s "
                f"(reported: {reported})"
            )
        return ShadowRoundTrip(desired, reported, round_trip_ms)

    def _publish_desired(
        self, desired: dict[str, Any], until: Callable[[dict[str, Any]], bool], deadline: float
    ) -> tuple[dict[str, Any] | None, dict[str, Any], float | None]:
        """One update attempt: (the service's rejection or None, the reported section last seen, the
        round trip in ms or None when `until` was not met by `deadline`)."""
        token = f"cloud-{secrets.token_hex(6)}"
        payload = json.dumps({"state": {"desired": desired}, "clientToken": token})
        with self._cond:
            seen_before = self._reported_count
        t0 = time.monotonic()
        self._client.publish(f"{self._shadow_prefix}/update", payload, qos=1)
        with self._cond:
            met = self._cond.wait_for(
                lambda: (
                    token in self._rejections
                    or (self._reported_count > seen_before and until(self._reported))
                ),
                max(0.0, deadline - time.monotonic()),
            )
            rejection = self._rejections.pop(token, None)
            reported = dict(self._reported)
            round_trip_ms = round((self._reported_at - t0) * 1e3, 1) if met and rejection is None else None
        return rejection, reported, round_trip_ms

    # ------------------------------------------------------------------------------- paho callbacks

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self._connect_error = f"broker refused the connection: {reason}"
            return
        self._connected.set()
        sock = client.socket()
        if isinstance(sock, socket.socket):  # small messages: send each at once, no Nagle wait (TLS too)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _result, self._subscribe_mid = client.subscribe([(topic, 1) for topic in self._topics])

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, mid: int, reasons: Any, _p: Any) -> None:
        if mid != self._subscribe_mid:
            return
        failed = [r for r in reasons if r.is_failure]
        if failed:
            self._connect_error = f"subscription refused: {failed}"
            return
        self._subscribed.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        handler = self._topics.get(message.topic)
        if handler is None:
            return
        doc = _json_object(bytes(message.payload))
        with self._cond:
            if doc is None:
                self.malformed += 1
                return
            handler(doc)
            self._cond.notify_all()

    def _on_telemetry(self, doc: dict[str, Any]) -> None:
        seq = doc.get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int):
            self.malformed += 1
        elif seq in self.telemetry:
            self.duplicates += 1
        else:
            self.telemetry[seq] = doc

    def _on_event(self, doc: dict[str, Any]) -> None:
        self.events.append(doc)

    def _on_documents(self, doc: dict[str, Any]) -> None:
        current = doc.get("current")
        state = current.get("state") if isinstance(current, dict) else None
        reported = state.get("reported") if isinstance(state, dict) else None
        if isinstance(reported, dict):
            self._reported = reported
            self._reported_count += 1
            self._reported_at = time.monotonic()

    def _on_rejected(self, doc: dict[str, Any]) -> None:
        token = doc.get("clientToken")
        if isinstance(token, str) and token.startswith("cloud-"):
            self._rejections[token] = doc
