"""The controller in closed loop with the simulated plant, for the learning curves and the soak runs.

One run: the plant (`agent.sim.plant.AcousticPlant`) and the secondary-path identifier run together
until identification is done, then the controller (`agent.dsp.controller.Controller`, with the
identified path, never the true one) runs for `seconds` of simulated time. A second plant with the
same noise and a silent speaker runs alongside, so every block has its uncontrolled error power to
compare with: the attenuation is a ratio of powers of the same noise samples. The loop is
simulated time, run as fast as the machine allows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agent.profiles import Profile
from agent.sim.noise import make_noise
from agent.sim.plant import AcousticPlant

# The soak's "diverged" verdict: error power this far above the uncontrolled power, in dB.
DIVERGED_ABOVE_BASELINE_DB = 6.0


@dataclass(frozen=True)
class LoopRun:
    """Per-block error power of one closed-loop run (after identification), and the guard counters."""

    algorithm: str
    noise: str
    block_period_s: float
    error_power: np.ndarray  # (blocks,) float64, mean square over the block and the error mics (FS^2)
    baseline_power: np.ndarray  # (blocks,) float64, the same without control
    identification_s: float
    divergence_count: int
    nonfinite_count: int
    limiter_count: int

    def smoothed_db(self, tau_s: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
        """(controlled, uncontrolled) error power in dBFS, one-pole smoothed with time constant tau_s."""
        a = float(np.exp(-self.block_period_s / tau_s))
        return _db(_smooth(self.error_power, a)), _db(_smooth(self.baseline_power, a))

    def attenuation_db(self, last_s: float) -> float:
        """Uncontrolled over controlled error power in the last `last_s` s, in dB (positive: quieter)."""
        n = max(1, round(last_s / self.block_period_s))
        return float(
            10 * np.log10(np.mean(self.baseline_power[-n:]) / max(np.mean(self.error_power[-n:]), 1e-30))
        )

    def convergence_s(self, tau_s: float = 0.1, share: float = 0.9) -> float | None:
        """Seconds from control start until the smoothed attenuation first reaches `share` of its final."""
        ctl, base = self.smoothed_db(tau_s)
        att = base - ctl
        final = float(np.mean(att[-max(1, len(att) // 10) :]))
        if final <= 0:
            return None
        reached = np.flatnonzero(att >= share * final)
        return float(reached[0] * self.block_period_s) if reached.size else None


def _smooth(p: np.ndarray, a: float) -> np.ndarray:
    from scipy.signal import lfilter

    zi = np.array([a * p[0]]) if p.size else None
    return lfilter([1 - a], [1, -a], p, zi=zi)[0] if p.size else p


def _db(p: np.ndarray) -> np.ndarray:
    return 10 * np.log10(np.maximum(p, 1e-30))


def run_closed_loop(
    profile: Profile, algorithm: str, seconds: float, noise: str | None = None, seed: int = 0
) -> LoopRun:
    """Identify the secondary path, then control `seconds` of simulated time with `algorithm`."""
    from agent.dsp import controller as ctl_mod
    from agent.dsp.secondary_path import SecondaryPathIdentifier

    spec = noise or profile.simulation.default_noise
    plants = [
        AcousticPlant(profile, noise=make_noise(spec, profile, seed=seed), seed=seed + 1) for _ in range(2)
    ]
    controlled, uncontrolled = plants
    ch = profile.channels
    block = profile.audio.block_size
    indata = np.zeros((block, ch.input_channels), dtype=np.float32)
    outdata = np.zeros((block, ch.output_channels), dtype=np.float32)
    base_in = np.zeros_like(indata)
    silence = np.zeros_like(outdata)
    errors = list(ch.error_mics)

    identifier = SecondaryPathIdentifier(profile, seed=seed)
    id_blocks = 0
    while not identifier.done:
        controlled.step(outdata, indata)
        uncontrolled.step(silence, base_in)
        identifier.process(indata, outdata)
        id_blocks += 1
    settings = ctl_mod.ControllerSettings.from_profile(profile, algorithm=algorithm)
    controller = ctl_mod.Controller(profile, identifier.result(), settings)
    outdata[:] = 0.0

    blocks = profile.audio.blocks(seconds)
    err_p = np.zeros(blocks)
    base_p = np.zeros(blocks)
    process, step, step_base = controller.process, controlled.step, uncontrolled.step
    for k in range(blocks):
        step(outdata, indata)
        step_base(silence, base_in)
        process(indata, outdata)
        e = indata[:, errors]
        b = base_in[:, errors]
        err_p[k] = float(np.mean(np.square(e, dtype=np.float64)))
        base_p[k] = float(np.mean(np.square(b, dtype=np.float64)))
    m = controller.metrics
    return LoopRun(
        algorithm=algorithm,
        noise=spec,
        block_period_s=profile.audio.block_period_s,
        error_power=err_p,
        baseline_power=base_p,
        identification_s=id_blocks * profile.audio.block_period_s,
        divergence_count=int(m[ctl_mod.M_DIVERGENCE_COUNT]),
        nonfinite_count=int(m[ctl_mod.M_NONFINITE_COUNT]),
        limiter_count=int(m[ctl_mod.M_LIMITER_COUNT]),
    )
