"""One small publish/subscribe interface under the shadow client and the publisher.

A `Transport` connects on its own, reconnects with back-off, and reports everything (connection
changes, inbound messages, publish and subscribe completions) by posting to the `SyncLoop`, so the
MQTT library's threads never run agent code and never block. Publishes pass two token buckets
(messages per second, bytes per second) first: AWS IoT Core disconnects clients above 100 publishes/s
or 512 KB/s per connection. Subscriptions are remembered and made again on every connection, because
the agent connects with a clean session (see `awsiot_transport` for why).

Implementations: `awsiot_transport.AwsIotTransport` (awsiotsdk MQTT 5) and `paho_transport.PahoTransport`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from agent.sync.loop import SyncLoop, Timer
from agent.sync.ratelimit import TokenBucket

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PublishOutcome:
    """How a publish ended.

    acked: the broker answered (QoS 1 PUBACK, or a QoS 0 write). False means the connection went away
        or the ack timed out: the message may or may not have arrived and must be sent again.
    ok: the broker accepted it (PUBACK reason code < 0x80). acked and not ok: the broker refused it.
    """

    acked: bool
    ok: bool
    reason: str = ""


MessageHandler = Callable[[str, bytes], None]
PublishDone = Callable[[PublishOutcome], None]
SubscribeDone = Callable[[bool], None]
ConnectionHandler = Callable[[bool], None]

NOT_CONNECTED = PublishOutcome(acked=False, ok=False, reason="not connected")


@dataclass(frozen=True, slots=True)
class PublishLimits:
    """Client-side caps per connection (AWS IoT Core: 100 publishes/s, 512 KB/s)."""

    messages_per_s: float = 100.0
    bytes_per_s: float = 512 * 1024.0


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic filter matching with `+` and `#`; `$`-topics never match a leading wildcard."""
    f_parts, t_parts = topic_filter.split("/"), topic.split("/")
    if topic.startswith("$") and f_parts[0] in ("+", "#"):
        return False
    for i, f in enumerate(f_parts):
        if f == "#":
            return True
        if i >= len(t_parts) or (f != "+" and f != t_parts[i]):
            return False
    return len(f_parts) == len(t_parts)


@dataclass(slots=True)
class _Pending:
    topic: str
    payload: bytes
    qos: int
    done: PublishDone | None


class Transport(ABC):
    """Base of both transports. Public methods are called on the loop thread; none block on the network."""

    def __init__(self, loop: SyncLoop, limits: PublishLimits | None = None) -> None:
        self._loop = loop
        limits = limits or PublishLimits()
        self._msg_bucket = TokenBucket(limits.messages_per_s, max(1.0, limits.messages_per_s / 10))
        self._byte_bucket = TokenBucket(limits.bytes_per_s, limits.bytes_per_s / 4)
        self._pending: deque[_Pending] = deque()
        self._pump_timer: Timer | None = None
        self._connection_handlers: list[ConnectionHandler] = []
        self._subscriptions: dict[str, tuple[int, MessageHandler]] = {}
        self.connected = False

    # ---- public interface (loop thread) ----

    def on_connection_change(self, handler: ConnectionHandler) -> None:
        """`handler(True)` after each connection (subscriptions re-requested), `handler(False)` on loss."""
        self._connection_handlers.append(handler)

    @abstractmethod
    def connect(self) -> None:
        """Start connecting; keeps reconnecting with back-off until `disconnect`."""

    @abstractmethod
    def disconnect(self, timeout_s: float = 5.0) -> None:
        """Close the connection and stop reconnecting."""

    def publish(self, topic: str, payload: bytes, qos: int = 1, done: PublishDone | None = None) -> None:
        """Queue one message; `done(outcome)` runs on the loop thread once the broker answers or the
        connection drops. When not connected, `done` gets NOT_CONNECTED at once."""
        if qos not in (0, 1):
            raise ValueError(f"qos: {qos} is not allowed (allowed values: 0, 1)")
        if not self.connected:
            if done is not None:
                done(NOT_CONNECTED)
            return
        self._pending.append(_Pending(topic, payload, qos, done))
        self._pump()

    def subscribe(
        self, topic_filter: str, qos: int, handler: MessageHandler, done: SubscribeDone | None = None
    ) -> None:
        """Subscribe now if connected and again on every reconnect; `handler(topic, payload)` runs on the
        loop thread. `done(granted)` reports the broker's answer to the first request."""
        self._subscriptions[topic_filter] = (qos, handler)
        if self.connected:
            self._send_subscribe(topic_filter, qos, self._post_subscribe_done(topic_filter, done))

    @property
    def queued(self) -> int:
        """Publishes waiting for rate-limit tokens."""
        return len(self._pending)

    # ---- for subclasses: called from library threads ----

    def _lib_connected(self) -> None:
        self._loop.post(lambda: self._set_connected(True))

    def _lib_disconnected(self) -> None:
        self._loop.post(lambda: self._set_connected(False))

    def _lib_message(self, topic: str, payload: bytes) -> None:
        self._loop.post(lambda: self._dispatch(topic, payload))

    def _post_publish_done(self, done: PublishDone | None) -> Callable[[PublishOutcome], None]:
        """Wrap `done` so that calling it from a library thread runs it on the loop."""

        def posted(outcome: PublishOutcome) -> None:
            if done is not None:
                self._loop.post(lambda: done(outcome))

        return posted

    def _post_subscribe_done(self, topic_filter: str, done: SubscribeDone | None) -> SubscribeDone:
        def posted(granted: bool) -> None:
            if not granted:
                log.warning("subscription to %s refused by the broker", topic_filter)
            if done is not None:
                self._loop.post(lambda: done(granted))

        return posted

    # ---- for subclasses: implemented per library ----

    @abstractmethod
    def _send_publish(self, topic: str, payload: bytes, qos: int, done: PublishDone) -> None:
        """Hand one publish to the library; `done` may be called from any thread."""

    @abstractmethod
    def _send_subscribe(self, topic_filter: str, qos: int, done: SubscribeDone) -> None:
        """Hand one subscribe to the library; `done` may be called from any thread."""

    # ---- internals (loop thread) ----

    def _set_connected(self, up: bool) -> None:
        if up == self.connected:
            return
        self.connected = up
        if up:
            for topic_filter, (qos, _) in self._subscriptions.items():
                self._send_subscribe(topic_filter, qos, self._post_subscribe_done(topic_filter, None))
        else:
            self._fail_pending()
        for handler in list(self._connection_handlers):
            try:
                handler(up)
            except Exception:
                log.exception("connection handler failed")

    def _fail_pending(self) -> None:
        if self._pump_timer is not None:
            self._pump_timer.cancel()
            self._pump_timer = None
        pending, self._pending = self._pending, deque()
        for p in pending:
            if p.done is not None:
                p.done(NOT_CONNECTED)

    def _dispatch(self, topic: str, payload: bytes) -> None:
        for topic_filter, (_, handler) in list(self._subscriptions.items()):
            if topic_matches(topic_filter, topic):
                try:
                    handler(topic, payload)
                except Exception:
                    log.exception("handler for %s failed on %s", topic_filter, topic)

    def _pump(self) -> None:
        if self._pump_timer is not None:
            return  # a timer is already waiting for tokens
        self._drain()

    def _on_pump_timer(self) -> None:
        self._pump_timer = None
        self._drain()

    def _drain(self) -> None:
        while self._pending and self.connected:
            head = self._pending[0]
            wait_s = max(self._msg_bucket.delay_s(1.0), self._byte_bucket.delay_s(len(head.payload)))
            if wait_s > 0:
                self._pump_timer = self._loop.call_later(wait_s, self._on_pump_timer)
                return
            self._msg_bucket.try_take(1.0)
            self._byte_bucket.try_take(len(head.payload))
            self._pending.popleft()
            self._send_publish(head.topic, head.payload, head.qos, self._post_publish_done(head.done))
