"""The leaky FxRLS yardstick for the C reference: `tests.support.dsp_reference.fxrls` with leakage.

Every other filter the C reference is checked against comes straight from `tests.support.dsp_reference`
(the same per-sample numpy versions the numba kernels are checked against); only the FxRLS there has no
leakage, which the C reference applies (w <- (1 - leakage) w - k e_v). Same conventions: natural tap
order, `s_hat` the full estimated secondary response with its bulk delay, arrays (T,) float64.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from tests.support.dsp_reference import regressor


def secondary_response(delay_samples: int, fir: np.ndarray) -> np.ndarray:
    """The full secondary-path estimate (delay_samples + fir.size,): a bulk delay, then the FIR."""
    return np.concatenate([np.zeros(delay_samples), fir])


def leaky_fxrls(
    x: np.ndarray, e: np.ndarray, taps: int, s_hat: np.ndarray, lam: float, delta: float, leakage: float
) -> tuple[np.ndarray, np.ndarray]:
    """Open-loop modified-structure FxRLS with leakage, P(0) = I / delta and the textbook P update:
    output y (T,) and final w (taps,). Adapts on e_v[n] = e[n] - (S^ * y)[n] + w . x'_vec[n]."""
    xf = lfilter(s_hat, [1.0], x)
    w = np.zeros(taps)
    p = np.eye(taps) / delta
    y = np.zeros_like(x)
    for n in range(x.shape[0]):
        y[n] = w @ regressor(x, n, taps)
        f = regressor(xf, n, taps)
        ev = e[n] - s_hat @ regressor(y, n, s_hat.shape[0]) + w @ f
        k = p @ f / (lam + f @ p @ f)
        w = (1.0 - leakage) * w - k * ev
        p = (p - np.outer(k, f @ p)) / lam
    return y, w
