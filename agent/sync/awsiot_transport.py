"""The awsiotsdk transport: an MQTT 5 client for AWS IoT Core over mutual TLS (port 8883).

Choices, with AWS IoT Core's defaults in mind:
- Keep-alive `keepalive_s` (IoT Core accepts 30-1200 s; 60 s finds a dead NAT mapping within ~90 s).
  The PINGRESP timeout is 10 s, so any keep-alive of 30 s or more passes the SDK's check.
- Reconnect: the CRT client reconnects on its own with exponential back-off and FULL jitter between
  `reconnect_min_s` and `reconnect_max_s`; the delay resets only after a connection has lasted
  `min_connected_s` (30 s), so a policy that accepts CONNECT but then drops the client cannot make the
  whole fleet hammer the endpoint.
- Clean start (ClientSessionBehaviorType.CLEAN), no session expiry: the disk spool, not the broker
  session, is what keeps outbound messages, and on every connection the shadow client gets both shadows
  again, so a persistent session would only add broker-side queueing (and cost) without losing less.
  A command published while the device was offline is therefore not delivered later; commands are
  advisory (the on-device safety detector never waits for the cloud).
- Offline queue: FAIL_ALL_ON_DISCONNECT. The SDK must not hold its own copy of unacknowledged publishes
  (the spool re-sends them after reconnect), or every message would be sent twice.
- TLS: the CRT's default policy (s2n on Linux) negotiates TLS 1.2 or 1.3 only.
- Rate: the base class caps this connection at 100 publishes/s and 512 KB/s (IoT Core's limits).
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import Any

from awscrt import mqtt5
from awsiot import mqtt5_client_builder

from agent.sync.config import CloudConfig
from agent.sync.loop import SyncLoop
from agent.sync.transport import (
    NOT_CONNECTED,
    PublishDone,
    PublishLimits,
    PublishOutcome,
    SubscribeDone,
    Transport,
)

log = logging.getLogger(__name__)

_QOS = {0: mqtt5.QoS.AT_MOST_ONCE, 1: mqtt5.QoS.AT_LEAST_ONCE}


class AwsIotTransport(Transport):
    def __init__(
        self,
        loop: SyncLoop,
        config: CloudConfig,
        limits: PublishLimits | None = None,
        min_connected_s: float = 30.0,
        ack_timeout_s: int = 30,
    ) -> None:
        super().__init__(loop, limits)
        self._config = config
        self._client = mqtt5_client_builder.mtls_from_path(
            endpoint=config.endpoint,
            port=config.port,
            cert_filepath=str(config.cert_file),
            pri_key_filepath=str(config.key_file),
            ca_filepath=str(config.ca_file),
            client_id=config.mqtt_client_id,
            keep_alive_interval_sec=config.keepalive_s,
            ping_timeout_ms=10_000,
            session_behavior=mqtt5.ClientSessionBehaviorType.CLEAN,
            offline_queue_behavior=mqtt5.ClientOperationQueueBehaviorType.FAIL_ALL_ON_DISCONNECT,
            retry_jitter_mode=mqtt5.ExponentialBackoffJitterMode.FULL,
            min_reconnect_delay_ms=int(config.reconnect_min_s * 1000),
            max_reconnect_delay_ms=int(config.reconnect_max_s * 1000),
            min_connected_time_to_reset_reconnect_delay_ms=int(min_connected_s * 1000),
            ack_timeout_sec=ack_timeout_s,
            on_publish_received=self._on_publish_received,
            on_lifecycle_connection_success=self._on_connection_success,
            on_lifecycle_connection_failure=self._on_connection_failure,
            on_lifecycle_disconnection=self._on_disconnection,
        )
        self._started = False

    # ---- public ----

    def connect(self) -> None:
        if not self._started:
            self._started = True
            self._client.start()

    def disconnect(self, timeout_s: float = 5.0) -> None:
        if not self._started:
            return
        self._started = False
        self._client.stop()
        self._set_connected(False)

    # ---- CRT callbacks (CRT event-loop thread: post, never block) ----

    def _on_connection_success(self, _data: mqtt5.LifecycleConnectSuccessData) -> None:
        self._lib_connected()

    def _on_connection_failure(self, data: mqtt5.LifecycleConnectFailureData) -> None:
        log.warning("connection to %s failed: %s", self._config.endpoint, data.exception)

    def _on_disconnection(self, data: mqtt5.LifecycleDisconnectData) -> None:
        log.info("disconnected from %s: %s", self._config.endpoint, data.exception)
        self._lib_disconnected()

    def _on_publish_received(self, data: mqtt5.PublishReceivedData) -> None:
        packet = data.publish_packet
        self._lib_message(packet.topic, bytes(packet.payload or b""))

    # ---- sending (loop thread) ----

    def _send_publish(self, topic: str, payload: bytes, qos: int, done: PublishDone) -> None:
        try:
            future = self._client.publish(mqtt5.PublishPacket(topic=topic, payload=payload, qos=_QOS[qos]))
        except Exception as exc:  # the CRT raises on invalid topics or a stopped client
            log.warning("publish to %s refused by the client: %s", topic, exc)
            done(PublishOutcome(acked=True, ok=False, reason=str(exc)))
            return
        future.add_done_callback(lambda f: done(_publish_outcome(f)))

    def _send_subscribe(self, topic_filter: str, qos: int, done: SubscribeDone) -> None:
        packet = mqtt5.SubscribePacket(subscriptions=[mqtt5.Subscription(topic_filter, _QOS[qos])])
        try:
            future = self._client.subscribe(packet)
        except Exception as exc:
            log.warning("subscribe to %s refused by the client: %s", topic_filter, exc)
            done(False)
            return
        future.add_done_callback(lambda f: done(_subscribe_granted(f)))


def _publish_outcome(future: Future[Any]) -> PublishOutcome:
    exc = future.exception()
    if exc is not None:
        return PublishOutcome(acked=False, ok=False, reason=str(exc)) if str(exc) else NOT_CONNECTED
    puback = getattr(future.result(), "puback", None)
    if puback is None:  # QoS 0: written to the socket
        return PublishOutcome(acked=True, ok=True)
    code = int(puback.reason_code)
    return PublishOutcome(acked=True, ok=code < 0x80, reason=getattr(puback.reason_code, "name", str(code)))


def _subscribe_granted(future: Future[Any]) -> bool:
    if future.exception() is not None:
        return False
    codes = getattr(future.result(), "reason_codes", None) or []
    return bool(codes) and all(int(c) < 0x80 for c in codes)
