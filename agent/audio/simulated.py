"""The simulated backend: the acoustic plant of `agent.sim.plant` driven block by block from a thread.

The callback's output block goes into `AcousticPlant.step`, which returns the next mic block, so the
engine runs the same loop (with the same two-block loop delay) it runs on hardware. Paced, blocks come at
the profile's real block rate (a daemon on a machine without a sound card); unpaced, as fast as possible
(tests and benchmarks). `stall(True)` stops delivering blocks, which is how the watchdog is tested.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from agent.audio.pump import BlockPump, PumpedBackend
from agent.profiles import Profile


class Plant(Protocol):
    def step(self, outdata: np.ndarray, indata: np.ndarray) -> None: ...


def build_plant(profile: Profile, noise: str | None = None) -> Plant:
    """The profile's built-in plant, with `noise` (a spec such as `tonal:150`) replacing its default."""
    from agent.sim.plant import AcousticPlant

    if noise is None:
        return AcousticPlant(profile)
    from agent.sim.noise import make_noise

    return AcousticPlant(profile, noise=make_noise(noise, profile))


class SimulatedBackend(PumpedBackend):
    """AudioBackend over an acoustic plant (see module docstring)."""

    name = "simulated"

    def __init__(self, profile: Profile, plant: Plant | None = None, paced: bool = True, **_: Any) -> None:
        self.profile = profile
        self.plant = plant if plant is not None else build_plant(profile)
        ch = profile.channels

        def source(outdata: np.ndarray, indata: np.ndarray) -> bool:
            self.plant.step(outdata, indata)
            return True

        self._pump = BlockPump(
            profile.audio, ch.input_channels, ch.output_channels, source, paced=paced, name="audio-sim"
        )
