"""Load test of the sync layer: N simulated agents (sync only, no audio) against one broker + shadow service.

Each agent is a real `start_sync` with its own spool and shadow client over a `SimControl` (the daemon's
settings rules, no engine). A cloud-side client (the broker's privileged service identity) listens to
`anc/+/telemetry` and the config shadows' `/update/documents`, and writes desired values. Reported:

- telemetry messages/s received, and loss: sequence numbers sent but never received (duplicates from
  at-least-once delivery are counted apart);
- convergence: one desired change written to every agent at once, seconds until all report it;
- config round trip: desired written for one agent -> its new reported value visible in the shadow
  (`/update/documents`), sampled one agent at a time; p50/p95/max in ms;
- CPU of this process (agents + cloud client) as a share of one core;
- optionally a network outage of `outage_s` between the agents and the broker (`cut`/`restore` hooks,
  e.g. a TCP proxy): telemetry keeps flowing into the spools and must all arrive afterwards.

Many agents share this one process: use the awsiot transport (the CRT's epoll event loop) for large N;
paho's network loop uses select(), which cannot watch file descriptors above 1023 (about 120 agents
here, each holding a socket, a wake-up socket pair and three SQLite files).

`python -m agent.sync.loadtest --agents 200` runs it against a local Mosquitto and shadow service started
from the repository's test support code (a development checkout is needed for that entry point).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import secrets
import ssl
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.profiles import Profile, load_profile
from agent.service.settings import AgentSettings, default_settings, merge_desired
from agent.sync.client import CloudSync, start_sync

log = logging.getLogger(__name__)


class SimControl:
    """A ControlPort without an engine: settings follow the daemon's rules (`merge_desired`)."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self._settings: AgentSettings = default_settings(profile)
        self._coefficients = {"w_fxnlms": np.zeros((1, 32), dtype=np.float32)}
        self._lock = threading.Lock()
        self.commands = 0

    def apply_settings(self, desired: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._settings = merge_desired(self.profile, self._settings, desired)
            return self._settings.to_shadow()

    def current_settings(self) -> dict[str, Any]:
        with self._lock:
            return self._settings.to_shadow()

    def status(self) -> dict[str, Any]:
        return {"agent_version": "loadtest", "profile": self.profile.name, "mode": self._settings.mode_name}

    def coefficients(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self._coefficients.items()}

    def load_coefficients(self, coefficients: dict[str, np.ndarray]) -> None:
        self._coefficients = {k: np.asarray(v, dtype=np.float32) for k, v in coefficients.items()}

    def command(self, command: dict[str, Any]) -> None:
        self.commands += 1


@dataclass
class Endpoint:
    """Where clients connect and with which CA."""

    host: str
    port: int
    ca_file: Path


@dataclass
class LoadReport:
    agents: int
    transport: str
    duration_s: float
    telemetry_sent: int
    telemetry_received: int
    duplicates: int
    lost: int
    messages_per_s: float
    cpu_pct_of_one_core: float
    convergence_s: float | None
    round_trip_ms: list[float] = field(default_factory=list)
    outage_s: float = 0.0

    def percentile_ms(self, q: float) -> float | None:
        if not self.round_trip_ms:
            return None
        return float(np.percentile(self.round_trip_ms, q))

    def lines(self) -> list[str]:
        rt = self.round_trip_ms
        conv = "not reached" if self.convergence_s is None else f"{self.convergence_s:.2f} s"
        out = [
            f"agents: {self.agents} ({self.transport}), run {self.duration_s:.1f} s, "
            f"outage {self.outage_s:.0f} s",
            f"telemetry: sent {self.telemetry_sent}, received {self.telemetry_received} unique "
            f"(+{self.duplicates} duplicates), lost {self.lost}, {self.messages_per_s:.1f} msg/s received",
            f"convergence of one desired change to all agents: {conv}",
            f"CPU of the agents' process: {self.cpu_pct_of_one_core:.1f} % of one core",
        ]
        if rt:
            out.append(
                f"config round trip (desired -> reported), n={len(rt)}: p50 {statistics.median(rt):.1f} ms, "
                f"p95 {self.percentile_ms(95):.1f} ms, max {max(rt):.1f} ms"
            )
        return out


class CloudClient:
    """The cloud side: counts telemetry per thing, tracks reported config, writes desired values."""

    def __init__(self, endpoint: Endpoint, cert_file: Path, key_file: Path) -> None:
        self._lock = threading.Lock()
        self.seqs: dict[str, set[int]] = {}
        self.received = 0
        self.reported_mu: dict[str, float] = {}
        self._waiters: list[tuple[str, float, threading.Event]] = []
        self._ready = threading.Event()
        ctx = ssl.create_default_context(cafile=str(endpoint.ca_file))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(cert_file), str(key_file))
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"loadtest-cloud-{secrets.token_hex(4)}",
            protocol=mqtt.MQTTv5,
        )
        self._client.tls_set_context(ctx)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.connect(endpoint.host, endpoint.port, 30)
        self._client.loop_start()
        if not self._ready.wait(10.0):
            raise RuntimeError("cloud client did not connect and subscribe within 10 s")

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        # QoS 0 on the broker -> cloud leg: a QoS 1 subscriber gets 20 messages in flight and 1000 queued
        # (Mosquitto's defaults) and the broker drops the rest of a burst, such as 200 agents flushing
        # their spools after an outage. On this local, never-dropped connection QoS 0 loses nothing,
        # so every gap left in the sequence numbers is the devices' doing.
        client.subscribe([("anc/+/telemetry", 0), ("$aws/things/+/shadow/name/config/update/documents", 0)])
        self._ready.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            return
        parts = msg.topic.split("/")
        if parts[0] == "anc":
            with self._lock:
                self.received += 1
                self.seqs.setdefault(parts[1], set()).add(int(doc.get("seq", -1)))
            return
        mu = doc.get("current", {}).get("state", {}).get("reported", {}).get("mu")
        if isinstance(mu, int | float):
            thing = parts[2]
            with self._lock:
                self.reported_mu[thing] = float(mu)
                for waiter in [w for w in self._waiters if w[0] == thing and w[1] == mu]:
                    waiter[2].set()
                    self._waiters.remove(waiter)

    def set_desired_mu(self, thing: str, mu: float) -> threading.Event:
        """Write desired mu; the event is set when `/update/documents` shows it reported."""
        event = threading.Event()
        with self._lock:
            self._waiters.append((thing, mu, event))
        body = json.dumps({"state": {"desired": {"mu": mu}}})
        self._client.publish(f"$aws/things/{thing}/shadow/name/config/update", body, 1)
        return event

    def converged(self, things: list[str], mu: float) -> bool:
        with self._lock:
            return all(self.reported_mu.get(t) == mu for t in things)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_load(
    agents: int,
    agent_endpoint: Endpoint,
    cloud_endpoint: Endpoint,
    issue_identity: Callable[[str], tuple[Path, Path]],
    cloud_identity: tuple[Path, Path],
    state_root: Path,
    *,
    duration_s: float = 10.0,
    telemetry_hz: float = 1.0,
    transport: str = "awsiot",
    round_trips: int = 20,
    outage_s: float = 0.0,
    cut: Callable[[], None] | None = None,
    restore: Callable[[], None] | None = None,
    profile: Profile | None = None,
    drain_timeout_s: float = 120.0,
) -> LoadReport:
    """Run the load test; see the module docstring. `issue_identity(thing)` -> (cert_file, key_file)."""
    profile = profile or load_profile()
    cloud = CloudClient(cloud_endpoint, *cloud_identity)
    run_id = secrets.token_hex(3)
    things = [f"load-{run_id}-{i:04d}" for i in range(agents)]
    syncs: list[CloudSync] = []
    sent = 0
    try:
        for thing in things:
            cert_file, key_file = issue_identity(thing)
            section = {
                "thing_name": thing,
                "endpoint": agent_endpoint.host,
                "port": agent_endpoint.port,
                "ca_file": str(agent_endpoint.ca_file),
                "cert_file": str(cert_file),
                "key_file": str(key_file),
                "transport": transport,
                "reconnect_min_s": 0.5,
                "reconnect_max_s": 5.0,
            }
            syncs.append(start_sync(section, SimControl(profile), state_root / thing, profile))
        deadline = time.monotonic() + 60.0
        while not all(s.connected for s in syncs) and time.monotonic() < deadline:
            time.sleep(0.1)

        cpu0, wall0 = _cpu_s(), time.monotonic()
        convergence_s: float | None = None
        target_mu = 0.0123
        t0 = time.monotonic()
        for thing in things:
            cloud.set_desired_mu(thing, target_mu)
        period_s = 1.0 / telemetry_hz
        next_tick = time.monotonic()
        outage_from = wall0 + duration_s / 3 if outage_s > 0 and cut is not None else None
        in_outage = False
        while time.monotonic() - wall0 < duration_s:
            now = time.monotonic()
            if convergence_s is None and cloud.converged(things, target_mu):
                convergence_s = now - t0
            if outage_from is not None and not in_outage and now >= outage_from:
                cut()  # type: ignore[misc]
                in_outage = True
            if in_outage and outage_from is not None and now >= outage_from + outage_s:
                if restore is not None:
                    restore()
                in_outage, outage_from = False, None
            if now >= next_tick:
                for s in syncs:
                    s.uplink.telemetry({"attenuation_db": 20.0, "xruns": 0})
                    sent += 1
                next_tick += period_s
            time.sleep(min(0.01, max(0.0, next_tick - time.monotonic())))
        if in_outage and restore is not None:
            restore()
        if convergence_s is None:
            end = time.monotonic() + 30.0
            while time.monotonic() < end and not cloud.converged(things, target_mu):
                time.sleep(0.05)
            if cloud.converged(things, target_mu):
                convergence_s = time.monotonic() - t0

        round_trip_ms: list[float] = []
        for k in range(round_trips):
            thing = things[k % len(things)]
            mu = round(0.02 + 0.001 * k, 6)
            start = time.monotonic()
            if cloud.set_desired_mu(thing, mu).wait(10.0):
                round_trip_ms.append(1000.0 * (time.monotonic() - start))
            # Pace the samples: the cloud's writes and the device's reports share the thing's 20 shadow
            # requests/s, and a 429 to the cloud's write would be counted as a missing round trip.
            time.sleep(0.1)

        drain_end = time.monotonic() + drain_timeout_s
        while time.monotonic() < drain_end:
            with cloud._lock:
                unique = sum(len(v) for v in cloud.seqs.values())
            if unique >= sent:
                break
            time.sleep(0.1)
        wall_s = time.monotonic() - wall0
        cpu_pct = 100.0 * (_cpu_s() - cpu0) / wall_s
        with cloud._lock:
            unique = sum(len({q for q in cloud.seqs.get(t, ()) if q >= 1}) for t in things)
            received = cloud.received
        return LoadReport(
            agents=agents,
            transport=transport,
            duration_s=wall_s,
            telemetry_sent=sent,
            telemetry_received=unique,
            duplicates=received - unique,
            lost=max(0, sent - unique),
            messages_per_s=received / wall_s,
            cpu_pct_of_one_core=cpu_pct,
            convergence_s=convergence_s,
            round_trip_ms=round_trip_ms,
            outage_s=outage_s if cut else 0.0,
        )
    finally:
        for s in syncs:
            s.stop(2.0)
        cloud.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agent.sync.loadtest", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--duration-s", type=float, default=30.0)
    parser.add_argument("--telemetry-hz", type=float, default=1.0)
    parser.add_argument("--transport", choices=("awsiot", "paho"), default="awsiot")
    parser.add_argument("--round-trips", type=int, default=50)
    parser.add_argument(
        "--outage-s", type=float, default=0.0, help="network outage between agents and broker"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # reconnect warnings during an outage are expected

    import tempfile

    from tests.support.broker import Broker
    from tests.support.shadow_service import running_shadow_service
    from tests.sync.tcp_proxy import TcpProxy

    with tempfile.TemporaryDirectory(prefix="anc-loadtest-") as tmp, Broker(Path(tmp) / "broker") as broker:
        proxy = TcpProxy(broker.host, broker.port)
        with running_shadow_service(broker, Path(tmp) / "shadows.sqlite3"):
            report = run_load(
                args.agents,
                Endpoint(proxy.host, proxy.port, broker.ca_path),
                Endpoint(broker.host, broker.port, broker.ca_path),
                broker.issue_client,
                broker.service_cert(),
                Path(tmp) / "agents",
                duration_s=args.duration_s,
                telemetry_hz=args.telemetry_hz,
                transport=args.transport,
                round_trips=args.round_trips,
                outage_s=args.outage_s,
                cut=proxy.cut,
                restore=proxy.restore,
            )
        proxy.close()
    print("\n".join(report.lines()))
    return 0 if report.lost == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
