"""The whole sync layer (`start_sync`) against the real TLS broker and the local shadow service, for both
transports: shadow round trip, telemetry through a network outage and an agent restart, commands."""

from __future__ import annotations

import json
import queue
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.sync.client import CloudSync, start_sync
from tests.support.broker import Broker, MqttProbe
from tests.support.shadow_service import RunningShadowService
from tests.sync.fake_control import FakeControl
from tests.sync.sections import cloud_section
from tests.sync.tcp_proxy import TcpProxy
from tests.sync.waiting import get_shadow, wait_until


@dataclass
class Cloud:
    """The cloud side of a test: the service user's probe on `anc/<thing>/#` and the shadow store."""

    service: RunningShadowService
    probe: MqttProbe
    thing: str
    seen: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def drain(self) -> list[tuple[str, dict[str, Any]]]:
        while True:
            try:
                topic, payload = self.probe.messages.get_nowait()
            except queue.Empty:
                return self.seen
            if not topic.endswith("/commands"):  # the probe hears its own (sometimes malformed) commands
                self.seen.append((topic, json.loads(payload)))

    def telemetry_seqs(self) -> list[int]:
        return [doc["seq"] for topic, doc in self.drain() if topic.endswith("/telemetry")]

    def shadow(self, name: str) -> dict[str, Any]:
        return get_shadow(self.service.store, self.thing, name)

    def reported(self, name: str) -> dict[str, Any]:
        doc = self.shadow(name)
        return doc.get("state", {}).get("reported", {}) if "state" in doc else {}

    def set_desired(self, name: str, desired: dict[str, Any]) -> None:
        body = json.dumps({"state": {"desired": desired}})
        self.probe.publish(f"$aws/things/{self.thing}/shadow/name/{name}/update", body)


@dataclass
class Device:
    broker: Broker
    proxy: TcpProxy
    section: dict[str, Any]
    state_dir: Path
    control: FakeControl = field(default_factory=FakeControl)
    sync: CloudSync | None = None

    def start(self) -> CloudSync:
        self.sync = start_sync(self.section, self.control, self.state_dir, self.control.profile)
        return self.sync

    def stop(self) -> None:
        if self.sync is not None:
            self.sync.stop(5.0)
            self.sync = None

    def pending(self) -> int:
        assert self.sync is not None
        return int(self.sync.loop.call_sync(lambda: self.sync.spool.pending))  # type: ignore[union-attr]


@pytest.fixture(params=["paho", "awsiot"])
def rig(
    request: pytest.FixtureRequest, shadow_service: RunningShadowService, tmp_path: Path
) -> Iterator[tuple[Device, Cloud]]:
    broker = shadow_service.broker
    thing = f"anc-test-{secrets.token_hex(4)}"
    proxy = TcpProxy(broker.host, broker.port)
    section = cloud_section(broker, thing, port=proxy.port, transport=request.param)
    section["endpoint"] = proxy.host
    device = Device(broker, proxy, section, tmp_path / "state")
    probe = MqttProbe(broker, *broker.service_cert(), client_id=f"cloud-{thing}").connect()
    probe.subscribe(f"anc/{thing}/#")
    try:
        yield device, Cloud(shadow_service, probe, thing)
    finally:
        device.stop()
        probe.close()
        proxy.close()


def test_cloud_desired_change_round_trips_through_the_shadow_service(rig: tuple[Device, Cloud]) -> None:
    device, cloud = rig
    sync = device.start()
    assert wait_until(lambda: sync.connected)
    assert wait_until(lambda: cloud.reported("config").get("agent_version") == "0.1.0")
    assert wait_until(lambda: cloud.reported("coefficients").get("encoding") == "f16-zlib-b64")
    cloud.set_desired("config", {"mu": 0.02, "mode": "passthrough"})
    assert wait_until(lambda: device.control.settings["mu"] == 0.02)
    assert device.control.settings["mode"] == "passthrough"
    assert wait_until(lambda: cloud.reported("config").get("mu") == 0.02)
    device.control.settings["mode"] = "off"  # a local change, e.g. from the safety monitor
    sync.report_state()
    assert wait_until(lambda: cloud.reported("config").get("mode") == "off")
    cloud.set_desired("config", {"taps": 100000})
    assert wait_until(lambda: (cloud.reported("config").get("last_rejection") or {}).get("field") == "taps")
    assert device.control.settings["taps"] == 256


def test_telemetry_through_a_network_outage_loses_nothing(rig: tuple[Device, Cloud]) -> None:
    device, cloud = rig
    sync = device.start()
    assert wait_until(lambda: sync.connected)
    for i in range(40):
        if i == 10:
            device.proxy.cut()
            assert wait_until(lambda: not sync.connected)
        if i == 30:
            device.proxy.restore()
        sync.uplink.telemetry({"attenuation_db": float(i)})
        time.sleep(0.02)
    assert wait_until(lambda: set(cloud.telemetry_seqs()) >= set(range(1, 41)), timeout_s=20.0)
    assert wait_until(lambda: device.pending() == 0)
    seqs = cloud.telemetry_seqs()
    first_seen = list(dict.fromkeys(seqs))
    assert first_seen == list(range(1, 41))  # in order; duplicates (at least once) allowed
    docs = [doc for topic, doc in cloud.seen if topic.endswith("/telemetry")]
    assert all(doc["thing"] == cloud.thing and doc["spool_dropped"] == 0 for doc in docs)


def test_spooled_telemetry_is_sent_after_an_agent_restart(rig: tuple[Device, Cloud]) -> None:
    device, cloud = rig
    device.proxy.cut()
    sync = device.start()
    for i in range(10):
        sync.uplink.telemetry({"n": i})
    sync.uplink.event({"type": "restart"})
    assert wait_until(lambda: device.pending() == 11)
    device.stop()
    device.proxy.restore()
    sync = device.start()
    sync.uplink.telemetry({"n": 10})
    assert wait_until(lambda: set(cloud.telemetry_seqs()) >= set(range(1, 12)), timeout_s=20.0)
    assert any(topic.endswith("/events") and doc["type"] == "restart" for topic, doc in cloud.drain())
    assert wait_until(lambda: device.pending() == 0)


def test_commands_reach_the_control_port_and_bad_ones_are_answered(rig: tuple[Device, Cloud]) -> None:
    device, cloud = rig
    sync = device.start()
    assert wait_until(lambda: sync.connected)
    assert wait_until(lambda: cloud.reported("config").get("agent_version") == "0.1.0")  # subscribed by now
    cloud.probe.publish(f"anc/{cloud.thing}/commands", json.dumps({"type": "emergency_passthrough"}))
    assert wait_until(lambda: device.control.commands == [{"type": "emergency_passthrough"}])
    cloud.probe.publish(f"anc/{cloud.thing}/commands", b"{not json")
    cloud.probe.publish(f"anc/{cloud.thing}/commands", json.dumps({"type": "self_destruct"}))

    def rejections() -> list[dict[str, Any]]:
        return [d for t, d in cloud.drain() if t.endswith("/events") and d["type"] == "command_rejected"]

    assert wait_until(lambda: len(rejections()) == 2)
    assert rejections()[1]["command_type"] == "self_destruct"
    assert "allowed values" in rejections()[1]["reason"]
    assert len(device.control.commands) == 1


def test_features_are_sent_but_raw_audio_never_is(rig: tuple[Device, Cloud]) -> None:
    device, cloud = rig
    sync = device.start()
    assert wait_until(lambda: sync.connected)
    sync.uplink.features({"log_mel": [[0.1] * 64] * 10, "frame_s": 0.01})
    sync.uplink.features({"pcm": [0.0] * 16})
    sync.uplink.features({"frames": list(range(48000))})
    assert wait_until(lambda: any(t.endswith("/features") for t, _ in cloud.drain()))
    time.sleep(0.3)
    features = [d for t, d in cloud.drain() if t.endswith("/features")]
    assert len(features) == 1 and len(features[0]["log_mel"]) == 10
    assert sync.publisher.stats.records_refused == 2
