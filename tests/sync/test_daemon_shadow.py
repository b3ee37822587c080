"""The sync layer under the real daemon (simulated audio): the shadow service tunes the running engine,
a value outside the profile's bounds is refused with the reason, and the real coefficients are reported."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.config import parse_config
from agent.service.daemon import Daemon, Pipeline
from tests.support.broker import MqttProbe
from tests.support.shadow_service import RunningShadowService
from tests.sync.sections import cloud_section
from tests.sync.waiting import wait_until


@pytest.fixture
def daemon_rig(shadow_service: RunningShadowService, tmp_path: Path) -> Iterator[tuple[Pipeline, str, Any]]:
    broker = shadow_service.broker
    thing = f"anc-daemon-{secrets.token_hex(4)}"
    config = parse_config(
        {
            "profile": "hvac-duct-16k",
            "backend": "simulated",
            "state_dir": str(tmp_path / "state"),
            "realtime_priority": 0,
            "cloud": cloud_section(broker, thing, transport="paho"),
        },
        tmp_path / "agent.yaml",
    )
    daemon = Daemon(config)
    pipeline = daemon.start()

    def reported(shadow: str) -> dict[str, Any]:
        """The stored reported section (waiting out the per-thing rate limit the device shares)."""
        replies: list[Any] = []
        assert wait_until(
            lambda: (
                replies.append(shadow_service.store.handle("get", thing, shadow, b"{}")[0])
                or replies[-1].document.get("code") != 429
            ),
            step_s=0.1,
        )
        return replies[-1].document.get("state", {}).get("reported", {})

    try:
        yield pipeline, thing, reported
    finally:
        daemon.stop()


def test_shadow_tunes_the_running_daemon_and_refuses_out_of_bounds_values(
    daemon_rig: tuple[Pipeline, str, Any], shadow_service: RunningShadowService
) -> None:
    pipeline, thing, reported = daemon_rig
    assert wait_until(lambda: reported("config").get("profile") == "hvac-duct-16k", timeout_s=30.0)
    broker = shadow_service.broker
    with MqttProbe(broker, *broker.service_cert(), client_id=f"cloud-{thing}") as probe:
        topic = f"$aws/things/{thing}/shadow/name/config/update"
        probe.publish(topic, json.dumps({"state": {"desired": {"mu": 0.03, "telemetry_interval_s": 2.0}}}))
        assert wait_until(lambda: pipeline.control.current_settings()["mu"] == 0.03, timeout_s=10.0)
        assert wait_until(lambda: reported("config").get("mu") == 0.03, timeout_s=10.0)
        assert reported("config")["telemetry_interval_s"] == 2.0
        probe.publish(topic, json.dumps({"state": {"desired": {"taps": 4096}}}))  # hvac max is 2048
        assert wait_until(lambda: "last_rejection" in reported("config"), timeout_s=10.0)
    rejection = reported("config")["last_rejection"]
    assert rejection["field"] == "taps"
    assert "2048" in rejection["reason"]
    assert pipeline.control.current_settings()["taps"] != 4096


def test_the_engines_coefficients_are_reported(daemon_rig: tuple[Pipeline, str, Any]) -> None:
    pipeline, _thing, reported = daemon_rig
    assert wait_until(lambda: "checksum" in reported("coefficients"), timeout_s=30.0)
    doc = reported("coefficients")
    engine_keys = set(pipeline.control.coefficients())
    assert set(doc["shapes"]) == engine_keys
    assert doc["encoding"] in ("f16-zlib-b64", "f32-zlib-b64")
    assert ("data" in doc) != ("s3_key" in doc)
