"""A constant-memory closed loop of the controller and the simulated plant, for the soak runs.

`agent.sim.run.simulate` records every error-mic sample of a run (for its figures and plots), which for
ten minutes of two channels at 48 kHz would be about a gigabyte. The soak needs only the power of each
block, so this loop keeps just that: the same steps as `simulate` (identify through the plant, then
control with the identified path, never the true one), with an uncontrolled twin plant fed the same
noise stepping alongside so that every block has its no-control power to compare with. Figures are
computed with `agent.sim.metrics`. Simulated time, run as fast as the machine allows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agent.profiles import Profile
from agent.sim.metrics import attenuation_db
from agent.sim.noise import make_noise
from agent.sim.plant import AcousticPlant


@dataclass(frozen=True)
class LoopRun:
    """Per-block error power of one closed-loop run (after identification), and the guard counters."""

    algorithm: str
    noise: str
    block_period_s: float
    error_power: np.ndarray  # (blocks,) float64, mean square per block summed over the error mics (FS^2)
    baseline_power: np.ndarray  # (blocks,) float64, the same without control
    identification_s: float
    divergence_count: int
    nonfinite_count: int
    limiter_count: int

    def attenuation_db(self, last_s: float) -> float:
        """Uncontrolled over controlled error power in the last `last_s` s, in dB (positive: quieter)."""
        n = max(1, round(last_s / self.block_period_s))
        return attenuation_db(self.baseline_power[-n:], self.error_power[-n:])


def run_closed_loop(
    profile: Profile, algorithm: str, seconds: float, noise: str | None = None, seed: int = 0
) -> LoopRun:
    """Identify the secondary path, then control `seconds` of simulated time with `algorithm`."""
    from agent.dsp import controller as ctl_mod
    from agent.dsp.secondary_path import SecondaryPathIdentifier
    from agent.sim.run import IDENTIFICATION_LIMIT, SimulationError

    spec = noise or profile.simulation.default_noise
    controlled, uncontrolled = (AcousticPlant(profile, noise=make_noise(spec, profile)) for _ in range(2))
    ch = profile.channels
    fmt = profile.audio
    indata = np.zeros((fmt.block_size, ch.input_channels), dtype=np.float32)
    outdata = np.zeros((fmt.block_size, ch.output_channels), dtype=np.float32)
    base_in = np.zeros_like(indata)
    silence = np.zeros_like(outdata)
    errors = np.array(ch.error_mics)

    identifier = SecondaryPathIdentifier(profile, seed=seed)
    id_blocks = 0
    limit = IDENTIFICATION_LIMIT * max(1, fmt.blocks(profile.controller.probe_s))
    while not identifier.done:
        if id_blocks >= limit:
            raise SimulationError(f"secondary-path identification did not finish within {limit} blocks")
        controlled.step(outdata, indata)
        uncontrolled.step(silence, base_in)
        identifier.process(indata, outdata)
        id_blocks += 1
    settings = ctl_mod.ControllerSettings.from_profile(profile, algorithm=algorithm)
    controller = ctl_mod.Controller(profile, identifier.result(), settings)

    blocks = fmt.blocks(seconds)
    err_p = np.zeros(blocks)
    base_p = np.zeros(blocks)
    process, step, step_base = controller.process, controlled.step, uncontrolled.step
    for k in range(blocks):
        step(outdata, indata)
        step_base(silence, base_in)
        process(indata, outdata)
        err_p[k] = np.sum(np.mean(np.square(indata[:, errors], dtype=np.float64), axis=0))
        base_p[k] = np.sum(np.mean(np.square(base_in[:, errors], dtype=np.float64), axis=0))
    m = controller.metrics
    return LoopRun(
        algorithm=algorithm,
        noise=spec,
        block_period_s=fmt.block_period_s,
        error_power=err_p,
        baseline_power=base_p,
        identification_s=id_blocks * fmt.block_period_s,
        divergence_count=int(m[ctl_mod.M_DIVERGENCE_COUNT]),
        nonfinite_count=int(m[ctl_mod.M_NONFINITE_COUNT]),
        limiter_count=int(m[ctl_mod.M_LIMITER_COUNT]),
    )
