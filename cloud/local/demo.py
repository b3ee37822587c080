"""`anc-cloud local demo` (`make demo`): the device agent on the simulated plant, with the local cloud.

In a work directory (`out/demo/` by default, wiped at start):

1. a fleet CA and one device through the provisioning code (`provisioning.home.FleetHome`), and the
   device's bundle (`provisioning.bundle`, for the chosen `--profile`) pointing at the local broker,
   with `backend: simulated` and a `state_dir` inside the work directory added to its agent.yaml;
2. the local Mosquitto (`cloud.local.broker.Broker`: mutual TLS, per-thing ACLs, the fleet CA) and the
   local shadow service (`cloud.local.shadow_service`, in this process);
3. `anc-agent run --config <bundle>/agent.yaml` as a child process, paced in real time;
4. the start-up (secondary-path identification), then for `--seconds` after the controller runs: one
   line a second from the telemetry the agent publishes, seen as the cloud sees it
   (`cloud.local.device_observer`); at ~1/3 of that a `config` shadow change from the cloud side (an
   in-bounds `mu`, then an out-of-bounds one the device must refuse) with the round trip; at ~3/5 an
   emergency pass-through command on `anc/<thing>/commands`, and the mode switching to passthrough and
   back after the hold;
5. SIGTERM to the agent (it must exit 0 and leave a checkpoint holding the new `mu`), then the services
   stop and a summary is printed.

Exit 0 when every check passed, 1 naming each failed check, 2 for bad arguments. Lives in the `cloud`
CLI (not a loose script) because it is the local stack's first user: it runs the same broker, shadow
service and observer the local stack does, and it installs with the package like every other command.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agent.config import ConfigError, parse_config
from agent.profiles import DEFAULT_PROFILE, Profile, available_profiles, load_profile
from agent.service.checkpoint import CheckpointStore
from agent.sync.config import TRANSPORTS
from cloud.local.broker import Broker
from cloud.local.device_observer import DeviceObserver, ObserverError, ShadowRoundTrip
from cloud.local.shadow_service import ShadowService
from cloud.local.shadow_store import ShadowStore
from provisioning import bundle, naming, pki
from provisioning.errors import ProvisionError
from provisioning.home import FleetHome

DEFAULT_WORKDIR = Path("out/demo")
DEFAULT_SECONDS = 25.0
MIN_SECONDS, MAX_SECONDS = 10.0, 600.0
DEMO_SERIAL = "DEMO-0001"
MARKER = ".anc-demo"  # a work dir holding this file was made by the demo and may be wiped
START_TIMEOUT_S = 300.0  # a first run compiles the numba kernels on a busy machine
COMPILE_NOTICE_AFTER_S = 10.0  # a warm start takes 3-5 s (numba cache load, 1 s of probe noise)
SHADOW_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 15.0
READY_TIMEOUT_S = 10.0
PUMP_S = 0.2  # the live view prints a record within this long of its arrival


class DemoError(RuntimeError):
    """A step that could not run at all (the demo stops there); the message says which and why."""


@dataclass
class DemoReport:
    """What the run saw; `problems` lists every failed check (empty: success)."""

    thing_name: str
    problems: list[str] = field(default_factory=list)
    controller_running_s: float | None = None
    shadow_applied: ShadowRoundTrip | None = None
    shadow_rejected: ShadowRoundTrip | None = None
    passthrough_seen: bool = False
    resumed_seen: bool = False
    stop_s: float | None = None
    checkpoint_path: Path | None = None

    def check(self, ok: bool, problem: str) -> bool:
        if not ok:
            self.problems.append(problem)
            say(f"  FAILED: {problem}")
        return ok


def say(text: str) -> None:
    print(text, flush=True)


# ---------------------------------------------------------------------------------------- step 1


def prepare_workdir(workdir: Path) -> Path:
    """Wipe `workdir` (only when it is absent, empty or made by an earlier demo) and recreate it."""
    workdir = workdir.absolute()
    if workdir.exists():
        if not workdir.is_dir():
            raise DemoError(f"--workdir: {workdir} is a file, not a directory")
        if any(workdir.iterdir()) and not (workdir / MARKER).exists():
            raise DemoError(f"--workdir: {workdir} holds files the demo did not make; refusing to wipe it")
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    (workdir / MARKER).write_text("made by anc-cloud local demo; wiped by its next run\n")
    return workdir


def provision_fleet(workdir: Path, thing_name: str, profile: str) -> tuple[FleetHome, bytes]:
    """A fleet home with a new CA (its passphrase saved 0600 beside it) and one issued device."""
    home = FleetHome(workdir / "fleet")
    passphrase = secrets.token_urlsafe(24).encode()
    home.init_ca(passphrase, common_name="ANC Edge Demo Fleet CA")
    pki.write_file_atomic(home.root / "passphrase.txt", passphrase + b"\n", mode=0o600)
    home.issue_device(home.load_ca(passphrase), thing_name, serial=DEMO_SERIAL, profile=profile)
    return home, passphrase


def write_device_bundle(
    home: FleetHome, thing_name: str, broker: Broker, profile: str, workdir: Path, transport: str
) -> Path:
    """The device bundle for the local broker, with the demo's additions to agent.yaml; returns its path.

    The additions are validated by the agent's own config parser before the file is written."""
    endpoint = bundle.Endpoint(broker.host, broker.port)
    paths = bundle.bundle_device(home, thing_name, workdir / "bundle", endpoint, profile)
    config: dict[str, Any] = yaml.safe_load(paths.config.read_text())
    config.update(
        backend="simulated",
        simulated={"paced": True},
        state_dir=str(workdir / "state"),
        realtime_priority=0,  # a demo on a shared machine: leave the scheduler alone
        telemetry_interval_s=1.0,
    )
    config["cloud"]["transport"] = transport
    try:
        parse_config(config, paths.config)
    except ConfigError as exc:
        raise DemoError(f"the demo's agent.yaml is not valid: {exc}") from exc
    header = "# Device bundle from anc-provision, plus the demo's backend and state directory.\n"
    pki.write_file_atomic(paths.config, (header + yaml.safe_dump(config, sort_keys=False)).encode())
    return paths.config


# ---------------------------------------------------------------------------------------- step 2-3


@contextlib.contextmanager
def running_shadow_service(broker: Broker, db_path: Path) -> Iterator[ShadowService]:
    store = ShadowStore(db_path)
    service = ShadowService(
        store, broker.service_endpoint(), client_id="anc-demo-shadow-service", persistent_session=False
    )
    service.start()
    try:
        if not service.wait_ready(READY_TIMEOUT_S):
            raise DemoError(f"the shadow service did not subscribe; broker log: {broker.log_path}")
        yield service
    finally:
        service.stop()
        store.close()


def start_agent(config_path: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """`anc-agent run --config config_path` with this interpreter, its output going to `log_path`."""
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "--config", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )


def log_tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join("    | " + line for line in text.splitlines()[-lines:])


# ---------------------------------------------------------------------------------------- step 4


def _fmt(value: Any, spec: str, width: int) -> str:
    return format(value, spec).rjust(width) if isinstance(value, int | float) else "n/a".rjust(width)


LIVE_HEADER = (
    f"  {'t(s)':>5}  {'seq':>4}  {'mode':<12}  {'stage':<9}  {'atten(dB)':>9}  {'cb p99(us)':>10}"
    f"  {'load p99':>8}  {'xruns':>5}"
)


def live_line(t_s: float, rec: dict[str, Any]) -> str:
    """One live-view line from a telemetry record."""
    load = rec.get("callback_load_p99")
    load_text = f"{100 * load:7.1f}%" if isinstance(load, int | float) else "    n/a "
    mode, stage = rec.get("mode", "?"), rec.get("stage", "?")
    return (
        f"  {t_s:5.1f}  {rec.get('seq', '?')!s:>4}  {mode!s:<12}  {stage!s:<9}"
        f"  {_fmt(rec.get('attenuation_db'), '.1f', 9)}  {_fmt(rec.get('callback_us_p99'), '.1f', 10)}"
        f"  {load_text}  {_fmt(rec.get('xruns'), 'd', 5)}"
    )


def event_line(t_s: float, event: dict[str, Any]) -> str:
    details = ", ".join(f"{k}={v}" for k, v in event.items() if k != "type" and v is not None)
    return f"  {t_s:5.1f}  event {event.get('type')}: {details}"


class LiveView:
    """Prints every new telemetry record and event once, stamped with the seconds since the agent started."""

    def __init__(self, observer: DeviceObserver, agent_started_at: float) -> None:
        self._observer = observer
        self._t0 = agent_started_at
        self._printed_seq = -1
        self._printed_events = 0

    def elapsed_s(self) -> float:
        return time.monotonic() - self._t0

    def pump(self) -> None:
        t_s = self.elapsed_s()
        for rec in self._observer.telemetry_records():
            if rec["seq"] > self._printed_seq:
                self._printed_seq = rec["seq"]
                say(live_line(t_s, rec))
        events = list(self._observer.events)
        for event in events[self._printed_events :]:
            say(event_line(t_s, event))
        self._printed_events = len(events)


def _controlling(rec: dict[str, Any]) -> bool:
    return rec.get("stage") == "control"


def wait_controller(
    observer: DeviceObserver, view: LiveView, agent: subprocess.Popen[bytes], log_path: Path
) -> float:
    """Show the start-up (secondary-path identification) until a record says the controller runs;
    returns the seconds since the agent started. DemoError when the agent exits or takes too long."""
    noticed = False
    say(LIVE_HEADER)
    while not observer.wait_telemetry(_controlling, 0.2):
        view.pump()
        waited_s = view.elapsed_s()
        if agent.poll() is not None:
            raise DemoError(f"the agent exited with code {agent.returncode}; its log:\n{log_tail(log_path)}")
        if waited_s > START_TIMEOUT_S:
            raise DemoError(
                f"the agent's controller was not running {START_TIMEOUT_S:g} s after start; "
                f"its log:\n{log_tail(log_path)}"
            )
        if not noticed and waited_s > COMPILE_NOTICE_AFTER_S:
            noticed = True
            say(
                f"  still starting after {COMPILE_NOTICE_AFTER_S:g} s: a first run on a machine compiles "
                "the numba kernels (half a minute or more); later runs reuse the cache and start in seconds"
            )
    view.pump()
    return view.elapsed_s()


def demo_values(profile: Profile) -> tuple[float, float]:
    """An in-bounds `mu` different from the default, and an out-of-bounds one (three times the maximum)."""
    bounds = profile.controller.mu
    accepted = round(max(bounds.min, bounds.default / 2), 6)
    return accepted, round(bounds.max * 3, 6)


def change_shadow(observer: DeviceObserver, profile: Profile, report: DemoReport, t_s: float) -> float:
    """Push an accepted and a refused `mu` through the config shadow; returns the new running `mu`."""
    good_mu, bad_mu = demo_values(profile)
    say(f"  {t_s:5.1f}  cloud: config shadow desired mu={good_mu:g} (in {profile.controller.mu.describe()})")
    try:
        rt = observer.update_config_desired(
            {"mu": good_mu}, lambda r: r.get("mu") == good_mu, SHADOW_TIMEOUT_S
        )
        report.shadow_applied = rt
        say(f"         device: applied mu={rt.reported.get('mu')} (round trip {rt.round_trip_ms:.1f} ms)")
    except ObserverError as exc:
        report.check(False, f"shadow change not applied: {exc}")
    say(f"         cloud: config shadow desired mu={bad_mu:g} (outside the profile's bounds)")

    def refused(reported: dict[str, Any]) -> bool:
        rejection = reported.get("last_rejection")
        return isinstance(rejection, dict) and rejection.get("field") == "mu"

    try:
        rt = observer.update_config_desired({"mu": bad_mu}, refused, SHADOW_TIMEOUT_S)
        report.shadow_rejected = rt
        reason = rt.reported["last_rejection"].get("reason")
        say(
            f"         device: refused it, still running mu={rt.reported.get('mu')}"
            f" (round trip {rt.round_trip_ms:.1f} ms): {reason}"
        )
    except ObserverError as exc:
        report.check(False, f"out-of-bounds shadow value not reported as rejected: {exc}")
    return good_mu


def send_passthrough(observer: DeviceObserver, hold_s: float, t_s: float) -> None:
    say(f"  {t_s:5.1f}  cloud: emergency pass-through command (hold {hold_s:.1f} s)")
    observer.send_command({"type": "passthrough", "hold_s": hold_s, "label": "demo-emergency"})


@dataclass(frozen=True)
class Timeline:
    """When each cloud action happens, in seconds after the controller started running."""

    seconds: float

    @property
    def shadow_at_s(self) -> float:
        return round(self.seconds * 0.32, 1)  # 8 s of 25

    @property
    def passthrough_at_s(self) -> float:
        return round(self.seconds * 0.6, 1)  # 15 s of 25

    @property
    def hold_s(self) -> float:
        return round(self.seconds * 0.16, 1)  # 4 s of 25: back to anc well before the end


def watch(
    observer: DeviceObserver, view: LiveView, profile: Profile, timeline: Timeline, report: DemoReport
) -> None:
    """The live view and the cloud actions, for `timeline.seconds` after the controller started."""
    t0 = time.monotonic()
    shadow_done = passthrough_done = False
    while True:
        view.pump()
        t_s = time.monotonic() - t0
        if not shadow_done and t_s >= timeline.shadow_at_s:
            shadow_done = True
            change_shadow(observer, profile, report, view.elapsed_s())
        if not passthrough_done and t_s >= timeline.passthrough_at_s:
            passthrough_done = True
            send_passthrough(observer, timeline.hold_s, view.elapsed_s())
        if t_s >= timeline.seconds:
            break
        time.sleep(min(PUMP_S, max(0.0, timeline.seconds - t_s)))
    view.pump()
    records = observer.telemetry_records()
    report.passthrough_seen = any(r.get("mode") == "passthrough" for r in records)
    report.resumed_seen = _resumed_after_passthrough(records)


def _resumed_after_passthrough(records: list[dict[str, Any]]) -> bool:
    seen_passthrough = False
    for rec in records:
        if rec.get("mode") == "passthrough":
            seen_passthrough = True
        elif seen_passthrough and rec.get("mode") == "anc":
            return True
    return False


# ---------------------------------------------------------------------------------------- step 5


def stop_agent(
    agent: subprocess.Popen[bytes], log_path: Path, state_dir: Path, mu: float, report: DemoReport
) -> None:
    """SIGTERM, then check the exit code and the final checkpoint (it must hold the shadow's `mu`)."""
    say("stopping the agent (SIGTERM)")
    t0 = time.monotonic()
    agent.send_signal(signal.SIGTERM)
    try:
        code = agent.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        agent.kill()
        agent.wait()
        report.check(False, f"the agent did not stop within {STOP_TIMEOUT_S:g} s of SIGTERM (killed)")
        return
    report.stop_s = time.monotonic() - t0
    log_text = log_path.read_text(errors="replace")
    if not report.check(code == 0, f"the agent exited with code {code}; its log:\n{log_tail(log_path)}"):
        return
    checkpoint_logged = "final checkpoint written to" in log_text
    ckpt = CheckpointStore(state_dir).load()
    settings = ckpt.meta.get("settings", {}) if ckpt is not None else {}
    if report.check(
        checkpoint_logged and ckpt is not None, f"no final checkpoint in {state_dir} (agent log: {log_path})"
    ):
        report.checkpoint_path = CheckpointStore(state_dir).current
        say(f"  agent stopped cleanly in {report.stop_s:.2f} s; checkpoint {report.checkpoint_path}")
        if report.shadow_applied is not None:
            report.check(
                settings.get("mu") == mu,
                f"the checkpoint holds mu={settings.get('mu')}, not the shadow's {mu}",
            )


def summarise(observer: DeviceObserver, report: DemoReport, timeline: Timeline) -> None:
    records = observer.telemetry_records()
    attenuations = [r["attenuation_db"] for r in records if isinstance(r.get("attenuation_db"), int | float)]
    gaps = observer.seq_gaps()
    report.check(bool(records), "no telemetry received")
    report.check(not gaps, f"telemetry seq gaps: {gaps}")
    first_seq = records[0]["seq"] if records else None
    report.check(first_seq in (None, 1), f"telemetry starts at seq {first_seq}, not 1 (lost)")
    report.check(bool(attenuations), "no attenuation figure in any telemetry record")
    report.check(report.passthrough_seen, "the pass-through command never showed as mode passthrough")
    report.check(report.resumed_seen, f"mode did not return to anc after the {timeline.hold_s:g} s hold")
    xruns = sum(int(r.get("xruns") or 0) for r in records)
    say("")
    say("summary")
    if records:
        say(
            f"  telemetry       {len(records)} records, seq {records[0]['seq']}..{records[-1]['seq']}, "
            f"{'no gaps' if not gaps else f'gaps {gaps}'}, {observer.duplicates} duplicates, {xruns} xruns"
        )
    if attenuations:
        say(f"  attenuation     {attenuations[-1]:.1f} dB at the end (best {max(attenuations):.1f} dB)")
    for label, rt in (
        ("shadow applied ", report.shadow_applied),
        ("shadow refused ", report.shadow_rejected),
    ):
        if rt is not None:
            say(f"  {label} {rt.desired} -> round trip {rt.round_trip_ms:.1f} ms")
    say(f"  pass-through    {'seen' if report.passthrough_seen else 'NOT seen'}, "
        f"back to anc {'seen' if report.resumed_seen else 'NOT seen'}")  # fmt: skip
    if report.stop_s is not None:
        where = report.checkpoint_path or "MISSING"
        say(f"  clean stop      {report.stop_s:.2f} s after SIGTERM, checkpoint {where}")
    say(f"  result          {'OK' if not report.problems else f'{len(report.problems)} check(s) FAILED'}")


# ---------------------------------------------------------------------------------------- the run


def run_demo(workdir: Path, profile_name: str, seconds: float, transport: str = "awsiot") -> DemoReport:
    profile = load_profile(profile_name)
    thing_name = naming.thing_name_from_serial(DEMO_SERIAL)
    report = DemoReport(thing_name)
    workdir = prepare_workdir(workdir)
    say(f"ANC Edge demo: device {thing_name}, profile {profile.name}, {seconds:g} s, in {workdir}")
    home, passphrase = provision_fleet(workdir, thing_name, profile.name)
    say(f"  fleet CA and device certificate issued ({home.root})")
    with contextlib.ExitStack() as stack:
        broker = Broker(workdir / "broker", ca_dir=home.ca_dir, ca_passphrase=passphrase)
        stack.callback(broker.stop)
        broker.start()
        say(f"  local Mosquitto on {broker.host}:{broker.port} (mutual TLS, per-thing ACLs)")
        config_path = write_device_bundle(home, thing_name, broker, profile.name, workdir, transport)
        say(f"  device bundle: {config_path} (transport {transport})")
        stack.enter_context(running_shadow_service(broker, workdir / "shadows.sqlite3"))
        say("  local shadow service subscribed")
        observer = DeviceObserver(broker.service_endpoint(), thing_name, client_id="anc-demo-cloud").start()
        stack.callback(observer.stop)
        log_path = workdir / "agent.log"
        agent_started_at = time.monotonic()
        agent = start_agent(config_path, log_path)
        stack.callback(_kill_if_running, agent)
        say(f"  anc-agent run started (pid {agent.pid}, log {log_path})")
        view = LiveView(observer, agent_started_at)
        report.controller_running_s = wait_controller(observer, view, agent, log_path)
        say(f"  controller running {report.controller_running_s:.1f} s after the agent started")
        timeline = Timeline(seconds)
        watch(observer, view, profile, timeline, report)
        new_mu = report.shadow_applied.desired["mu"] if report.shadow_applied else float("nan")
        stop_agent(agent, log_path, workdir / "state", new_mu, report)
        summarise(observer, report, timeline)
    return report


def _kill_if_running(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------------------------- `anc-cloud local demo`


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not MIN_SECONDS <= value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"{value:g} is outside [{MIN_SECONDS:g}, {MAX_SECONDS:g}]")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        default=DEFAULT_PROFILE,
        choices=available_profiles(),
        help="firmware profile of the simulated device (default: %(default)s)",
    )
    parser.add_argument(
        "--seconds",
        type=_seconds,
        default=DEFAULT_SECONDS,
        help=f"how long to watch the running agent, {MIN_SECONDS:g}..{MAX_SECONDS:g} (default: %(default)s)",
    )
    parser.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default="awsiot",
        help="the agent's MQTT client: awsiot (the AWS IoT Device SDK, as in production) or paho "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help="work directory, wiped at start (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="  %(levelname)s %(name)s: %(message)s")
    try:
        report = run_demo(args.workdir, args.profile, args.seconds, args.transport)
    except (DemoError, ProvisionError, RuntimeError, OSError) as exc:  # a step that could not run at all
        print(f"anc-cloud local demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the agent, the services and the broker were stopped on the way out
        print("anc-cloud local demo: interrupted", file=sys.stderr)
        return 130
    if report.problems:
        print("anc-cloud local demo: failed checks:", file=sys.stderr)
        for problem in report.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    return 0
