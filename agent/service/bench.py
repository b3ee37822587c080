"""Figures of the daemon's audio path: callback time, allocations, agent CPU. `python -m agent.service.bench`.

What is measured:
- `callback_figures`: the engine callback with a real Controller (FxNLMS, 256 taps by default) driven
  through a real PortAudio duplex stream (`portaudio=True`; run it with ALSA's default PCM set to `null`,
  see `tests/support/alsa.py`: unpaced, so thousands of blocks take a second) or called directly. Time is
  what the engine itself records per block (perf_counter_ns at callback entry and after the Controller),
  reported as p50/p99 in µs and as a share of the block period. Allocations: a second run under
  tracemalloc counts the memory blocks still held that were allocated with engine, ring or dsp code on the
  stack (net allocations per block), and numba's NRT statistics give the change in live NRT allocations.
  The secondary path handed to the Controller is the plant's true one (this is a timing run).
- `agent_cpu`: the whole agent in-process (engine, simulated backend paced at the real block rate,
  control thread with telemetry, log-mel features, the safety detector and the feature offload on) for
  `seconds` after start-up identification; CPU % of the process (100 = one core).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

from agent.profiles import Profile, load_profile

_OUR_CODE = ("*/agent/engine.py", "*/agent/audio/rings.py", "*/agent/dsp/*")


def _nrt_live() -> int | None:
    """Live numba NRT allocations (allocations minus frees, plus meminfos), None if stats are off."""
    from numba.core.runtime import _nrt_python as nrt

    if not nrt.memsys_stats_enabled():
        return None
    return int(
        nrt.memsys_get_stats_alloc() - nrt.memsys_get_stats_free()
        + nrt.memsys_get_stats_mi_alloc() - nrt.memsys_get_stats_mi_free()
    )  # fmt: skip


def net_allocations(
    run: Callable[[], None], warmup: Callable[[], None] | None = None
) -> tuple[int, int, int | None]:
    """Run `run()` under tracemalloc; returns the change in the number of memory blocks (and bytes) held
    that were allocated with engine, ring or dsp code on the stack, and the change in live numba NRT
    allocations. Zero means nothing accumulates per block. `warmup` (default: `run`) runs traced before
    the first snapshot, so objects that are merely replaced (a counter attribute) are traced on both sides.
    """
    enable_nrt_stats()
    tracemalloc.start(32)
    (warmup or run)()
    filters = [tracemalloc.Filter(True, pattern, all_frames=True) for pattern in _OUR_CODE]
    before = tracemalloc.take_snapshot().filter_traces(filters)
    nrt_before = _nrt_live()
    try:
        run()
    finally:
        nrt_after = _nrt_live()
        after = tracemalloc.take_snapshot().filter_traces(filters)
        tracemalloc.stop()
    # Totals, not per call site: an object replaced by a new one (a counter attribute) nets to zero.
    count = len(after.traces) - len(before.traces)
    size = sum(t.size for t in after.traces) - sum(t.size for t in before.traces)
    nrt = None if nrt_before is None or nrt_after is None else nrt_after - nrt_before
    return count, size, nrt


def enable_nrt_stats() -> None:
    from numba.core.runtime import _nrt_python as nrt

    nrt.memsys_enable_stats()


def bench_engine(profile: Profile, algorithm: str = "fxnlms", taps: int = 256) -> Any:
    """An Engine with a Controller installed, built on the plant's true secondary paths."""
    from agent.dsp.controller import (
        M_DISTURBANCE_POWER,
        M_ERROR_POWER,
        M_OUTPUT_POWER,
        M_REFERENCE_POWER,
        Controller,
    )
    from agent.dsp.secondary_path import SecondaryPath
    from agent.engine import STAGE_CONTROL, Engine, Stage
    from agent.service.settings import default_settings, merge_desired
    from agent.sim.plant import AcousticPlant

    plant = AcousticPlant(profile)
    secondary = [
        SecondaryPath.from_impulse_response(h, profile.controller.secondary_path_taps)
        for h in plant.true_secondary_responses()
    ]
    settings = merge_desired(profile, default_settings(profile), {"algorithm": algorithm, "taps": taps})
    controller = Controller(profile, secondary, settings.controller)
    engine = Engine(profile)
    index = np.array([M_ERROR_POWER, M_REFERENCE_POWER, M_OUTPUT_POWER, M_DISTURBANCE_POWER], dtype=np.int64)
    engine.install(Stage(controller, STAGE_CONTROL, controller.metrics, index))
    return engine, plant


def _run_blocks(
    engine: Any, plant: Any, blocks: int, portaudio: bool, sink: list[np.ndarray] | None = None
) -> None:
    """Drive `blocks` callbacks: through a PortAudio stream, or directly (plant in the loop). With `sink`,
    the per-block processing times (ns) are drained into it as they come (the ring holds a few seconds)."""
    if not portaudio:
        from agent.audio.base import StreamStatus

        p = engine.profile
        indata = np.zeros((p.audio.block_size, p.channels.input_channels), dtype=np.float32)
        outdata = np.zeros((p.audio.block_size, p.channels.output_channels), dtype=np.float32)
        status = StreamStatus()
        for k in range(blocks):
            engine.callback(indata, outdata, p.audio.block_size, None, status)
            plant.step(outdata, indata)
            if sink is not None and k % 1000 == 999:
                sink.append(engine.rings.drain_blocks().proc_ns)
        if sink is not None:
            sink.append(engine.rings.drain_blocks().proc_ns)
        return
    from agent.audio.sounddevice_backend import SounddeviceBackend

    backend = SounddeviceBackend(engine.profile)
    target = engine.blocks + blocks
    backend.start(engine.callback)
    try:
        callback_figures.last_latency = backend.latency  # type: ignore[attr-defined]
        deadline = time.monotonic() + 60.0
        while engine.blocks < target and time.monotonic() < deadline:
            time.sleep(0.01)
            if sink is not None:
                sink.append(engine.rings.drain_blocks().proc_ns)
    finally:
        backend.stop()
    if sink is not None:
        sink.append(engine.rings.drain_blocks().proc_ns)


def callback_figures(
    profile_name: str = "vehicle-cabin-48k",
    algorithm: str = "fxnlms",
    taps: int = 256,
    blocks: int = 20000,
    portaudio: bool = True,
) -> dict[str, Any]:
    """Callback time and allocations (see module docstring)."""
    from agent.audio.rings import C_UNEXPECTED

    profile = load_profile(profile_name)
    engine, plant = bench_engine(profile, algorithm, taps)
    period_us = profile.audio.block_period_us
    _run_blocks(engine, plant, 200, portaudio)  # warm-up: first-call costs, page faults
    engine.rings.drain_blocks()
    sink: list[np.ndarray] = []
    _run_blocks(engine, plant, blocks, portaudio, sink)
    proc_us = np.concatenate(sink) / 1e3
    timing_blocks = int(proc_us.shape[0])
    lost_blocks = engine.rings.lost_blocks

    enable_nrt_stats()
    _run_blocks(engine, plant, 200, portaudio)
    alloc_blocks = max(1000, blocks // 4)
    start_blocks = engine.blocks
    net_count, net_bytes, nrt_change = net_allocations(
        lambda: _run_blocks(engine, plant, alloc_blocks, portaudio)
    )
    done_blocks = engine.blocks - start_blocks
    latency = getattr(callback_figures, "last_latency", None)
    return {
        "path": "portaudio-alsa-null" if portaudio else "direct",
        "profile": profile.name,
        "sample_rate_hz": profile.audio.sample_rate_hz,
        "block_size": profile.audio.block_size,
        "algorithm": algorithm,
        "taps": taps,
        "controllers": profile.channels.controllers,
        "blocks_timed": timing_blocks,
        "blocks_lost_from_ring": lost_blocks,
        "block_period_us": round(period_us, 2),
        "callback_us_p50": round(float(np.percentile(proc_us, 50)), 2),
        "callback_us_p99": round(float(np.percentile(proc_us, 99)), 2),
        "callback_load_p50": round(float(np.percentile(proc_us, 50)) / period_us, 4),
        "callback_load_p99": round(float(np.percentile(proc_us, 99)) / period_us, 4),
        "blocks_allocation_checked": done_blocks,
        "net_allocations": net_count,
        "net_allocated_bytes": net_bytes,
        "allocations_per_block": round(net_count / max(done_blocks, 1), 6),
        "nrt_live_change": nrt_change,
        "callback_faults": engine.counter(C_UNEXPECTED),
        "stream_latency_s": None if latency is None or not portaudio else [latency.input_s, latency.output_s],
    }


def agent_cpu(profile_name: str, seconds: float = 10.0) -> dict[str, Any]:
    """CPU of the in-process agent on the paced simulated backend (see module docstring)."""
    from agent.audio.simulated import SimulatedBackend
    from agent.engine import STAGE_CONTROL, Engine
    from agent.service.control import ControlService
    from agent.service.daemon import tune_interpreter
    from agent.service.settings import default_settings

    tune_interpreter()
    profile = load_profile(profile_name)
    engine = Engine(profile)
    settings = default_settings(profile, telemetry_interval_s=1.0, offload=True)
    records: list[dict[str, Any]] = []

    class Collect:
        def telemetry(self, record: dict[str, Any]) -> None:
            records.append(record)

        def event(self, record: dict[str, Any]) -> None:
            return None

        def features(self, record: dict[str, Any]) -> None:
            return None

    control = ControlService(profile, engine, settings, uplink=Collect(), safety_enabled=True)
    control.prepare()
    backend = SimulatedBackend(profile, paced=True)
    backend.start(engine.callback)
    control.start()
    try:
        deadline = time.monotonic() + 60.0
        while engine.stage.code != STAGE_CONTROL and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)
        cpu0, wall0, blocks0 = time.process_time(), time.monotonic(), engine.blocks
        time.sleep(seconds)
        cpu1, wall1, blocks1 = time.process_time(), time.monotonic(), engine.blocks
        threads = threading.active_count()
    finally:
        control.stop()
        backend.stop()
    last = records[-1] if records else {}
    return {
        "profile": profile.name,
        "seconds": round(wall1 - wall0, 2),
        "cpu_pct": round(100.0 * (cpu1 - cpu0) / (wall1 - wall0), 2),
        "cpu_budget_pct": profile.cpu_budget_pct,
        "blocks_per_s": round((blocks1 - blocks0) / (wall1 - wall0), 1),
        "expected_blocks_per_s": round(profile.audio.sample_rate_hz / profile.audio.block_size, 1),
        "attenuation_db": last.get("attenuation_db"),
        "callback_us_p50": last.get("callback_us_p50"),
        "callback_us_p99": last.get("callback_us_p99"),
        "callback_us_p99_max_over_intervals": max((r.get("callback_us_p99") or 0.0) for r in records[-10:])
        if records
        else None,
        "late_reanchors": backend.pump.late_events,
        "divergence_count": last.get("divergence_count"),
        "threads": threads,
    }


def startup_times(profile_name: str = "hvac-duct-16k", work_dir: str | None = None) -> dict[str, Any]:
    """Seconds from `anc-agent run` to READY=1 (the first processed block) and to the first STATUS= that
    reports the controller running: cold (empty numba cache, no checkpoint: compiles, identifies the
    secondary path, compiles the controller) and warm (cache and checkpoint of the cold run)."""
    import os
    import signal
    import socket
    import subprocess
    import tempfile
    from pathlib import Path

    import yaml

    base = Path(work_dir or tempfile.mkdtemp(prefix="anc-startup-"))
    state = base / "state"
    config = base / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {"profile": profile_name, "backend": "simulated", "state_dir": str(state), "log_level": "warning"}
        )
    )
    out: dict[str, Any] = {"profile": profile_name}
    for label in ("cold", "warm"):
        sock_path = str(base / f"notify-{label}")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(sock_path)
            sock.settimeout(1.0)
            env = dict(os.environ, NOTIFY_SOCKET=sock_path, NUMBA_CACHE_DIR=str(base / "numba-cache"))
            t0 = time.monotonic()
            proc = subprocess.Popen(
                [sys.executable, "-m", "agent.cli", "run", "--config", str(config)],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            ready_s = control_s = None
            while control_s is None and time.monotonic() - t0 < 120 and proc.poll() is None:
                try:
                    msg = sock.recv(4096).decode().split("\n")
                except TimeoutError:
                    continue
                if ready_s is None and "READY=1" in msg:
                    ready_s = time.monotonic() - t0
                if any(m.startswith("STATUS=") and "stage=control" in m for m in msg):
                    control_s = time.monotonic() - t0
            proc.send_signal(signal.SIGTERM)
            t_stop = time.monotonic()
            err = proc.communicate(timeout=30)[1]
            out[f"{label}_ready_s"] = None if ready_s is None else round(ready_s, 2)
            out[f"{label}_controller_s"] = None if control_s is None else round(control_s, 2)
            out[f"{label}_stop_s"] = round(time.monotonic() - t_stop, 2)
            if ready_s is None:
                out[f"{label}_error"] = err[-500:]
    return out


def run(quick: bool = False, portaudio: bool = True) -> dict[str, Any]:
    """Every figure: callback (PortAudio on ALSA null and direct) and agent CPU per profile."""
    from agent.profiles import available_profiles

    blocks = 3000 if quick else 20000
    out: dict[str, Any] = {"callback": []}
    if portaudio:
        out["callback"].append(callback_figures(blocks=blocks, portaudio=True))
    out["callback"].append(callback_figures(blocks=blocks, portaudio=False))
    out["agent_cpu"] = [agent_cpu(name, 2.0 if quick else 10.0) for name in available_profiles()]
    out["startup"] = startup_times()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agent.service.bench", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="fewer blocks, 2 s per profile")
    parser.add_argument("--no-portaudio", action="store_true", help="skip the PortAudio stream")
    args = parser.parse_args(argv)
    print(json.dumps(run(quick=args.quick, portaudio=not args.no_portaudio), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
