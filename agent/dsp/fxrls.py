"""Filtered-x RLS for a short, fast-converging controller, in the modified filtered-x structure.

A fast RLS cannot adapt on the measured error directly: e[n] reflects outputs the loop delay (two blocks
plus converters plus acoustics) ago, and the stale error destabilises it. So it adapts on the virtual error
    d^[n] = e[n] - (S^ * y)[n]          (the disturbance the mic would hear without anti-noise)
    e_v[n] = d^[n] + w . x'_vec[n]      (what the error would be had the current w been used throughout)
which has no delay in it; RLS then minimises sum lam^(n-i) e_v[i]^2 exactly (desired -d^, regressor x').
Sign convention as in `agent.dsp.fxnlms`: e = d + S * y.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from agent.dsp.fxnlms import estimated_disturbance, filtered_reference, reversed_fir
from agent.dsp.primitives import (
    FASTMATH,
    check_positive_int,
    check_range,
    default_max_trace,
    dot,
    dot_strided,
    gather_strided,
    grown_history,
    reset_inverse_correlation,
    rls_update,
    shift_history,
)
from agent.dsp.secondary_path import SecondaryPath


@njit(cache=True, fastmath=FASTMATH, inline="always")
def fxrls_adapt(
    wr: np.ndarray, p: np.ndarray, pi: np.ndarray, u: np.ndarray, fxbuf: np.ndarray, hf: int, n: int,
    dh: float, lam: float, keep: float, delta: float, max_trace: float, stride: int,
) -> float:  # fmt: skip
    """One FxRLS step on the virtual error d^ + w . x'_vec; returns that virtual error.

    The taps sit `stride` samples apart: x'_vec = [x'[n - (N-1) stride], ..., x'[n - stride], x'[n]] in wr's
    reversed order, gathered into the scratch u (N,); x'[n] at fxbuf[hf + n].
    """
    taps = wr.shape[0]
    gather_strided(u, fxbuf, hf + n - (taps - 1) * stride, stride)
    ev = dh + dot(wr, 0, u, 0, taps)
    rls_update(wr, p, pi, u, -ev, lam, keep, delta, max_trace)
    return ev


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def fxrls_block(
    wr: np.ndarray,
    p: np.ndarray,
    scratch: np.ndarray,
    sr: np.ndarray,
    delay: int,
    xbuf: np.ndarray,
    hx: int,
    fxbuf: np.ndarray,
    hf: int,
    ybuf: np.ndarray,
    hy: int,
    x: np.ndarray,
    e: np.ndarray,
    y: np.ndarray,
    lam: float,
    leakage: float,
    delta: float,
    max_trace: float,
    stride: int,
) -> None:
    """One block of FxRLS: x (B,) reference, e (B,) measured error, y (B,) anti-noise written here.

    wr (N,) reversed coefficients on a tap grid `stride` samples apart, p (N, N), scratch (2, N) (the RLS
    gain and the gathered regressor), sr (M,) reversed S^ FIR; histories xbuf (hx past), fxbuf
    (hf >= (N-1) stride past), ybuf (hy past outputs), each with room for one block; all float64.
    """
    taps = wr.shape[0]
    block = x.shape[0]
    keep = 1.0 - leakage
    pi = scratch[0]
    u = scratch[1]
    for n in range(block):
        xbuf[hx + n] = x[n]
        fxbuf[hf + n] = filtered_reference(sr, delay, xbuf, hx, n)
        yn = dot_strided(wr, xbuf, hx + n - (taps - 1) * stride, stride)
        y[n] = yn
        ybuf[hy + n] = yn
        dh = estimated_disturbance(e[n], sr, delay, ybuf, hy, n)
        fxrls_adapt(wr, p, pi, u, fxbuf, hf, n, dh, lam, keep, delta, max_trace, stride)
    shift_history(xbuf, hx, block)
    shift_history(fxbuf, hf, block)
    shift_history(ybuf, hy, block)


class FxRls:
    """Single-channel filtered-x RLS controller (short filter) using the measured `secondary`.

    `stride` spaces the taps that many samples apart (1: a plain FIR). A short RLS on a sparse tap grid
    spans a longer time, which it needs at high sample rates: 32 adjacent taps at 48 kHz see less than a
    period of a low tone, its harmonics are almost collinear over that window, and the microphone's
    self-noise then caps the best such filter at a few dB (see docs/hybrid.md).
    """

    def __init__(
        self,
        taps: int,
        secondary: SecondaryPath,
        lam: float,
        delta: float = 1e-3,
        leakage: float = 0.0,
        max_trace: float | None = None,
        max_block: int = 1024,
        stride: int = 1,
    ) -> None:
        self.taps = check_positive_int("taps", taps)
        self.stride = check_positive_int("stride", stride)
        span = (self.taps - 1) * self.stride + 1
        self.lam = check_range("lam", lam, 0.5, 1.0)
        self.delta = check_range("delta", delta, 1e-12, np.inf)
        self.leakage = check_range("leakage", leakage, 0.0, 1.0)
        self.max_trace = default_max_trace(self.taps, self.delta) if max_trace is None else float(max_trace)
        self.secondary = secondary
        self._sr = reversed_fir(secondary)
        self._delay = secondary.delay_samples
        self._hx = max(span, self._delay + secondary.taps) - 1
        self._hf = span
        self._hy = self._delay + secondary.taps - 1
        max_block = check_positive_int("max_block", max_block)
        self._wr = np.zeros(self.taps)
        self.p = np.zeros((self.taps, self.taps))
        reset_inverse_correlation(self.p, self.delta)
        self._scratch = np.zeros((2, self.taps))
        self._xbuf = np.zeros(self._hx + max_block)
        self._fxbuf = np.zeros(self._hf + max_block)
        self._ybuf = np.zeros(self._hy + max_block)

    @property
    def w(self) -> np.ndarray:
        """(taps,) float64 coefficients, natural order (w[k] multiplies x[n - k stride]); a writable view."""
        return self._wr[::-1]

    def process(self, x: np.ndarray, e: np.ndarray, y: np.ndarray) -> None:
        """x (B,) reference block, e (B,) measured error block, y (B,) anti-noise output; float64."""
        block = x.shape[0]
        if block + self._hf > self._fxbuf.shape[0]:
            self._xbuf = grown_history(self._xbuf, self._hx, block)
            self._fxbuf = grown_history(self._fxbuf, self._hf, block)
            self._ybuf = grown_history(self._ybuf, self._hy, block)
        fxrls_block(
            self._wr, self.p, self._scratch, self._sr, self._delay, self._xbuf, self._hx, self._fxbuf,
            self._hf, self._ybuf, self._hy, x, e, y, self.lam, self.leakage, self.delta, self.max_trace,
            self.stride,
        )  # fmt: skip

    def reset(self) -> None:
        self._wr[:] = 0.0
        self._xbuf[:] = 0.0
        self._fxbuf[:] = 0.0
        self._ybuf[:] = 0.0
        reset_inverse_correlation(self.p, self.delta)
