"""Straightforward per-sample numpy versions of the adaptive filters, the yardstick for the C reference.

Written for clarity, not speed: every sample builds its regressor by slicing a zero-padded copy of
the whole signal (index n of the signal is index n + pad of the padded copy) and applies the
textbook update. The conventions are the DSP contract's (see `agent/bench/reference.c`).
All arrays are (n,) float64; the functions return the outputs and the final coefficients.
"""

from __future__ import annotations

import numpy as np


def _regressor(padded: np.ndarray, n: int, pad: int, taps: int, lag: int = 0) -> np.ndarray:
    """[x[n-lag], x[n-lag-1], ..., x[n-lag-taps+1]] from a signal zero-padded by `pad` in front."""
    end = n - lag + pad + 1
    return padded[end - taps : end][::-1]


def nlms(
    x: np.ndarray, d: np.ndarray, taps: int, mu: float, leakage: float = 0.0, eps: float = 1e-8
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NLMS system identification; returns y, e (n,) and w (taps,)."""
    xp = np.concatenate([np.zeros(taps), x])
    w = np.zeros(taps)
    y, e = np.zeros_like(x), np.zeros_like(x)
    for n in range(x.size):
        u = _regressor(xp, n, taps, taps)
        y[n] = w @ u
        e[n] = d[n] - y[n]
        w = (1.0 - leakage) * w + mu * e[n] * u / (eps + u @ u)
    return y, e, w


def rls(
    x: np.ndarray, d: np.ndarray, taps: int, lam: float, delta: float = 1e-2, leakage: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exponentially weighted RLS, P(0) = I / delta; returns y, e (n,) and w (taps,)."""
    xp = np.concatenate([np.zeros(taps), x])
    w = np.zeros(taps)
    p = np.eye(taps) / delta
    y, e = np.zeros_like(x), np.zeros_like(x)
    for n in range(x.size):
        u = _regressor(xp, n, taps, taps)
        y[n] = w @ u
        e[n] = d[n] - y[n]
        k = p @ u / (lam + u @ p @ u)
        w = (1.0 - leakage) * w + k * e[n]
        p = (p - np.outer(k, u @ p)) / lam
    return y, e, w


def filtered_reference(x: np.ndarray, delay_samples: int, fir: np.ndarray) -> np.ndarray:
    """x'[n] = sum_j fir[j] x[n - delay - j]: the reference through the secondary-path estimate."""
    full = np.concatenate([np.zeros(delay_samples), fir])
    return np.convolve(x, full)[: x.size]


def fxnlms(
    x: np.ndarray,
    e: np.ndarray,
    taps: int,
    delay_samples: int,
    fir: np.ndarray,
    mu: float,
    leakage: float = 0.0,
    eps: float = 1e-8,
) -> tuple[np.ndarray, np.ndarray]:
    """Open-loop FxNLMS with a given error signal; returns the anti-noise y (n,) and w (taps,)."""
    xf = filtered_reference(x, delay_samples, fir)
    xp = np.concatenate([np.zeros(taps), x])
    fp = np.concatenate([np.zeros(taps), xf])
    w = np.zeros(taps)
    y = np.zeros_like(x)
    for n in range(x.size):
        u = _regressor(xp, n, taps, taps)
        uf = _regressor(fp, n, taps, taps)
        y[n] = w @ u
        w = (1.0 - leakage) * w - mu * e[n] * uf / (eps + uf @ uf)
    return y, w


def fxrls(
    x: np.ndarray,
    e: np.ndarray,
    taps: int,
    delay_samples: int,
    fir: np.ndarray,
    lam: float,
    delta: float = 1e-2,
    leakage: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Open-loop FxRLS (modified filtered-x) with a given error; returns the anti-noise y (n,) and w (taps,).

    Adapts on the virtual error e_v[n] = e[n] - (S^ * y)[n] + w . x'_vec[n].
    """
    xf = filtered_reference(x, delay_samples, fir)
    s_full = np.concatenate([np.zeros(delay_samples), fir])
    xp = np.concatenate([np.zeros(taps), x])
    fp = np.concatenate([np.zeros(taps), xf])
    w = np.zeros(taps)
    p = np.eye(taps) / delta
    y = np.zeros_like(x)
    for n in range(x.size):
        u = _regressor(xp, n, taps, taps)
        uf = _regressor(fp, n, taps, taps)
        y[n] = w @ u
        lags = np.arange(min(n + 1, s_full.size))
        ev = e[n] - s_full[lags] @ y[n - lags] + w @ uf
        k = p @ uf / (lam + uf @ p @ uf)
        w = (1.0 - leakage) * w - k * ev
        p = (p - np.outer(k, uf @ p)) / lam
    return y, w
