"""Exponentially weighted, regularised RLS in system-identification form, with leakage.

Convention (the same as padasip's FilterRLS with mu = lam and eps = delta):
    y[n] = w . x_vec[n],  e[n] = d[n] - y[n] (a priori),  k = P x_vec / (lam + x_vec^T P x_vec),
    w <- (1 - leakage) * w + k e[n],  P <- (P - k x_vec^T P) / lam,  P0 = I / delta.
P is kept exactly symmetric (upper triangle updated and mirrored) and its trace is capped, so the filter
runs for hours; see `agent.dsp.primitives.rls_update`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from agent.dsp.primitives import (
    FASTMATH,
    check_positive_int,
    check_range,
    default_max_trace,
    dot,
    grown_history,
    reset_inverse_correlation,
    rls_update,
    shift_history,
)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def rls_block(
    wr: np.ndarray,
    p: np.ndarray,
    pi: np.ndarray,
    xbuf: np.ndarray,
    x: np.ndarray,
    d: np.ndarray,
    y: np.ndarray,
    e: np.ndarray,
    lam: float,
    leakage: float,
    delta: float,
    max_trace: float,
) -> None:
    """One block of RLS.

    wr (N,) time-reversed coefficients; p (N, N) inverse correlation (in wr's order); pi (N,) scratch;
    xbuf (N - 1 + Bmax,) history (x[n] at xbuf[N - 1 + n]); x, d (B,) input and desired; y, e (B,) outputs.
    """
    taps = wr.shape[0]
    hist = taps - 1
    block = x.shape[0]
    keep = 1.0 - leakage
    for n in range(block):
        xbuf[hist + n] = x[n]
        yn = dot(wr, 0, xbuf, n, taps)
        err = d[n] - yn
        y[n] = yn
        e[n] = err
        rls_update(wr, p, pi, xbuf[n : n + taps], err, lam, keep, delta, max_trace)
    shift_history(xbuf, hist, block)


class Rls:
    """RLS adaptive FIR of `taps` coefficients; `process` runs one block on preallocated state."""

    def __init__(
        self,
        taps: int,
        lam: float,
        delta: float = 1e-2,
        leakage: float = 0.0,
        max_trace: float | None = None,
        max_block: int = 1024,
    ) -> None:
        self.taps = check_positive_int("taps", taps)
        self.lam = check_range("lam", lam, 0.5, 1.0)
        self.delta = check_range("delta", delta, 1e-12, np.inf)
        self.leakage = check_range("leakage", leakage, 0.0, 1.0)
        self.max_trace = default_max_trace(self.taps, self.delta) if max_trace is None else float(max_trace)
        self._wr = np.zeros(self.taps)
        self.p = np.zeros((self.taps, self.taps))
        """(taps, taps) float64 inverse correlation estimate, indexed like the time-reversed coefficients."""
        reset_inverse_correlation(self.p, self.delta)
        self._pi = np.zeros(self.taps)
        self._xbuf = np.zeros(self.taps - 1 + check_positive_int("max_block", max_block))

    @property
    def w(self) -> np.ndarray:
        """(taps,) float64 coefficients in natural order (w[k] multiplies x[n-k]); a writable view."""
        return self._wr[::-1]

    def process(self, x: np.ndarray, d: np.ndarray, y: np.ndarray, e: np.ndarray) -> None:
        """x, d: (B,) float64 input and desired; writes y (B,) output and e (B,) a priori error."""
        if x.shape[0] + self.taps - 1 > self._xbuf.shape[0]:
            self._xbuf = grown_history(self._xbuf, self.taps - 1, x.shape[0])
        rls_block(
            self._wr, self.p, self._pi, self._xbuf, x, d, y, e,
            self.lam, self.leakage, self.delta, self.max_trace,
        )  # fmt: skip

    def reset(self) -> None:
        self._wr[:] = 0.0
        self._xbuf[:] = 0.0
        reset_inverse_correlation(self.p, self.delta)
