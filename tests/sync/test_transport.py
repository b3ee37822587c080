"""Both transports, one suite: a real Mosquitto with mutual TLS and per-device ACLs."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator

import pytest

from agent.sync.awsiot_transport import AwsIotTransport
from agent.sync.config import parse_cloud_config
from agent.sync.loop import SyncLoop
from agent.sync.paho_transport import PahoTransport, tls_context
from agent.sync.transport import PublishLimits, PublishOutcome, Transport, topic_matches
from tests.support.broker import Broker
from tests.sync.sections import cloud_section
from tests.sync.waiting import Box, Inbox, wait_until

KINDS = {"paho": PahoTransport, "awsiot": AwsIotTransport}


class Devices:
    """Makes connected transports of one kind; disconnects them all at the end."""

    def __init__(self, kind: str, loop: SyncLoop, broker: Broker) -> None:
        self.kind, self.loop, self.broker = kind, loop, broker
        self.made: list[Transport] = []

    def connect(self, thing: str, limits: PublishLimits | None = None, **extra: object) -> Transport:
        config = parse_cloud_config(cloud_section(self.broker, thing, transport=self.kind, **extra), ".")
        transport = self.loop.call_sync(lambda: KINDS[self.kind](self.loop, config, limits))
        assert isinstance(transport, Transport)
        self.made.append(transport)
        self.loop.call_sync(transport.connect)
        assert wait_until(lambda: transport.connected), f"{thing} did not connect"
        return transport

    def subscribe(self, transport: Transport, topic_filter: str) -> tuple[Inbox, bool]:
        inbox, granted = Inbox(), Box()
        self.loop.post(lambda: transport.subscribe(topic_filter, 1, inbox, granted))
        return inbox, bool(granted.wait())

    def publish(self, transport: Transport, topic: str, payload: bytes, qos: int = 1) -> PublishOutcome:
        box = Box()
        self.loop.post(lambda: transport.publish(topic, payload, qos, box))
        outcome = box.wait()
        assert isinstance(outcome, PublishOutcome)
        return outcome

    def close(self) -> None:
        for t in self.made:
            self.loop.call_sync(lambda t=t: t.disconnect(2.0))


@pytest.fixture(params=sorted(KINDS))
def devices(request: pytest.FixtureRequest, loop: SyncLoop, broker: Broker) -> Iterator[Devices]:
    d = Devices(request.param, loop, broker)
    try:
        yield d
    finally:
        d.close()


def test_publish_reaches_a_subscriber_and_is_acknowledged(devices: Devices) -> None:
    dev = devices.connect("dev-a")
    inbox, granted = devices.subscribe(dev, "anc/dev-a/commands")
    assert granted
    outcome = devices.publish(dev, "anc/dev-a/commands", b'{"n": 1}')
    assert outcome.acked and outcome.ok
    assert inbox.get() == ("anc/dev-a/commands", b'{"n": 1}')


def test_messages_arrive_in_publish_order(devices: Devices) -> None:
    dev = devices.connect("dev-a")
    inbox, _ = devices.subscribe(dev, "anc/dev-a/#")
    outcomes: list[Box] = []
    for i in range(50):
        box = Box()
        outcomes.append(box)
        devices.loop.post(lambda i=i, box=box: dev.publish("anc/dev-a/telemetry", str(i).encode(), 1, box))
    assert all(b.wait().ok for b in outcomes)
    got = [int(inbox.get()[1]) for _ in range(50)]
    assert got == list(range(50))


def test_device_cannot_read_another_things_topics(devices: Devices) -> None:
    a = devices.connect("dev-a")
    b = devices.connect("dev-b")
    # Mosquitto 2.0 may grant the SUBACK and enforce read access at delivery; either way dev-a sees nothing.
    spy_commands, _ = devices.subscribe(a, "anc/dev-b/commands")
    spy_shadow, _ = devices.subscribe(a, "$aws/things/dev-b/shadow/name/config/update/delta")
    own, granted = devices.subscribe(b, "anc/dev-b/commands")
    assert granted
    assert devices.publish(b, "anc/dev-b/commands", b"secret").ok
    assert devices.publish(b, "$aws/things/dev-b/shadow/name/config/update/delta", b"{}").ok
    assert own.get() == ("anc/dev-b/commands", b"secret")
    assert spy_commands.empty_for(0.5)
    assert spy_shadow.empty_for(0.2)


def test_device_cannot_publish_to_another_things_topics(devices: Devices) -> None:
    a = devices.connect("dev-a")
    b = devices.connect("dev-b")
    inbox_b, granted = devices.subscribe(b, "anc/dev-b/#")
    assert granted
    outcome = devices.publish(a, "anc/dev-b/commands", b"hostile")
    # MQTT 5 brokers answer with "not authorized"; either way nothing may reach dev-b.
    assert outcome.acked
    assert inbox_b.empty_for(1.0)
    assert devices.publish(b, "anc/dev-b/commands", b"own").ok
    assert inbox_b.get() == ("anc/dev-b/commands", b"own")


def test_publish_while_disconnected_reports_not_acknowledged(devices: Devices) -> None:
    dev = devices.connect("dev-a")
    devices.broker.stop()
    assert wait_until(lambda: not dev.connected)
    outcome = devices.publish(dev, "anc/dev-a/telemetry", b"x")
    assert not outcome.acked


def test_reconnects_and_resubscribes_after_broker_restart(devices: Devices) -> None:
    dev = devices.connect("dev-a")
    changes: list[bool] = []
    devices.loop.call_sync(lambda: dev.on_connection_change(changes.append))
    inbox, granted = devices.subscribe(dev, "anc/dev-a/commands")
    assert granted
    devices.broker.stop()
    time.sleep(0.5)
    devices.broker.start()
    assert wait_until(lambda: changes[:2] == [False, True], timeout_s=20.0), changes
    # the subscription was made again on the new (clean) session
    assert wait_until(lambda: devices.publish(dev, "anc/dev-a/commands", b"after").ok, timeout_s=10.0)
    assert inbox.get() == ("anc/dev-a/commands", b"after")


def test_publish_rate_is_capped_by_the_token_bucket(devices: Devices) -> None:
    dev = devices.connect("dev-a", PublishLimits(messages_per_s=50.0, bytes_per_s=1e6))
    inbox, _ = devices.subscribe(dev, "anc/dev-a/#")
    boxes = [Box() for _ in range(60)]
    start_s = devices.loop.now_s()
    for i, box in enumerate(boxes):
        devices.loop.post(lambda i=i, box=box: dev.publish("anc/dev-a/telemetry", str(i).encode(), 1, box))
    assert all(b.wait().ok for b in boxes)
    elapsed_s = devices.loop.now_s() - start_s
    # burst of 5, then 50/s: 55 messages need at least 1.1 s; the bound is loose on purpose
    assert elapsed_s >= 0.9
    assert [int(inbox.get()[1]) for _ in range(60)] == list(range(60))


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("anc/+/telemetry", "anc/t1/telemetry", True),
        ("anc/#", "anc/t1/a/b", True),
        ("anc/t1/+", "anc/t1/a/b", False),
        ("#", "$aws/things/t1/shadow/get", False),
        (
            "$aws/things/t1/shadow/name/config/update/+",
            "$aws/things/t1/shadow/name/config/update/delta",
            True,
        ),
        ("anc/t1", "anc/t1/x", False),
    ],
)
def test_topic_filter_matching_follows_mqtt_rules(topic_filter: str, topic: str, expected: bool) -> None:
    assert topic_matches(topic_filter, topic) is expected


def test_paho_speaks_mqtt_3_1_1_when_configured(loop: SyncLoop, broker: Broker) -> None:
    devices = Devices("paho", loop, broker)
    try:
        dev = devices.connect("dev-311", mqtt_version="3.1.1")
        inbox, granted = devices.subscribe(dev, "anc/dev-311/commands")
        assert granted
        assert devices.publish(dev, "anc/dev-311/commands", b"v311").ok
        assert inbox.get() == ("anc/dev-311/commands", b"v311")
    finally:
        devices.close()


def test_paho_refuses_tls_older_than_1_2(broker: Broker) -> None:
    config = parse_cloud_config(cloud_section(broker, "dev-tls"), ".")
    ctx = tls_context(config)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
