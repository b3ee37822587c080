"""Filtered-x NLMS: the feedforward ANC workhorse, leaky, with the measured secondary path.

Sign convention (the physics): the error mic hears e[n] = d[n] + (S * y)[n], the primary disturbance plus
the anti-noise y through the true secondary path S. The controller output is y[n] = w . x_vec[n]; the
filtered reference is x'[n] = (S^ * x)[n] with S^ the *measured* path (bulk delay + FIR); the update is
    w <- (1 - leakage) * w - mu * e[n] * x'_vec[n] / (eps + ||x'_vec[n]||^2).
`FxNlms` is that textbook form, adapting on the measured error (what the benchmark and the C reference
compare). It tolerates only small steps once the loop delay is long (mu well below 1/delay); the
multi-channel `controller` therefore runs the same filter in the modified structure (virtual error
d^ + w . x'_vec, see `agent.dsp.fxrls`), stable up to the usual NLMS steps. The per-sample steps here
(`filtered_reference`, `push_filtered`, `estimated_disturbance`, `fxnlms_adapt`) are shared with
`fxrls`, `hybrid` and the `controller`.

Buffer layout (see `agent.dsp.primitives`): x history `xbuf` with `hx >= max(taps, delay + M) - 1` past
samples, filtered-reference history `fxbuf` with `hf >= taps` past samples, both with room for one block.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from agent.dsp.primitives import (
    FASTMATH,
    check_positive_int,
    check_range,
    dot,
    grown_history,
    leaky_update,
    shift_history,
    sum_squares,
)
from agent.dsp.secondary_path import SecondaryPath


@njit(cache=True, fastmath=FASTMATH, inline="always")
def filtered_reference(sr: np.ndarray, delay: int, xbuf: np.ndarray, hx: int, n: int) -> float:
    """x'[n] = sum_j s[j] x[n - delay - j]; sr (M,) is the time-reversed FIR, x[n] sits at xbuf[hx + n]."""
    m = sr.shape[0]
    return dot(sr, 0, xbuf, hx + n - delay - m + 1, m)


@njit(cache=True, fastmath=FASTMATH, inline="always")
def push_filtered(fxbuf: np.ndarray, hf: int, n: int, f: float, taps: int, energy: float) -> float:
    """Store x'[n] at fxbuf[hf + n]; return the running energy of the last `taps` values (kept >= 0)."""
    fxbuf[hf + n] = f
    old = fxbuf[hf + n - taps]
    energy += f * f - old * old
    return energy if energy > 0.0 else 0.0


@njit(cache=True, fastmath=FASTMATH, inline="always")
def estimated_disturbance(e_n: float, sr: np.ndarray, delay: int, ybuf: np.ndarray, hy: int, n: int) -> float:
    """d^[n] = e[n] - (S^ * y)[n]: the error the mic would hear without anti-noise (y[n] at ybuf[hy + n])."""
    m = sr.shape[0]
    return e_n - dot(sr, 0, ybuf, hy + n - delay - m + 1, m)


@njit(cache=True, fastmath=FASTMATH, inline="always")
def fxnlms_adapt(
    wr: np.ndarray, fxbuf: np.ndarray, hf: int, n: int, err: float, energy: float, mu: float, keep: float,
    eps: float,
) -> None:  # fmt: skip
    """wr <- keep * wr - mu * err * x'_vec / (eps + energy), x'_vec the last len(wr) filtered samples."""
    taps = wr.shape[0]
    leaky_update(wr, keep, -mu * err / (eps + energy), fxbuf, hf + n - taps + 1, taps)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def fxnlms_block(
    wr: np.ndarray,
    sr: np.ndarray,
    delay: int,
    xbuf: np.ndarray,
    hx: int,
    fxbuf: np.ndarray,
    hf: int,
    energy: np.ndarray,
    x: np.ndarray,
    e: np.ndarray,
    y: np.ndarray,
    mu: float,
    leakage: float,
    eps: float,
) -> None:
    """One block of FxNLMS: x (B,) reference, e (B,) measured error, y (B,) anti-noise written here.

    wr (L,) reversed coefficients, sr (M,) reversed S^ FIR, energy (1,) running ||x'_vec||^2; float64.
    """
    taps = wr.shape[0]
    block = x.shape[0]
    keep = 1.0 - leakage
    en = energy[0]
    for n in range(block):
        xbuf[hx + n] = x[n]
        en = push_filtered(fxbuf, hf, n, filtered_reference(sr, delay, xbuf, hx, n), taps, en)
        y[n] = dot(wr, 0, xbuf, hx + n - taps + 1, taps)
        fxnlms_adapt(wr, fxbuf, hf, n, e[n], en, mu, keep, eps)
    shift_history(xbuf, hx, block)
    shift_history(fxbuf, hf, block)
    energy[0] = sum_squares(fxbuf, hf - taps, taps)


def reversed_fir(secondary: SecondaryPath) -> np.ndarray:
    """(M,) float64 time-reversed copy of the secondary-path FIR, the layout the kernels use."""
    return np.ascontiguousarray(secondary.fir[::-1], dtype=np.float64)


class FxNlms:
    """Single-channel leaky FxNLMS controller of `taps` coefficients using the measured `secondary`."""

    def __init__(
        self,
        taps: int,
        secondary: SecondaryPath,
        mu: float,
        leakage: float = 0.0,
        eps: float = 1e-8,
        max_block: int = 1024,
    ) -> None:
        self.taps = check_positive_int("taps", taps)
        self.mu = check_range("mu", mu, 0.0, 2.0)
        self.leakage = check_range("leakage", leakage, 0.0, 1.0)
        self.eps = check_range("eps", eps, 0.0, np.inf)
        self.secondary = secondary
        self._sr = reversed_fir(secondary)
        self._delay = secondary.delay_samples
        self._hx = max(self.taps, self._delay + secondary.taps) - 1
        self._hf = self.taps
        max_block = check_positive_int("max_block", max_block)
        self._wr = np.zeros(self.taps)
        self._xbuf = np.zeros(self._hx + max_block)
        self._fxbuf = np.zeros(self._hf + max_block)
        self._energy = np.zeros(1)

    @property
    def w(self) -> np.ndarray:
        """(taps,) float64 coefficients in natural order (w[k] multiplies x[n-k]); a writable view."""
        return self._wr[::-1]

    def process(self, x: np.ndarray, e: np.ndarray, y: np.ndarray) -> None:
        """x (B,) reference block, e (B,) measured error block, y (B,) anti-noise output; float64."""
        block = x.shape[0]
        if block + self._hf > self._fxbuf.shape[0]:
            self._xbuf = grown_history(self._xbuf, self._hx, block)
            self._fxbuf = grown_history(self._fxbuf, self._hf, block)
        fxnlms_block(
            self._wr, self._sr, self._delay, self._xbuf, self._hx, self._fxbuf, self._hf, self._energy,
            x, e, y, self.mu, self.leakage, self.eps,
        )  # fmt: skip

    def reset(self) -> None:
        self._wr[:] = 0.0
        self._xbuf[:] = 0.0
        self._fxbuf[:] = 0.0
        self._energy[0] = 0.0
