"""Obvious, sample-by-sample numpy versions of the adaptive filters, for checking the numba kernels.

Written straight from the textbook equations in natural tap order (w[k] multiplies x[n-k]), with no
buffers, no running sums and no tricks, so a disagreement points at the kernel.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter


def regressor(x: np.ndarray, n: int, taps: int) -> np.ndarray:
    """[x[n], x[n-1], ..., x[n-taps+1]] with zeros before the start: (taps,) float64."""
    u = np.zeros(taps)
    k = min(taps, n + 1)
    u[:k] = x[n - k + 1 : n + 1][::-1]
    return u


def nlms(
    x: np.ndarray, d: np.ndarray, taps: int, mu: float, eps: float, leakage: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """y, e (T,) and the final w (taps,) of NLMS system identification."""
    w = np.zeros(taps)
    y = np.zeros_like(x)
    e = np.zeros_like(x)
    for n in range(x.shape[0]):
        u = regressor(x, n, taps)
        y[n] = w @ u
        e[n] = d[n] - y[n]
        w = (1.0 - leakage) * w + mu * e[n] * u / (eps + u @ u)
    return y, e, w


def rls(
    x: np.ndarray,
    d: np.ndarray,
    taps: int,
    lam: float,
    delta: float,
    leakage: float = 0.0,
    textbook: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """y, e (T,), final w (taps,) and P (taps, taps) of exponentially weighted RLS, P0 = I / delta.

    textbook=True uses P <- (P - k (u^T P)) / lam, the form that loses symmetry; otherwise
    P <- (P - (P u)(P u)^T / (lam + u^T P u)) / lam.
    """
    w = np.zeros(taps)
    p = np.eye(taps) / delta
    y = np.zeros_like(x)
    e = np.zeros_like(x)
    for n in range(x.shape[0]):
        u = regressor(x, n, taps)
        y[n] = w @ u
        e[n] = d[n] - y[n]
        pu = p @ u
        denom = lam + u @ pu
        k = pu / denom
        w = (1.0 - leakage) * w + k * e[n]
        update = np.outer(k, u @ p) if textbook else np.outer(pu, pu) / denom
        p = (p - update) / lam
    return y, e, w, p


def fxnlms(
    x: np.ndarray, e: np.ndarray, taps: int, s_hat: np.ndarray, mu: float, eps: float, leakage: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Open-loop FxNLMS on given reference x and error e: output y (T,) and final w (taps,).

    s_hat is the full estimated secondary response (bulk delay included)."""
    xf = lfilter(s_hat, [1.0], x)
    w = np.zeros(taps)
    y = np.zeros_like(x)
    for n in range(x.shape[0]):
        y[n] = w @ regressor(x, n, taps)
        f = regressor(xf, n, taps)
        w = (1.0 - leakage) * w - mu * e[n] * f / (eps + f @ f)
    return y, w


def fxrls(
    x: np.ndarray, e: np.ndarray, taps: int, s_hat: np.ndarray, lam: float, delta: float
) -> tuple[np.ndarray, np.ndarray]:
    """Open-loop modified-structure FxRLS: output y (T,) and final w (taps,)."""
    xf = lfilter(s_hat, [1.0], x)
    w = np.zeros(taps)
    p = np.eye(taps) / delta
    y = np.zeros_like(x)
    for n in range(x.shape[0]):
        y[n] = w @ regressor(x, n, taps)
        dh = e[n] - s_hat @ regressor(y, n, s_hat.shape[0])
        f = regressor(xf, n, taps)
        ev = dh + w @ f
        pf = p @ f
        denom = lam + f @ pf
        w = w - pf / denom * ev
        p = (p - np.outer(pf, pf) / denom) / lam
    return y, w


def hybrid(
    x: np.ndarray,
    e: np.ndarray,
    fx_taps: int,
    rls_taps: int,
    s_hat: np.ndarray,
    mu: float,
    lam: float,
    delta: float,
    eps: float,
    mu_mix: float,
    leakage: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Open-loop hybrid (see agent/dsp/hybrid.py): output y (T,), final w1, w2 and mixing weight."""
    xf = lfilter(s_hat, [1.0], x)
    w1 = np.zeros(fx_taps)
    w2 = np.zeros(rls_taps)
    p = np.eye(rls_taps) / delta
    a, mlam, pw = 0.0, 0.5, 0.0
    y = np.zeros_like(x)
    for n in range(x.shape[0]):
        y[n] = mlam * (w1 @ regressor(x, n, fx_taps)) + (1 - mlam) * (w2 @ regressor(x, n, rls_taps))
        dh = e[n] - s_hat @ regressor(y, n, s_hat.shape[0])
        f1 = regressor(xf, n, fx_taps)
        f2 = regressor(xf, n, rls_taps)
        v1, v2 = w1 @ f1, w2 @ f2
        ec = dh + mlam * v1 + (1 - mlam) * v2
        pw = 0.9 * pw + 0.1 * (v1 - v2) ** 2
        a = float(np.clip(a - mu_mix * ec * (v1 - v2) * mlam * (1 - mlam) / (1e-12 + pw), -4.0, 4.0))
        mlam = 1.0 / (1.0 + np.exp(-a))
        w1 = (1.0 - leakage) * w1 - mu * (dh + v1) * f1 / (eps + f1 @ f1)
        pf = p @ f2
        denom = lam + f2 @ pf
        w2 = w2 - pf / denom * (dh + v2)
        p = (p - np.outer(pf, pf) / denom) / lam
    return y, w1, w2, mlam
