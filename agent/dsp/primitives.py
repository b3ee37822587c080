"""Per-sample building blocks shared by every adaptive-filter kernel in `agent.dsp`.

Layout conventions (the CMSIS-DSP ones, so every inner loop runs forwards over contiguous memory):

- Coefficients are stored time-reversed: `wr[i]` multiplies `x[n - (taps - 1 - i)]`, so the natural-order
  vector is `wr[::-1]` (`w[k]` multiplies `x[n - k]`). The public `.w` of each filter class is that
  reversed view.
- A history buffer holds `hist` past samples followed by room for one block: sample `x[n]` of the current
  block (n = 0 .. B-1) lives at `buf[hist + n]`. After the block, `shift_history` moves the last `hist`
  samples to the front once (one memmove per block, never one per sample).

Numba's on-disk cache keys a compiled function on its own source file only: kernels elsewhere inline
these helpers, so after editing this module delete `agent/dsp/__pycache__/*.nbi` and `*.nbc` (or touch
the modules that use it), or stale machine code keeps running.

All arrays are float64 unless stated. Nothing here allocates. The dot products and updates are compiled
with reassociation allowed (so they vectorise) but keep NaN/Inf semantics, which the guards rely on.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Vectorisation-friendly fast-math flags; "nnan"/"ninf" are left out so non-finite checks stay honest.
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


@njit(cache=True, fastmath=FASTMATH, inline="always")
def dot(a: np.ndarray, a0: int, b: np.ndarray, b0: int, n: int) -> float:
    """sum_i a[a0 + i] * b[b0 + i] for i in [0, n)."""
    av = a[a0 : a0 + n]
    bv = b[b0 : b0 + n]
    acc = 0.0
    for i in range(n):
        acc += av[i] * bv[i]
    return acc


@njit(cache=True, fastmath=FASTMATH, inline="always")
def dot_strided(a: np.ndarray, b: np.ndarray, b0: int, stride: int) -> float:
    """sum_i a[i] * b[b0 + i * stride] for i in [0, len(a)): a filter on a tap grid `stride` samples apart."""
    n = a.shape[0]
    acc = 0.0
    for i in range(n):
        acc += a[i] * b[b0 + i * stride]
    return acc


@njit(cache=True, inline="always")
def gather_strided(dst: np.ndarray, b: np.ndarray, b0: int, stride: int) -> None:
    """dst[i] = b[b0 + i * stride] for i in [0, len(dst)): a strided regressor made contiguous."""
    for i in range(dst.shape[0]):
        dst[i] = b[b0 + i * stride]


@njit(cache=True, fastmath=FASTMATH, inline="always")
def sum_squares(a: np.ndarray, a0: int, n: int) -> float:
    """sum_i a[a0 + i]**2 for i in [0, n)."""
    av = a[a0 : a0 + n]
    acc = 0.0
    for i in range(n):
        v = av[i]
        acc += v * v
    return acc


@njit(cache=True, fastmath=FASTMATH, inline="always")
def leaky_update(wr: np.ndarray, keep: float, gain: float, buf: np.ndarray, b0: int, n: int) -> None:
    """wr[i] = keep * wr[i] + gain * buf[b0 + i] for i in [0, n): the (leaky) LMS coefficient step."""
    u = buf[b0 : b0 + n]
    if keep == 1.0:
        for i in range(n):
            wr[i] += gain * u[i]
    else:
        for i in range(n):
            wr[i] = keep * wr[i] + gain * u[i]


@njit(cache=True, inline="always")
def shift_history(buf: np.ndarray, hist: int, block: int) -> None:
    """Move the newest `hist` samples (ending at buf[hist + block - 1]) to buf[0:hist]; once per block."""
    src = buf[block : block + hist]
    for i in range(hist):
        buf[i] = src[i]


@njit(cache=True, inline="always")
def reset_inverse_correlation(p: np.ndarray, delta: float) -> None:
    """P = I / delta: the RLS prior (an uninformed, regularised start). p is (N, N) float64."""
    n = p.shape[0]
    for i in range(n):
        for j in range(n):
            p[i, j] = 0.0
        p[i, i] = 1.0 / delta


@njit(cache=True, fastmath=FASTMATH, inline="always")
def rls_update(
    wr: np.ndarray,
    p: np.ndarray,
    pi: np.ndarray,
    u: np.ndarray,
    err: float,
    lam: float,
    keep: float,
    delta: float,
    max_trace: float,
) -> None:
    """One exponentially weighted RLS step on the regressor u (N,) (in `wr`'s reversed order, contiguous).

    With the a priori error `err` (desired minus wr . u):
        pi = P u;  k = pi / (lam + u . pi);  wr = keep * wr + k * err;
        P = (P - pi pi^T / (lam + u . pi)) / lam
    P's update is written as P - q q^T with q = pi / sqrt(lam + u . pi), so P stays exactly symmetric for ever
    (the textbook `P - k (u^T P)` form drifts away from symmetry and diverges after some 10^4 samples).
    On return pi holds q.
    Guards: a non-positive or non-finite denominator, or a non-finite trace, resets P to I/delta; a trace
    above `max_trace` (lost excitation makes P grow like lam^-n) scales P back to that trace.
    wr (N,), p (N, N), pi (N,) scratch, all float64.
    """
    n = wr.shape[0]
    for i in range(n):
        row = p[i]
        acc = 0.0
        for j in range(n):
            acc += row[j] * u[j]
        pi[i] = acc
    denom = lam
    for i in range(n):
        denom += u[i] * pi[i]
    if not (denom > 0.0 and denom < np.inf):
        reset_inverse_correlation(p, delta)
        return
    inv = 1.0 / denom
    step = err * inv
    if keep == 1.0:
        for i in range(n):
            wr[i] += pi[i] * step
    else:
        for i in range(n):
            wr[i] = keep * wr[i] + pi[i] * step
    # P - pi pi^T / denom written as P - q q^T with q = pi / sqrt(denom): q[i] * q[j] == q[j] * q[i]
    # exactly, so a symmetric P stays bit-for-bit symmetric with no triangle bookkeeping.
    root = np.sqrt(inv)
    for i in range(n):
        pi[i] *= root
    inv_lam = 1.0 / lam
    trace = 0.0
    for i in range(n):
        qi = pi[i]
        row = p[i]
        for j in range(n):
            row[j] = (row[j] - qi * pi[j]) * inv_lam
        trace += row[i]
    if not (trace < np.inf):
        reset_inverse_correlation(p, delta)
    elif trace > max_trace:
        scale = max_trace / trace
        for i in range(n):
            for j in range(n):
                p[i, j] *= scale


@njit(cache=True, inline="always")
def all_finite(a: np.ndarray, a0: int, n: int) -> bool:
    """True when a[a0 : a0 + n] (1-D) holds only finite values."""
    av = a[a0 : a0 + n]
    for i in range(n):  # noqa: SIM110 (a generator does not compile in numba)
        if not np.isfinite(av[i]):
            return False
    return True


def default_max_trace(taps: int, delta: float) -> float:
    """The default cap on trace(P): 1000 times the prior's trace N/delta."""
    return 1e3 * taps / delta


def grown_history(buf: np.ndarray, hist: int, block: int) -> np.ndarray:
    """A history buffer with room for blocks of `block` samples, keeping the `hist` samples of `buf`.

    Called from Python (never from the audio path) when a caller hands a longer block than seen so far.
    """
    if buf.shape[0] >= hist + block:
        return buf
    out = np.zeros(hist + block, dtype=np.float64)
    out[:hist] = buf[:hist]
    return out


def check_positive_int(name: str, value: int, minimum: int = 1) -> int:
    """`value` as an int >= minimum, or ValueError naming the parameter."""
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"{name}: {value!r} must be an integer >= {minimum}")
    return int(value)


def check_range(name: str, value: float, low: float, high: float) -> float:
    """`value` as a float in the closed range [low, high], or ValueError naming the parameter."""
    v = float(value)
    if not (low <= v <= high):
        raise ValueError(f"{name}: {value!r} is outside [{low:g}, {high:g}]")
    return v
