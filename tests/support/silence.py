"""A noise source that is silent, for tests that need to hear nothing but the speaker."""

from __future__ import annotations

import numpy as np


class Silence:
    """Satisfies agent.sim.noise.NoiseSource; fills zeros."""

    spec = "silence"

    def __init__(self, sample_rate_hz: int) -> None:
        self.sample_rate_hz = sample_rate_hz

    def fill(self, out: np.ndarray) -> None:
        out[:] = 0.0
