"""The shadow service survives restarts: its own (shadows kept in SQLite, queued requests answered),
the broker's (it reconnects and subscribes again), and runs as `anc-cloud local shadow` until SIGTERM."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cloud.local.shadow_service import BrokerEndpoint, ShadowService
from cloud.local.shadow_store import ShadowStore
from tests.support.broker import SERVICE_USER, Broker, MqttProbe
from tests.support.shadow_service import running_shadow_service, service_endpoint

REPO = Path(__file__).resolve().parents[3]
ANSWER_TIMEOUT_S = 20.0


class Device:
    """A device on its own certificate, subscribed to its shadow's replies."""

    def __init__(self, broker: Broker, thing: str, shadow: str = "config") -> None:
        self.prefix = f"$aws/things/{thing}/shadow/name/{shadow}"
        cert, key = broker.issue_client(thing)
        self.probe = MqttProbe(broker, cert, key, client_id=thing).connect()
        for op in ("get", "update"):
            for outcome in ("accepted", "rejected"):
                assert self.probe.subscribe(f"{self.prefix}/{op}/{outcome}") == [1]

    def send(self, op: str, body: dict[str, Any]) -> None:
        self.probe.publish(f"{self.prefix}/{op}", json.dumps(body))

    def answer(self, op: str, timeout_s: float = ANSWER_TIMEOUT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            topic, payload = self.probe.next_message(max(0.01, deadline - time.monotonic()))
            if topic.startswith(f"{self.prefix}/{op}/"):
                return {"outcome": topic.rsplit("/", 1)[1], **json.loads(payload)}

    def ask_until_answered(self, op: str, body: dict[str, Any]) -> dict[str, Any]:
        """Resend every second until the service (maybe still reconnecting) answers."""
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while time.monotonic() < deadline:
            self.send(op, body)
            try:
                return self.answer(op, timeout_s=1.0)
            except queue.Empty:
                continue
        raise AssertionError(f"no answer to {op} within {ANSWER_TIMEOUT_S} s")

    def close(self) -> None:
        self.probe.close()


def test_shadows_survive_a_service_restart(broker_session: Broker, tmp_path: Path) -> None:
    db = tmp_path / "shadows.sqlite3"
    device = Device(broker_session, "restart-svc-1")
    try:
        with running_shadow_service(broker_session, db):
            device.send("update", {"state": {"desired": {"mode": "anc"}}})
            assert device.answer("update")["version"] == 1
            device.send("update", {"state": {"reported": {"mode": "off"}}})
            assert device.answer("update")["version"] == 2
        with running_shadow_service(broker_session, db):
            device.send("get", {"clientToken": "after"})
            shadow = device.answer("get")
        assert shadow["outcome"] == "accepted" and shadow["version"] == 2
        assert shadow["state"] == {
            "desired": {"mode": "anc"},
            "reported": {"mode": "off"},
            "delta": {"mode": "anc"},
        }
    finally:
        device.close()


def test_requests_sent_while_the_service_is_away_are_answered_when_it_returns(
    broker_session: Broker,
    tmp_path: Path,
) -> None:
    db = tmp_path / "shadows.sqlite3"
    device = Device(broker_session, "restart-svc-2")

    def start() -> tuple[ShadowStore, ShadowService]:
        store = ShadowStore(db)
        service = ShadowService(store, service_endpoint(broker_session), client_id="shadow-persistent-2")
        service.start()
        assert service.wait_ready(10.0)
        return store, service

    try:
        store, service = start()
        service.stop()
        store.close()
        device.send("update", {"state": {"reported": {"mode": "anc"}}, "clientToken": "queued"})
        store, service = start()
        try:
            answer = device.answer("update")
        finally:
            service.stop()
            store.close()
        assert (answer["outcome"], answer["clientToken"], answer["version"]) == ("accepted", "queued", 1)
    finally:
        device.close()


def test_service_reconnects_after_a_broker_restart(broker: Broker, tmp_path: Path) -> None:
    with running_shadow_service(broker, tmp_path / "shadows.sqlite3") as running:
        device = Device(broker, "restart-broker-1")
        device.send("update", {"state": {"desired": {"mu": 0.01}}})
        assert device.answer("update")["version"] == 1
        device.close()

        broker.restart()

        device = Device(broker, "restart-broker-1")
        try:
            answer = device.ask_until_answered("get", {"clientToken": "back"})
            assert (answer["outcome"], answer["version"], answer["clientToken"]) == ("accepted", 1, "back")
            assert running.service.ready
            device.send("update", {"state": {"reported": {"mu": 0.01}}})
            assert device.answer("update")["version"] == 2
        finally:
            device.close()


def test_anc_cloud_local_shadow_serves_until_sigterm_and_logs_each_request(
    broker_session: Broker,
    tmp_path: Path,
) -> None:
    cert, key = broker_session.service_cert()
    db = tmp_path / "state" / "shadows.sqlite3"
    command = [sys.executable, "-m", "cloud.cli", "local", "shadow"]
    command += [
        "--broker",
        f"mqtts://localhost:{broker_session.port}",
        "--tls-ca",
        str(broker_session.ca_path),
    ]
    command += ["--tls-cert", str(cert), "--tls-key", str(key), "--db", str(db), "-v"]
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    device = Device(broker_session, "cli-dev-1")
    try:
        answer = device.ask_until_answered(
            "update", {"state": {"desired": {"mode": "anc"}}, "clientToken": "cli"}
        )
        assert (answer["outcome"], answer["clientToken"]) == ("accepted", "cli")
    finally:
        device.close()
        proc.send_signal(signal.SIGTERM)
        try:
            _out, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _out, err = proc.communicate()
    log = err.decode()
    assert proc.returncode == 0, log
    assert "update cli-dev-1~config -> update/accepted, update/delta, update/documents" in log
    assert "SIGTERM received, stopping" in log
    assert db.exists()
    assert ShadowStore(db).handle("get", "cli-dev-1", "config", b"")[0].document["state"]["desired"] == {
        "mode": "anc"
    }


def test_anc_cloud_without_a_command_prints_help_and_fails(capsys: Any) -> None:
    from cloud.cli import main

    assert main([]) == 2
    assert "local" in capsys.readouterr().out


def test_service_can_use_the_plain_local_listener_with_the_service_password(tmp_path: Path) -> None:
    with Broker(tmp_path / "plain-broker", plain_listener=True) as plain_broker:
        assert plain_broker.plain_port is not None
        endpoint = BrokerEndpoint.from_url(
            f"mqtt://127.0.0.1:{plain_broker.plain_port}",
            username=SERVICE_USER,
            password=plain_broker.service_password,
        )
        store = ShadowStore(tmp_path / "shadows.sqlite3")
        service = ShadowService(store, endpoint, client_id="shadow-plain", persistent_session=False)
        service.start()
        device = Device(plain_broker, "plain-dev-1")
        try:
            assert service.wait_ready(10.0)
            device.send("update", {"state": {"reported": {"mode": "anc"}}})
            assert device.answer("update")["outcome"] == "accepted"
        finally:
            device.close()
            service.stop()
            store.close()
