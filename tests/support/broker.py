"""Test helpers around the local Mosquitto broker (`cloud.local.broker.Broker`: mutual TLS, per-thing
ACLs, free port; see its module docstring for what it enforces): the pytest fixtures and `MqttProbe`.

Usage: register the fixtures in your area's `tests/<area>/conftest.py`

    from tests.support.broker import broker, broker_session  # noqa: F401

then, in a test module:

    from tests.support.broker import Broker, MqttProbe

    def test_device_reaches_its_shadow(broker: Broker) -> None:
        cert, key = broker.issue_client("anc-sn-000123")       # CN = thing name = MQTT username
        with MqttProbe(broker, cert, key, client_id="anc-sn-000123") as probe:
            ...

Denied publishes are dropped silently and Mosquitto 2.0 grants every SUBSCRIBE: tests assert "never
arrives", not a SUBACK failure code. `broker` is a fresh broker per test; `broker_session` is shared by a
whole session (use unique thing names per test; do not stop it). The names the tests used to import from
here (Broker, SERVICE_USER, free_port, ...) are re-exported from `cloud.local.broker`.
"""

from __future__ import annotations

import contextlib
import os
import queue
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud.local.broker import (
    CLAIM_ACL_TOPICS,
    DEVICE_ACL_PATTERNS,
    MOSQUITTO,
    SERVICE_USER,
    Broker,
    free_port,
    mosquitto_password_hash,
)

__all__ = [
    "CLAIM_ACL_TOPICS",
    "DEVICE_ACL_PATTERNS",
    "MOSQUITTO",
    "SERVICE_USER",
    "Broker",
    "MqttProbe",
    "broker",
    "broker_session",
    "free_port",
    "mosquitto_password_hash",
]


class MqttProbe:
    """A small synchronous paho-mqtt (MQTT 5) client for assertions: connect over TLS with a client
    certificate (or to the plain listener with a password), subscribe and read back the reason codes,
    publish with QoS 1 and wait for the PUBACK, and wait for messages.

        with MqttProbe(broker, *broker.issue_client("anc-sn-1"), client_id="anc-sn-1") as probe:
            assert probe.subscribe("anc/anc-sn-1/commands") == [1]
            probe.publish("anc/anc-sn-1/telemetry", b"{}")
            topic, payload = probe.next_message(timeout_s=5)
    """

    def __init__(
        self,
        broker: Broker,
        cert_path: str | os.PathLike[str] | None = None,
        key_path: str | os.PathLike[str] | None = None,
        *,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        plain: bool = False,
    ) -> None:
        import paho.mqtt.client as paho

        self._paho = paho
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._acks: queue.Queue[tuple[str, object]] = queue.Queue()
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"probe-{secrets.token_hex(4)}",
            protocol=paho.MQTTv5,
            reconnect_on_failure=False,
        )
        if plain:
            self.client.username_pw_set(username or SERVICE_USER, password or broker.service_password)
            self._address = (broker.host, broker.plain_port or 0)
        else:
            self.client.tls_set(
                ca_certs=str(broker.ca_path),
                certfile=str(cert_path) if cert_path else None,
                keyfile=str(key_path) if key_path else None,
            )
            self._address = (broker.host, broker.port)
        self.client.on_connect = lambda _c, _u, _f, rc, _p: self._acks.put(("connect", rc))
        self.client.on_subscribe = lambda _c, _u, _m, rcs, _p: self._acks.put(("subscribe", rcs))
        self.client.on_publish = lambda _c, _u, mid, _rc, _p: self._acks.put(("publish", mid))
        self.client.on_message = lambda _c, _u, msg: self.messages.put((msg.topic, bytes(msg.payload)))

    def _ack(self, kind: str, timeout_s: float) -> object:
        kind_seen, value = self._acks.get(timeout=timeout_s)
        if kind_seen != kind:
            raise AssertionError(f"expected {kind} acknowledgement, got {kind_seen}: {value}")
        return value

    def connect(self, timeout_s: float = 5.0) -> MqttProbe:
        """Connect and wait for the CONNACK; raises ConnectionError when refused (TLS or broker)."""
        try:
            self.client.connect(*self._address, keepalive=30)
        except (OSError, self._paho.WebsocketConnectionError) as exc:
            raise ConnectionError(f"connect to {self._address}: {exc}") from exc
        self.client.loop_start()
        try:
            rc = self._ack("connect", timeout_s)
        except queue.Empty as exc:
            self.close()
            raise ConnectionError(f"connect to {self._address}: no CONNACK (refused at TLS?)") from exc
        if getattr(rc, "is_failure", False):
            self.close()
            raise ConnectionError(f"connect to {self._address}: refused: {rc}")
        return self

    def subscribe(self, topic: str, qos: int = 1, timeout_s: float = 5.0) -> list[int]:
        """Subscribe; returns the SUBACK reason codes as ints (granted QoS, or >= 0x80 when denied)."""
        self.client.subscribe(topic, qos)
        codes = self._ack("subscribe", timeout_s)
        return [int(getattr(c, "value", c)) for c in codes]  # type: ignore[attr-defined]

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, timeout_s: float = 5.0) -> None:
        """Publish and wait until the broker acknowledged it (PUBACK for QoS 1)."""
        info = self.client.publish(topic, payload, qos)
        info.wait_for_publish(timeout_s)
        with contextlib.suppress(queue.Empty):
            self._ack("publish", timeout_s)

    def next_message(self, timeout_s: float = 5.0) -> tuple[str, bytes]:
        """The next (topic, payload) received; queue.Empty after `timeout_s`."""
        return self.messages.get(timeout=timeout_s)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        with contextlib.suppress(Exception):
            self.client.loop_stop()

    def __enter__(self) -> MqttProbe:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A fresh broker per test (its files under the test's tmp_path)."""
    b = Broker(tmp_path / "broker")
    try:
        yield b.start()
    finally:
        b.stop()


@pytest.fixture(scope="session")
def broker_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One broker shared by a whole test session: use unique thing names per test; do not stop it."""
    b = Broker(tmp_path_factory.mktemp("broker-session"))
    try:
        yield b.start()
    finally:
        with contextlib.suppress(Exception):
            b.stop()
