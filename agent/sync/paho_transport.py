"""The paho-mqtt 2.x transport: any MQTT broker, MQTT 5 (or 3.1.1 by config), mutual TLS >= 1.2.

Each connection attempt uses a fresh paho client with paho's own reconnect switched off; reconnects are
scheduled on the sync loop with full-jitter back-off, and the back-off resets only after a connection
has lasted `min_connected_s`. A fresh client per connection matters: paho re-sends its in-memory
in-flight messages after a reconnect, while the agent's source of truth is the disk spool, which
re-sends everything unacknowledged itself; two re-senders would duplicate every message.
"""

from __future__ import annotations

import logging
import ssl
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from agent.sync.config import CloudConfig
from agent.sync.loop import SyncLoop, Timer
from agent.sync.ratelimit import Backoff
from agent.sync.transport import (
    NOT_CONNECTED,
    PublishDone,
    PublishLimits,
    PublishOutcome,
    SubscribeDone,
    Transport,
)

log = logging.getLogger(__name__)


def tls_context(config: CloudConfig) -> ssl.SSLContext:
    """A client context that verifies the broker against `ca_file`, presents the device certificate,
    and refuses anything older than TLS 1.2."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cafile=str(config.ca_file))
    ctx.load_cert_chain(certfile=str(config.cert_file), keyfile=str(config.key_file))
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _failed(code: Any) -> bool:
    return bool(getattr(code, "is_failure", False)) if isinstance(code, ReasonCode) else code not in (0, None)


class PahoTransport(Transport):
    def __init__(
        self,
        loop: SyncLoop,
        config: CloudConfig,
        limits: PublishLimits | None = None,
        min_connected_s: float = 30.0,
        connect_timeout_s: float = 30.0,
    ) -> None:
        super().__init__(loop, limits)
        self._connect_timeout_s = connect_timeout_s
        self._attempt_timer: Timer | None = None
        self._config = config
        self._protocol = mqtt.MQTTv5 if config.mqtt_version == "5" else mqtt.MQTTv311
        self._ssl = tls_context(config)
        self._backoff = Backoff(config.reconnect_min_s, config.reconnect_max_s)
        self._min_connected_s = min_connected_s
        self._client: mqtt.Client | None = None
        self._wanted = False
        self._retry_timer: Timer | None = None
        self._connected_at_s: float | None = None
        # mid -> completion; touched by paho's thread (acks) and the loop (sends): hence the lock.
        self._lock = threading.RLock()
        self._publishes: dict[int, PublishDone] = {}
        self._subscribes: dict[int, SubscribeDone] = {}
        self._early_acks: dict[int, PublishOutcome] = {}
        self._early_subacks: dict[int, bool] = {}
        self.on_connection_change(self._track_uptime)

    # ---- public ----

    def connect(self) -> None:
        self._wanted = True
        if self._client is None and self._retry_timer is None:
            self._attempt()

    def disconnect(self, timeout_s: float = 5.0) -> None:
        self._wanted = False
        if self._retry_timer is not None:
            self._retry_timer.cancel()
            self._retry_timer = None
        client, self._client = self._client, None
        if client is None:
            return
        client.disconnect()
        stopper = threading.Thread(target=client.loop_stop, name="paho-stop", daemon=True)
        stopper.start()
        stopper.join(timeout_s)
        self._fail_in_flight()
        self._set_connected(False)

    # ---- connection management (loop thread) ----

    def _attempt(self) -> None:
        self._retry_timer = None
        if not self._wanted:
            return
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self._config.mqtt_client_id,
            clean_session=None if self._protocol == mqtt.MQTTv5 else True,  # MQTT 5: clean_start below
            protocol=self._protocol,
            reconnect_on_failure=False,
        )
        client.tls_set_context(self._ssl)
        client.max_inflight_messages_set(20)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        self._client = client
        self._attempt_timer = self._loop.call_later(
            self._connect_timeout_s, lambda: self._attempt_expired(client)
        )
        kwargs: dict[str, Any] = {"clean_start": True} if self._protocol == mqtt.MQTTv5 else {}
        try:
            client.connect_async(self._config.endpoint, self._config.port, self._config.keepalive_s, **kwargs)
            client.loop_start()
        except (OSError, ValueError) as exc:
            log.warning("connect to %s:%s failed: %s", self._config.endpoint, self._config.port, exc)
            self._client = None
            self._schedule_retry()

    def _attempt_expired(self, client: mqtt.Client) -> None:
        """No CONNACK in time, and paho said nothing (its thread may have died, e.g. select() refusing a
        file descriptor above 1023): give this client up and try again."""
        if client is self._client and not self.connected:
            log.warning(
                "no connection to %s:%s within %.0f s",
                self._config.endpoint,
                self._config.port,
                self._connect_timeout_s,
            )
            threading.Thread(target=client.loop_stop, name="paho-stop", daemon=True).start()
            self._lost(client)

    def _schedule_retry(self) -> None:
        if not self._wanted or self._retry_timer is not None:
            return
        delay_s = self._backoff.next_delay_s()
        log.info("reconnecting in %.2f s", delay_s)
        self._retry_timer = self._loop.call_later(delay_s, self._attempt)

    def _lost(self, client: mqtt.Client) -> None:
        """Loop thread: `client` is gone (failed to connect, or disconnected)."""
        if client is not self._client:
            return
        self._client = None
        self._fail_in_flight()
        self._set_connected(False)
        self._schedule_retry()

    def _track_uptime(self, up: bool) -> None:
        now = self._loop.now_s()
        if up:
            self._connected_at_s = now
        else:
            if self._connected_at_s is not None and now - self._connected_at_s >= self._min_connected_s:
                self._backoff.reset()
            self._connected_at_s = None

    def _fail_in_flight(self) -> None:
        with self._lock:
            publishes, self._publishes = self._publishes, {}
            subscribes, self._subscribes = self._subscribes, {}
            self._early_acks.clear()
            self._early_subacks.clear()
        for done in publishes.values():
            done(NOT_CONNECTED)
        for sub_done in subscribes.values():
            sub_done(False)

    # ---- paho callbacks (paho's thread: post, never block) ----

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any = None) -> None:
        if _failed(reason):
            log.warning("broker refused the connection: %s", reason)
            return  # the broker closes the socket; _on_disconnect follows
        self._loop.post(lambda: self._connected(client))

    def _connected(self, client: mqtt.Client) -> None:
        if client is self._client:
            if self._attempt_timer is not None:
                self._attempt_timer.cancel()
                self._attempt_timer = None
            self._set_connected(True)

    def _on_connect_fail(self, client: mqtt.Client, _u: Any) -> None:
        client.loop_stop()  # from paho's own thread: only flags it to end, does not join
        self._loop.post(lambda: self._lost(client))

    def _on_disconnect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any = None) -> None:
        client.loop_stop()
        self._loop.post(lambda: self._lost(client))

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        self._lib_message(message.topic, bytes(message.payload))

    def _on_publish(self, client: mqtt.Client, _u: Any, mid: int, reason: Any, _p: Any = None) -> None:
        if client is not self._client:
            return  # an ack from a connection already given up: its messages were failed and re-spooled
        outcome = PublishOutcome(acked=True, ok=not _failed(reason), reason=str(reason))
        with self._lock:
            done = self._publishes.pop(mid, None)
            if done is None:
                self._early_acks[mid] = outcome  # acked before _send_publish stored the mid
        if done is not None:
            done(outcome)

    def _on_subscribe(self, client: mqtt.Client, _u: Any, mid: int, reasons: Any, _p: Any = None) -> None:
        if client is not self._client:
            return
        granted = not any(_failed(r) for r in reasons)
        with self._lock:
            done = self._subscribes.pop(mid, None)
            if done is None:
                self._early_subacks[mid] = granted
        if done is not None:
            done(granted)

    # ---- sending (loop thread) ----

    def _send_publish(self, topic: str, payload: bytes, qos: int, done: PublishDone) -> None:
        client = self._client
        if client is None:
            done(NOT_CONNECTED)
            return
        # Never hold self._lock while calling paho: paho runs on_publish under its own mutex.
        info = client.publish(topic, payload, qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            done(NOT_CONNECTED)
            return
        with self._lock:
            early = self._early_acks.pop(info.mid, None)
            if qos == 1 and early is None:
                self._publishes[info.mid] = done
                return
        done(early if early is not None else PublishOutcome(acked=True, ok=True))

    def _send_subscribe(self, topic_filter: str, qos: int, done: SubscribeDone) -> None:
        client = self._client
        if client is None:
            done(False)
            return
        rc, mid = client.subscribe(topic_filter, qos)
        if rc != mqtt.MQTT_ERR_SUCCESS or mid is None:
            done(False)
            return
        with self._lock:
            early = self._early_subacks.pop(mid, None)
            if early is None:
                self._subscribes[mid] = done
                return
        done(early)
