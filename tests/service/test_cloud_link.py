"""The daemon with a `cloud:` section: telemetry reaches the broker, a cloud command reaches the engine."""

from __future__ import annotations

import json
import time
from pathlib import Path

from agent.config import parse_config
from agent.engine import STAGE_CONTROL
from agent.service.daemon import Daemon
from tests.support.broker import Broker, MqttProbe

THING = "anc-daemon-test-1"


def test_telemetry_goes_up_and_a_passthrough_command_comes_down(broker: Broker, tmp_path: Path) -> None:
    cert, key = broker.issue_client(THING)
    cloud = {
        "thing_name": THING,
        "endpoint": broker.host,
        "port": broker.port,
        "ca_file": str(broker.ca_path),
        "cert_file": str(cert),
        "key_file": str(key),
        "transport": "paho",
    }
    config = parse_config(
        {"profile": "hvac-duct-16k", "backend": "simulated", "state_dir": str(tmp_path / "state"),
         "realtime_priority": 0, "telemetry_interval_s": 0.5, "cloud": cloud},
        tmp_path / "agent.yaml",
    )  # fmt: skip
    with MqttProbe(broker, *broker.service_cert(), client_id="cloud-side") as probe:
        probe.subscribe(f"anc/{THING}/#")
        daemon = Daemon(config)
        pipeline = daemon.start()
        try:
            telemetry = []
            deadline = time.monotonic() + 60
            while len(telemetry) < 2 and time.monotonic() < deadline:
                try:
                    topic, payload = probe.next_message(timeout_s=2)
                except Exception:
                    continue
                if topic == f"anc/{THING}/telemetry":
                    telemetry.append(json.loads(payload))
            assert len(telemetry) >= 2
            assert telemetry[1]["seq"] > telemetry[0]["seq"]
            assert {"mode", "attenuation_db", "callback_us_p99", "xruns", "cpu_pct"} <= set(telemetry[0])

            deadline = time.monotonic() + 60
            while pipeline.engine.stage.code != STAGE_CONTROL and time.monotonic() < deadline:
                time.sleep(0.05)
            probe.publish(f"anc/{THING}/commands", json.dumps({"type": "passthrough", "hold_s": 600}))
            deadline = time.monotonic() + 10
            while pipeline.control.effective_mode != "passthrough" and time.monotonic() < deadline:
                time.sleep(0.02)
            assert pipeline.control.effective_mode == "passthrough"
            probe.publish(f"anc/{THING}/commands", json.dumps({"type": "reboot"}))
            rejected = None
            deadline = time.monotonic() + 10
            while rejected is None and time.monotonic() < deadline:
                try:
                    topic, payload = probe.next_message(timeout_s=1)
                except Exception:
                    continue
                doc = json.loads(payload)
                if topic == f"anc/{THING}/events" and doc.get("type") == "command_rejected":
                    rejected = doc
            assert rejected is not None and "allowed values: passthrough" in rejected["reason"]
        finally:
            daemon.stop()
