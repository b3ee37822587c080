"""`anc-cloud local demo` (what `make demo` runs): the whole run as a child process, and its parts.

The end-to-end test runs the real thing: provisioning, Mosquitto with TLS and ACLs, the shadow service and
`anc-agent run` on the simulated plant for 10 s of watching (about 15-20 s in all on a warm numba cache).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from agent.profiles import load_profile
from cloud.local.demo import MARKER, DemoError, Timeline, demo_values, live_line, prepare_workdir
from cloud.local.device_observer import DeviceObserver
from cloud.local.shadow_service import BrokerEndpoint

REPO = Path(__file__).resolve().parents[2]


def run_demo_cli(*args: str, timeout_s: float = 360.0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "cloud.cli", "local", "demo", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


@pytest.mark.timeout(420)  # a cold numba cache adds a compile of the kernels to the agent's start
def test_demo_runs_the_agent_with_the_local_cloud_and_reports_every_check(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    result = run_demo_cli("--seconds", "10", "--workdir", str(workdir))
    out = result.stdout
    assert result.returncode == 0, f"stdout:\n{out}\nstderr:\n{result.stderr}"
    telemetry = re.search(r"telemetry +(\d+) records, seq 1\.\.(\d+), no gaps", out)
    assert telemetry, out
    assert int(telemetry.group(1)) == int(telemetry.group(2)) >= 8
    good_mu, bad_mu = demo_values(load_profile("headphone-ff-48k"))
    assert f"device: applied mu={good_mu}" in out
    assert re.search(rf"device: refused it, still running mu={good_mu} .*mu: {bad_mu} is outside", out), out
    assert re.search(r"shadow applied +\{'mu': [0-9.e-]+\} -> round trip [0-9.]+ ms", out), out
    assert "pass-through    seen, back to anc seen" in out
    assert "agent stopped cleanly" in out
    assert "result          OK" in out
    assert (workdir / "state" / "coefficients.ckpt").is_file()
    assert "final checkpoint written to" in (workdir / "agent.log").read_text()


def test_demo_refuses_a_seconds_value_outside_its_range_naming_the_option(tmp_path: Path) -> None:
    result = run_demo_cli("--seconds", "3", "--workdir", str(tmp_path / "demo"), timeout_s=60)
    assert result.returncode == 2
    assert "--seconds" in result.stderr and "[10, 600]" in result.stderr
    assert not (tmp_path / "demo").exists()


def test_demo_refuses_an_unknown_transport_listing_the_allowed_ones(tmp_path: Path) -> None:
    result = run_demo_cli("--transport", "mqtt-sn", "--workdir", str(tmp_path / "demo"), timeout_s=60)
    assert result.returncode == 2
    assert "--transport" in result.stderr and "awsiot" in result.stderr and "paho" in result.stderr
    assert not (tmp_path / "demo").exists()


def test_workdir_holding_foreign_files_is_never_wiped(tmp_path: Path) -> None:
    precious = tmp_path / "notes.txt"
    precious.write_text("keep me")
    with pytest.raises(DemoError, match="refusing to wipe"):
        prepare_workdir(tmp_path)
    assert precious.read_text() == "keep me"


def test_workdir_made_by_an_earlier_demo_is_wiped(tmp_path: Path) -> None:
    first = prepare_workdir(tmp_path / "demo")
    (first / "agent.log").write_text("old run")
    second = prepare_workdir(tmp_path / "demo")
    assert sorted(p.name for p in second.iterdir()) == [MARKER]


def test_demo_mu_values_are_one_inside_and_one_outside_the_profile_bounds() -> None:
    for name in ("headphone-ff-48k", "hvac-duct-16k", "vehicle-cabin-48k"):
        bounds = load_profile(name).controller.mu
        good, bad = demo_values(load_profile(name))
        assert bounds.contains(good) and good != bounds.default
        assert not bounds.contains(bad)


def test_timeline_returns_to_anc_before_the_end_of_the_shortest_run() -> None:
    timeline = Timeline(10.0)
    assert 0 < timeline.shadow_at_s < timeline.passthrough_at_s
    # pass-through, its hold, and one more 1 s telemetry interval showing anc again
    assert timeline.passthrough_at_s + timeline.hold_s + 1.0 < timeline.seconds


def telemetry_message(thing: str, payload: bytes) -> mqtt.MQTTMessage:
    message = mqtt.MQTTMessage(topic=f"anc/{thing}/telemetry".encode())
    message.payload = payload
    return message


def test_observer_counts_seq_gaps_and_drops_duplicates_and_malformed_payloads() -> None:
    observer = DeviceObserver(BrokerEndpoint("127.0.0.1", 1), "anc-x")
    payloads = [json.dumps({"seq": seq}).encode() for seq in (1, 2, 2, 5, 6, 9)]
    payloads += [b'{"seq": "7"}', b"not json", b"[1, 2]"]  # malformed: counted, dropped
    for payload in payloads:
        observer._on_message(observer._client, None, telemetry_message("anc-x", payload))
    observer._on_message(observer._client, None, telemetry_message("anc-other", b'{"seq": 3}'))
    assert observer.seq_gaps() == [(3, 4), (7, 8)]
    assert observer.duplicates == 1
    assert observer.malformed == 3
    assert observer.latest_telemetry() == {"seq": 9}


def test_live_line_shows_missing_figures_as_na() -> None:
    line = live_line(3.0, {"seq": 4, "mode": "passthrough", "stage": "control", "attenuation_db": None})
    assert "passthrough" in line and line.count("n/a") == 4
