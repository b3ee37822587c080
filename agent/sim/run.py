"""The block-by-block simulation behind `anc-agent simulate`: identify, control, measure.

The device's own code runs against the simulated plant, through the same `process(indata, outdata)`
calls it makes on hardware: first `SecondaryPathIdentifier` (probe noise, NLMS fit of the secondary
path through the loop), then `Controller` with what was identified (never the true path). The same
noise (same seed) is then run through an identical plant with the speaker silent, which gives the
error the listener would hear without control; the figures compare the two.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from agent.dsp.controller import (
    M_DIVERGENCE_COUNT,
    M_LIMITER_COUNT,
    M_NONFINITE_COUNT,
    Controller,
    ControllerSettings,
)
from agent.dsp.secondary_path import IdentificationError, SecondaryPath, SecondaryPathIdentifier
from agent.profiles import Profile
from agent.sim.metrics import (
    attenuation_curve,
    attenuation_db,
    block_powers,
    convergence_time_s,
    path_error_db,
)
from agent.sim.noise import make_noise
from agent.sim.paths import AcousticPath
from agent.sim.plant import AcousticPlant

FINAL_WINDOW_S = 2.0  # attenuation is measured over the last 2 s of control (or the last half if shorter)
SMOOTHING_S = 0.1  # moving-average window of the attenuation-over-time curve
WARMUP_BLOCKS = 10  # process() timings of the first blocks (JIT dispatch, cold caches) are left out
IDENTIFICATION_LIMIT = 20  # identification may take at most this many times probe_s before giving up
POOR_IDENTIFICATION_DB = -10.0


class SimulationError(RuntimeError):
    """The simulation could not run to the end (for example identification never finished)."""


@dataclass(frozen=True)
class SimulationResult:
    """Figures of one simulated run, and the signals behind them (for the plot).

    callback_us_*: wall time of each process() call (perf_counter_ns), first WARMUP_BLOCKS left out;
    callback_cpu_us_*: the same in this thread's CPU time, which excludes preemption by other processes.
    x_realtime: audio seconds processed / wall seconds spent inside process().
    error_with / error_without: (N, C) float64 error-mic signals during control (full scale 1.0);
    curve_time_s, curve_attenuation_db: (M,) float64, the smoothed attenuation over time.
    """

    profile: str
    noise: str
    seconds: float
    identification_s: float
    sample_rate_hz: int
    block_size: int
    settings: ControllerSettings
    primary_ir: str
    secondary_ir: str
    attenuation_db: float | None
    attenuation_window_s: float
    convergence_s: float | None
    secondary_path_error_db: float
    secondary_path_error_db_per_channel: list[float]
    callback_us_p50: float
    callback_us_p99: float
    callback_us_max: float
    callback_cpu_us_p50: float
    callback_cpu_us_p99: float
    block_period_us: float
    x_realtime: float
    diverged: bool
    first_divergence_s: float | None
    divergence_count: int
    nonfinite_count: int
    limiter_count: int
    causality_margin_ms: float
    electronic_delay_ms: float
    warnings: list[str] = field(default_factory=list)
    error_with: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 1)))
    error_without: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 1)))
    curve_time_s: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    curve_attenuation_db: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))

    def figures(self) -> dict[str, Any]:
        """Every figure and setting as JSON-ready values (non-finite numbers become None)."""
        out: dict[str, Any] = {
            "attenuation_db": self.attenuation_db,
            "attenuation_window_s": self.attenuation_window_s,
            "convergence_s": self.convergence_s,
            "secondary_path_error_db": self.secondary_path_error_db,
            "callback_us_p50": self.callback_us_p50,
            "callback_us_p99": self.callback_us_p99,
            "block_period_us": self.block_period_us,
            "x_realtime": self.x_realtime,
            "diverged": self.diverged,
            "profile": self.profile,
            "noise": self.noise,
            "seconds": self.seconds,
            "identification_s": self.identification_s,
            "sample_rate_hz": self.sample_rate_hz,
            "block_size": self.block_size,
        }
        out.update(asdict(self.settings))
        out.update(
            {
                "primary_ir": self.primary_ir,
                "secondary_ir": self.secondary_ir,
                "callback_us_max": self.callback_us_max,
                "callback_cpu_us_p50": self.callback_cpu_us_p50,
                "callback_cpu_us_p99": self.callback_cpu_us_p99,
                "callback_share_p99_pct": 100.0 * self.callback_us_p99 / self.block_period_us,
                "secondary_path_error_db_per_channel": self.secondary_path_error_db_per_channel,
                "divergence_count": self.divergence_count,
                "first_divergence_s": self.first_divergence_s,
                "nonfinite_count": self.nonfinite_count,
                "limiter_count": self.limiter_count,
                "causality_margin_ms": self.causality_margin_ms,
                "electronic_delay_ms": self.electronic_delay_ms,
                "warnings": list(self.warnings),
            }
        )
        return {k: _json_number(v) for k, v in out.items()}


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_json_number(v) for v in value]
    return value


def _error_channels(indata: np.ndarray, channels: np.ndarray, dest: np.ndarray) -> None:
    dest[:] = indata[:, channels]


def run_uncontrolled(
    profile: Profile,
    noise_spec: str,
    primary: Sequence[AcousticPath],
    secondary: Sequence[AcousticPath],
    skip_blocks: int,
    blocks: int,
) -> np.ndarray:
    """The error mics with the speaker silent: (blocks * B, C) float64, after `skip_blocks` blocks."""
    plant = AcousticPlant(profile, list(primary), list(secondary), make_noise(noise_spec, profile))
    ch = profile.channels
    block = profile.audio.block_size
    outdata = np.zeros((block, ch.output_channels), np.float32)
    indata = np.zeros((block, ch.input_channels), np.float32)
    errors = np.array(ch.error_mics)
    recorded = np.zeros((blocks * block, len(errors)))
    for _ in range(skip_blocks):
        plant.step(outdata, indata)
    for k in range(blocks):
        plant.step(outdata, indata)
        _error_channels(indata, errors, recorded[k * block : (k + 1) * block])
    return recorded


def simulate(
    profile: Profile,
    *,
    seconds: float = 5.0,
    noise_spec: str | None = None,
    primary: AcousticPath | None = None,
    secondary: AcousticPath | None = None,
    settings: ControllerSettings | None = None,
    seed: int = 0,
) -> SimulationResult:
    """Run identification, then `seconds` of control, on the profile's plant (or the given paths).

    `noise_spec` defaults to the profile's default noise; `settings` to the profile's defaults.
    Raises NoiseSpecError / ValueError for bad inputs, SimulationError if identification never ends.
    """
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"seconds: {seconds} must be a positive number")
    spec = noise_spec or profile.simulation.default_noise
    settings = settings or ControllerSettings.from_profile(profile)
    plant = AcousticPlant(profile, primary, secondary, make_noise(spec, profile))
    fmt = profile.audio
    ch = profile.channels
    outdata = np.zeros((fmt.block_size, ch.output_channels), np.float32)
    indata = np.zeros((fmt.block_size, ch.input_channels), np.float32)

    identifier = SecondaryPathIdentifier(profile, seed=seed)
    ident_blocks = 0
    limit = IDENTIFICATION_LIMIT * max(1, fmt.blocks(profile.controller.probe_s))
    while not identifier.done:
        if ident_blocks >= limit:
            raise SimulationError(f"secondary-path identification did not finish within {limit} blocks")
        plant.step(outdata, indata)
        identifier.process(indata, outdata)
        ident_blocks += 1
    try:
        estimates = identifier.result()
    except IdentificationError as exc:
        raise SimulationError(f"secondary-path identification failed: {exc}") from exc

    controller = Controller(profile, estimates, settings)
    blocks = fmt.blocks(seconds)
    errors = np.array(ch.error_mics)
    with_control = np.zeros((blocks * fmt.block_size, len(errors)))
    timings_ns = np.zeros((blocks, 2), dtype=np.int64)  # [wall, this thread's CPU] per process() call
    first_trip = -1
    for k in range(blocks):
        plant.step(outdata, indata)
        c0 = time.thread_time_ns()
        t0 = time.perf_counter_ns()
        controller.process(indata, outdata)
        timings_ns[k, 0] = time.perf_counter_ns() - t0
        timings_ns[k, 1] = time.thread_time_ns() - c0
        if first_trip < 0 and controller.metrics[M_DIVERGENCE_COUNT] > 0:
            first_trip = k
        _error_channels(indata, errors, with_control[k * fmt.block_size : (k + 1) * fmt.block_size])

    without = run_uncontrolled(profile, spec, plant.primary, plant.secondary, ident_blocks, blocks)
    return _measure(
        profile, plant, spec, seconds, ident_blocks, settings, controller, estimates, timings_ns,
        with_control, without, first_trip,
    )  # fmt: skip


def _measure(
    profile: Profile,
    plant: AcousticPlant,
    spec: str,
    seconds: float,
    ident_blocks: int,
    settings: ControllerSettings,
    controller: Controller,
    estimates: list[SecondaryPath],
    timings_ns: np.ndarray,
    with_control: np.ndarray,
    without: np.ndarray,
    first_trip_block: int,
) -> SimulationResult:
    fmt = profile.audio
    p_with = block_powers(with_control, fmt.block_size)
    p_without = block_powers(without, fmt.block_size)
    final_blocks = max(1, min(round(FINAL_WINDOW_S / fmt.block_period_s), len(p_with) // 2))
    attenuation = attenuation_db(p_without[-final_blocks:], p_with[-final_blocks:])
    curve_t, curve_db = attenuation_curve(
        p_without, p_with, round(SMOOTHING_S / fmt.block_period_s), fmt.block_period_s
    )
    metrics = controller.metrics
    divergences = int(metrics[M_DIVERGENCE_COUNT])
    nonfinite = int(metrics[M_NONFINITE_COUNT])
    diverged = (
        divergences > 0 or not bool(np.all(np.isfinite(with_control))) or not math.isfinite(attenuation)
    )
    path_errors = [
        path_error_db(truth, est.impulse_response())
        for truth, est in zip(plant.true_secondary_responses(), estimates, strict=True)
    ]
    timed_us = timings_ns[min(WARMUP_BLOCKS, len(timings_ns) - 1) :].astype(np.float64) / 1e3
    timed, cpu = timed_us[:, 0], timed_us[:, 1]
    margin_ms = plant.causality_margin_s * 1e3
    first_s = "n/a" if first_trip_block < 0 else f"{first_trip_block * fmt.block_period_s:.2f} s"
    result_warnings = _warnings(
        margin_ms, diverged, divergences, first_s, nonfinite, int(metrics[M_LIMITER_COUNT]), max(path_errors)
    )
    return SimulationResult(
        profile=profile.name,
        noise=spec,
        seconds=seconds,
        identification_s=ident_blocks * fmt.block_period_s,
        sample_rate_hz=fmt.sample_rate_hz,
        block_size=fmt.block_size,
        settings=settings,
        primary_ir=plant.primary[0].origin,
        secondary_ir=plant.secondary[0].origin,
        attenuation_db=attenuation if math.isfinite(attenuation) else None,
        attenuation_window_s=final_blocks * fmt.block_period_s,
        convergence_s=convergence_time_s(curve_t, curve_db, attenuation),
        first_divergence_s=None if first_trip_block < 0 else first_trip_block * fmt.block_period_s,
        secondary_path_error_db=max(path_errors),
        secondary_path_error_db_per_channel=path_errors,
        callback_us_p50=float(np.percentile(timed, 50)),
        callback_us_p99=float(np.percentile(timed, 99)),
        callback_us_max=float(np.max(timed)),
        callback_cpu_us_p50=float(np.percentile(cpu, 50)),
        callback_cpu_us_p99=float(np.percentile(cpu, 99)),
        block_period_us=fmt.block_period_us,
        x_realtime=float(len(timed) * fmt.block_period_us / np.sum(timed)),
        diverged=diverged,
        divergence_count=divergences,
        nonfinite_count=nonfinite,
        limiter_count=int(metrics[M_LIMITER_COUNT]),
        causality_margin_ms=margin_ms,
        electronic_delay_ms=plant.electronic_delay_s * 1e3,
        warnings=result_warnings,
        error_with=with_control,
        error_without=without,
        curve_time_s=curve_t,
        curve_attenuation_db=curve_db,
    )


def _warnings(
    margin_ms: float,
    diverged: bool,
    divergences: int,
    first_s: str,
    nonfinite: int,
    limiter: int,
    path_error_db: float,
) -> list[str]:
    out = []
    if margin_ms < 0:
        out.append(
            f"causality margin is {margin_ms:.2f} ms: the anti-noise reaches the error mic after the noise, "
            "so broadband noise cannot be cancelled (tonal noise still can)"
        )
    if divergences:
        out.append(f"the divergence guard tripped {divergences} times, first at {first_s}")
    elif diverged:
        out.append("the error signal went non-finite")
    if nonfinite:
        out.append(f"{nonfinite} non-finite input samples were replaced")
    if limiter:
        out.append(f"the output limiter engaged {limiter} times")
    if path_error_db > POOR_IDENTIFICATION_DB:
        out.append(f"the secondary path was identified poorly ({path_error_db:.1f} dB error)")
    return out
