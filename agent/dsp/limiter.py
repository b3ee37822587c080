"""Output limiter: instant attack, smooth (one-pole) release, then a hard clip at the limit.

The limit is `profile.output_limit_dbfs` (0 dBFS = full scale 1.0). The gain drops at once to whatever keeps
the current sample at the limit, and recovers towards 1 with a time constant of `release_s`; the final
clip (at the largest float32 not above the limit) guarantees the output never exceeds it, even in the
float32 buffer handed to the sound card. Non-finite samples come out as 0.
"""

from __future__ import annotations

import numpy as np
from numba import njit

DEFAULT_RELEASE_S = 0.05


def limit_amplitude(limit_dbfs: float) -> float:
    """The largest float32-representable amplitude not above `limit_dbfs` (as a Python float)."""
    amp = np.float32(10.0 ** (limit_dbfs / 20.0))
    if float(amp) > 10.0 ** (limit_dbfs / 20.0):
        amp = np.nextafter(amp, np.float32(0.0))
    return float(amp)


def release_coefficient(release_s: float, sample_rate_hz: int) -> float:
    """Per-sample one-pole coefficient for a release time constant of `release_s` seconds."""
    return float(1.0 - np.exp(-1.0 / (release_s * sample_rate_hz)))


@njit(cache=True, inline="always")
def limit_sample(v: float, gain: np.ndarray, c: int, limit: float, release: float) -> float:
    """Limit one sample of channel c; gain (C,) float64 holds each channel's current gain (<= 1).

    Returns the limited sample (0 for a non-finite one); callers count limiting as |v| > limit.
    """
    if not np.isfinite(v):
        return 0.0
    a = abs(v)
    target = limit / a if a > limit else 1.0
    g = gain[c]
    if target < g:
        g = target
    else:
        g += (target - g) * release
    gain[c] = g
    out = v * g
    if out > limit:
        out = limit
    elif out < -limit:
        out = -limit
    return out


@njit(cache=True, nogil=True)
def limit_block(y: np.ndarray, gain: np.ndarray, limit: float, release: float) -> int:
    """Limit a (B, C) float array in place (column c uses gain[c]); returns the samples above the limit."""
    count = 0
    for n in range(y.shape[0]):
        for c in range(y.shape[1]):
            v = y[n, c]
            if not (abs(v) <= limit):
                count += 1
            y[n, c] = limit_sample(v, gain, c, limit, release)
    return count


class Limiter:
    """A multi-channel limiter at `limit_dbfs`; `process(y)` limits a (B, C) float block in place."""

    def __init__(
        self, limit_dbfs: float, channels: int, sample_rate_hz: int, release_s: float = DEFAULT_RELEASE_S
    ) -> None:
        if not (limit_dbfs <= 0.0):
            raise ValueError(f"limit_dbfs: {limit_dbfs} must be <= 0")
        if release_s <= 0:
            raise ValueError(f"release_s: {release_s} must be > 0")
        self.limit = limit_amplitude(limit_dbfs)
        self.release = release_coefficient(release_s, sample_rate_hz)
        self.gain = np.ones(channels)
        self.count = 0

    def process(self, y: np.ndarray) -> None:
        self.count += limit_block(y, self.gain, self.limit, self.release)
