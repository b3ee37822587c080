"""The deterministic inputs every implementation of a kernel is timed and cross-checked on.

All arrays are float64 at 48 kHz, full scale 1.0, and whole blocks of `BLOCK_SIZE` samples:
- `x`: the reference, white Gaussian noise at -20 dBFS plus a 150 Hz tone;
- `d`: the desired signal of the system-identification kernels (NLMS, RLS), `x` through a fixed
  32-tap decaying plant plus -80 dBFS sensor noise;
- `e`: the error fed to the filtered-x kernels, which are timed open loop (no plant in the timed
  call), an independent white noise at -26 dBFS so that the coefficients wander but stay bounded;
- the secondary-path estimate: a bulk delay of two blocks plus 20 samples of converter delay plus
  2 samples of propagation, then a decaying FIR of `secondary_taps` taps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agent.bench.harness import SAMPLE_RATE_HZ

BLOCK_SIZE = 64
PLANT_TAPS = 32
CONVERTER_DELAY_SAMPLES = 20
PROPAGATION_DELAY_SAMPLES = 2


@dataclass(frozen=True)
class BenchSignals:
    x: np.ndarray  # (n,) float64 reference
    d: np.ndarray  # (n,) float64 desired signal for system identification
    e: np.ndarray  # (n,) float64 error signal for the open-loop filtered-x kernels
    secondary_delay_samples: int
    secondary_fir: np.ndarray  # (secondary_taps,) float64

    @property
    def samples(self) -> int:
        return int(self.x.size)


def make_signals(samples: int, secondary_taps: int = 128, seed: int = 0) -> BenchSignals:
    """Signals of `samples` samples (rounded up to whole blocks), the same for a given seed."""
    n = -(-samples // BLOCK_SIZE) * BLOCK_SIZE
    rng = np.random.default_rng(seed)
    t_s = np.arange(n) / SAMPLE_RATE_HZ
    x = 0.1 * rng.standard_normal(n) + 0.05 * np.sin(2 * np.pi * 150.0 * t_s)
    plant = rng.standard_normal(PLANT_TAPS) * np.exp(-np.arange(PLANT_TAPS) / 6.0)
    d = np.convolve(x, plant)[:n] + 1e-4 * rng.standard_normal(n)
    e = 0.05 * rng.standard_normal(n)
    fir = rng.standard_normal(secondary_taps) * np.exp(-np.arange(secondary_taps) / (secondary_taps / 6))
    fir /= np.linalg.norm(fir)
    delay = 2 * BLOCK_SIZE + CONVERTER_DELAY_SAMPLES + PROPAGATION_DELAY_SAMPLES
    return BenchSignals(x=x, d=d, e=e, secondary_delay_samples=delay, secondary_fir=fir)
