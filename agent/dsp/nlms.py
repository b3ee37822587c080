"""Normalised LMS in system-identification form, with leakage (CMSIS `arm_lms_norm_f32` in float64).

Convention (the same as padasip's FilterNLMS):
    y[n] = w . [x[n], x[n-1], ..., x[n-N+1]],   e[n] = d[n] - y[n],
    w <- (1 - leakage) * w + mu * e[n] * x_vec / (eps + ||x_vec||^2)   (before the next sample).
The input energy ||x_vec||^2 is a running sum (newest square in, oldest out), recomputed exactly once per
block so rounding never accumulates.
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


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def nlms_block(
    wr: np.ndarray,
    xbuf: np.ndarray,
    energy: np.ndarray,
    x: np.ndarray,
    d: np.ndarray,
    y: np.ndarray,
    e: np.ndarray,
    mu: float,
    leakage: float,
    eps: float,
) -> None:
    """One block of NLMS.

    wr (N,) time-reversed coefficients; xbuf (N + Bmax,) history (x[n] at xbuf[N + n]); energy (1,) the
    running ||x_vec||^2; x, d (B,) input and desired; y, e (B,) outputs written here. All float64, B <= Bmax.
    """
    taps = wr.shape[0]
    block = x.shape[0]
    keep = 1.0 - leakage
    en = energy[0]
    for n in range(block):
        xn = x[n]
        old = xbuf[n]
        xbuf[taps + n] = xn
        en += xn * xn - old * old
        if en < 0.0:
            en = 0.0
        yn = dot(wr, 0, xbuf, n + 1, taps)
        err = d[n] - yn
        y[n] = yn
        e[n] = err
        leaky_update(wr, keep, mu * err / (eps + en), xbuf, n + 1, taps)
    shift_history(xbuf, taps, block)
    energy[0] = sum_squares(xbuf, 0, taps)


class Nlms:
    """NLMS adaptive FIR of `taps` coefficients; `process` runs one block on preallocated state."""

    def __init__(
        self, taps: int, mu: float, leakage: float = 0.0, eps: float = 1e-8, max_block: int = 1024
    ) -> None:
        self.taps = check_positive_int("taps", taps)
        self.mu = check_range("mu", mu, 0.0, 2.0)
        self.leakage = check_range("leakage", leakage, 0.0, 1.0)
        self.eps = check_range("eps", eps, 0.0, np.inf)
        self._wr = np.zeros(self.taps)
        self._xbuf = np.zeros(self.taps + check_positive_int("max_block", max_block))
        self._energy = np.zeros(1)

    @property
    def w(self) -> np.ndarray:
        """(taps,) float64 coefficients in natural order (w[k] multiplies x[n-k]); a writable view."""
        return self._wr[::-1]

    def process(self, x: np.ndarray, d: np.ndarray, y: np.ndarray, e: np.ndarray) -> None:
        """x, d: (B,) float64 input and desired; writes y (B,) output and e (B,) a priori error."""
        if x.shape[0] + self.taps > self._xbuf.shape[0]:
            self._xbuf = grown_history(self._xbuf, self.taps, x.shape[0])
        nlms_block(self._wr, self._xbuf, self._energy, x, d, y, e, self.mu, self.leakage, self.eps)

    def reset(self) -> None:
        self._wr[:] = 0.0
        self._xbuf[:] = 0.0
        self._energy[0] = 0.0
