"""The agent's `Uplink`: telemetry, events and features out to the cloud, through the disk spool.

- Telemetry (`anc/<thing>/telemetry`, or Basic Ingest `$aws/rules/<rule>/anc/<thing>/telemetry`) and
  events (`anc/<thing>/events`) are QoS 1 and go through the spool: appended first, sent in spool order,
  deleted only when the broker's PUBACK arrives, sent again from the oldest unacknowledged message after
  every reconnect (at-least-once: consumers drop duplicates by `seq`). Every telemetry record carries a
  persisted sequence number `seq` and the spool's `spool_dropped` count.
- Features (`anc/<thing>/features`) are QoS 0 and only sent while connected: log-mel frames are for
  classification now; an hour-old frame is worth nothing, and keeping them would push telemetry out of
  the bounded spool.
- Raw audio never leaves the device: records carrying audio-like keys or long sample arrays are refused.

The `telemetry`, `event` and `features` calls may come from any thread and only post to the sync loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.sync.config import CloudConfig
from agent.sync.loop import SyncLoop
from agent.sync.shadow_limits import compact_json
from agent.sync.shadow_rules import jsonable
from agent.sync.spool import Spool
from agent.sync.transport import PublishOutcome, Transport

log = logging.getLogger(__name__)

SEQUENCE_COUNTER = "seq:telemetry"
AUDIO_KEYS = frozenset({"audio", "pcm", "samples", "raw_audio", "waveform", "wav"})
MAX_ARRAY_VALUES = 4096  # a log-mel block is ~64 bands x 10 frames; a second of audio is 16000+ values
MAX_RECORD_BYTES = 64 * 1024
RESEND_DELAY_S = 1.0


@dataclass
class PublisherStats:
    acked: int = 0
    refused: int = 0
    resends: int = 0
    records_refused: int = 0
    features_sent: int = 0
    features_dropped: int = 0


def audio_free(record: Any, depth: int = 0) -> str | None:
    """Why `record` might carry raw audio (a reason), or None when it does not."""
    if depth > 8:
        return "nests too deep"
    if isinstance(record, dict):
        for key, value in record.items():
            if str(key).lower() in AUDIO_KEYS:
                return f"key {key!r} looks like raw audio"
            why = audio_free(value, depth + 1)
            if why:
                return why
    elif isinstance(record, list | tuple):
        if len(record) > MAX_ARRAY_VALUES:
            return f"an array of {len(record)} values is longer than {MAX_ARRAY_VALUES}"
        for value in record:
            why = audio_free(value, depth + 1)
            if why:
                return why
    elif hasattr(record, "size") and getattr(record, "size", 0) > MAX_ARRAY_VALUES:
        return f"an array of {record.size} values is longer than {MAX_ARRAY_VALUES}"
    return None


class Publisher:
    """Implements `agent.ports.Uplink` over a transport and a spool; see the module docstring."""

    def __init__(
        self, loop: SyncLoop, transport: Transport, spool: Spool, config: CloudConfig, window: int = 10
    ) -> None:
        self._loop = loop
        self._transport = transport
        self._spool = spool
        self._window = window
        self._telemetry_topic = config.telemetry_topic()
        self._events_topic = f"anc/{config.thing_name}/events"
        self._features_topic = f"anc/{config.thing_name}/features"
        self._thing = config.thing_name
        self._seq = spool.counter(SEQUENCE_COUNTER)
        self._generation = 0
        self._cursor = 0  # highest spool id handed to the transport in this generation
        self._in_flight: set[int] = set()
        self._resend_pending = False
        self.stats = PublisherStats()
        transport.on_connection_change(self._on_connection)

    # ---- Uplink (any thread) ----

    def telemetry(self, record: dict[str, Any]) -> None:
        self._loop.post(lambda: self._enqueue_telemetry(record))

    def event(self, record: dict[str, Any]) -> None:
        self._loop.post(lambda: self._enqueue_event(record))

    def features(self, record: dict[str, Any]) -> None:
        self._loop.post(lambda: self._send_features(record))

    # ---- loop thread ----

    @property
    def pending(self) -> int:
        return self._spool.pending

    def _encode(self, record: Any) -> bytes | None:
        if not isinstance(record, dict):
            reason = f"expected a dict, got {type(record).__name__}"
        else:
            reason = audio_free(record) or ""
        payload = b""
        if not reason:
            try:
                payload = compact_json(jsonable(record))
            except (TypeError, ValueError) as exc:
                reason = f"not JSON serialisable ({exc})"
        if not reason and len(payload) > MAX_RECORD_BYTES:
            reason = f"{len(payload)} bytes is over {MAX_RECORD_BYTES}"
        if reason:
            self.stats.records_refused += 1
            log.warning("record not sent: %s", reason)
            return None
        return payload

    def _enqueue_telemetry(self, record: dict[str, Any]) -> None:
        if not isinstance(record, dict):
            self._encode(record)  # counts and logs the refusal
            return
        seq = self._seq + 1
        full = {
            **record,
            "thing": self._thing,
            "seq": seq,
            "ts": record.get("ts", round(time.time(), 3)),
            "spool_dropped": self._spool.dropped_total,
        }
        if self._enqueue(self._telemetry_topic, full, (SEQUENCE_COUNTER, seq)):
            self._seq = seq

    def _enqueue_event(self, record: dict[str, Any]) -> None:
        self._enqueue(self._events_topic, record)

    def _enqueue(self, topic: str, record: dict[str, Any], counter: tuple[str, int] | None = None) -> bool:
        payload = self._encode(record)
        if payload is None:
            return False
        try:
            self._spool.append(topic, payload, 1, counter)
        except (ValueError, OSError) as exc:
            log.error("could not spool a record for %s: %s", topic, exc)
            return False
        self._pump()
        return True

    def _send_features(self, record: dict[str, Any]) -> None:
        if not self._transport.connected:
            self.stats.features_dropped += 1
            return
        payload = self._encode(record)
        if payload is not None:
            self._transport.publish(self._features_topic, payload, 0)
            self.stats.features_sent += 1

    def _on_connection(self, up: bool) -> None:
        self._generation += 1
        self._in_flight.clear()
        self._cursor = 0  # everything unacknowledged goes again, oldest first
        if up:
            self._pump()

    def _pump(self) -> None:
        while self._transport.connected and len(self._in_flight) < self._window:
            batch = self._spool.batch(self._cursor, self._window - len(self._in_flight))
            if not batch:
                return
            generation = self._generation
            for msg in batch:
                self._cursor = msg.id
                self._in_flight.add(msg.id)
                self._transport.publish(msg.topic, msg.payload, msg.qos, self._completion(msg.id, generation))
                if generation != self._generation:
                    return  # the connection dropped while sending

    def _completion(self, message_id: int, generation: int) -> Callable[[PublishOutcome], None]:
        return lambda outcome: self._on_done(message_id, generation, outcome)

    def _on_done(self, message_id: int, generation: int, outcome: PublishOutcome) -> None:
        if generation != self._generation:
            return  # from a connection already given up; its messages are being sent again
        self._in_flight.discard(message_id)
        if outcome.acked:
            self._spool.ack(message_id)
            if outcome.ok:
                self.stats.acked += 1
            else:
                self.stats.refused += 1  # the broker answered no (e.g. not authorised): retrying cannot help
                log.warning("broker refused spooled message %d: %s", message_id, outcome.reason)
            self._pump()
        elif self._transport.connected and not self._resend_pending:
            # No PUBACK although still connected (ack timeout): start over from the oldest, shortly.
            self.stats.resends += 1
            self._resend_pending = True
            self._loop.call_later(RESEND_DELAY_S, self._resend)

    def _resend(self) -> None:
        self._resend_pending = False
        self._on_connection(self._transport.connected)
