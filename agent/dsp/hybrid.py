"""Hybrid FxNLMS + FxRLS: RLS speed at start-up, the long NLMS filter's attenuation in steady state.

Design (the modified filtered-x structure with an adaptive convex combination, after Arenas-Garcia et al.,
"Mean-square performance of a convex combination of two adaptive filters", and its normalised step by
Azpicueta-Ruiz et al.; see docs/hybrid.md):

1. Estimate the primary disturbance from the measured error: d^[n] = e[n] - (S^ * y)[n], y the output
   actually played. d^ carries no trace of the controller's own (delayed) output, so each component can
   adapt on a virtual error with no loop delay in it.
2. Two components see the same reference: a long FxNLMS w1 (L taps) and a short FxRLS w2 (N taps, which
   may sit `stride` samples apart so a short RLS spans a useful time at a high sample rate). Each adapts
   independently on its own virtual error e_i[n] = d^[n] + w_i . x'_vec[n], with x' = S^ * x.
3. The output is y = lam * (w1 . x_vec) + (1 - lam) * (w2 . x_vec), lam = sigmoid(a). The mixing parameter
   a follows a normalised gradient descent on the combined virtual error
       e_c = d^ + lam v1 + (1 - lam) v2,  v_i = w_i . x'_vec,
       p <- beta p + (1 - beta) (v1 - v2)^2,
       a <- a - mu_mix * e_c (v1 - v2) lam (1 - lam) / (eps + p),
   clipped to [-4, 4] so neither component is ever switched off for good (lam in [0.018, 0.982]).
   a starts at 0 and moves to whichever component is doing better.
Result: while the RLS converges in a few hundred samples the NLMS is still far off, so lam moves to the
RLS; once the long NLMS filter overtakes it (more taps, so lower steady-state error on rich noise), lam
moves to the NLMS. Sign convention as in `agent.dsp.fxnlms`: e = d + S * y.
4. Two refinements (on in the controller, optional here): `snap` plays the weight `output_weight(lam)`,
   exactly 1 or 0 once |a| passes MIX_A_SNAP, so the worse component no longer leaks in at -35 dB
   (which capped the hybrid at 38 dB on the headphone's tones); `feedback` copies the played combination
   into w1 after every block (`feed_back`), so the long FxNLMS goes on from what the fast RLS has learnt
   instead of from its own slow start (on the duct: 23 dB after 2 s, FxNLMS alone 20.6 dB).

`Hybrid` below is the bare algorithm (what the benchmark and the C reference compare: defaults stride 1,
no snap, no feedback, the published form). The multi-channel controller runs the same `hybrid_adapt`,
`output_weight` and `feed_back` and adds what a device needs around them: the RLS tap stride, a
reference-energy floor in the NLMS normalisation, holding adaptation through silence and noise onsets
(and the RLS until its regressor is full), the do-no-harm gate, the divergence guard, the limiter and the
crossfades (see `agent.dsp.controller`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from agent.dsp.fxnlms import (
    estimated_disturbance,
    filtered_reference,
    push_filtered,
    reversed_fir,
)
from agent.dsp.primitives import (
    FASTMATH,
    check_positive_int,
    check_range,
    default_max_trace,
    dot,
    dot_strided,
    gather_strided,
    grown_history,
    leaky_update,
    reset_inverse_correlation,
    rls_update,
    shift_history,
    sum_squares,
)
from agent.dsp.secondary_path import SecondaryPath

# Layout of the per-channel mixing state `mix` (float64 vector).
MIX_A, MIX_LAMBDA, MIX_POWER = 0, 1, 2
MIX_STATE_SIZE = 3
MIX_A_LIMIT = 4.0
MIX_BETA = 0.9
MIX_EPS = 1e-12
DEFAULT_MU_MIX = 1.0
# Output weight snapping: sigmoid(a) never leaves [0.018, 0.982], so the worse component would always
# leak in at about -35 dB. The weight actually played is sigmoid(a) mapped linearly from
# [sigmoid(-MIX_A_SNAP), sigmoid(MIX_A_SNAP)] onto [0, 1] and clipped: exactly 1 (or 0) once |a| passes
# MIX_A_SNAP, continuous everywhere (no click), while a itself still adapts on sigmoid(a).
MIX_A_SNAP = 3.0
_SNAP_LO = 1.0 / (1.0 + np.exp(MIX_A_SNAP))
_SNAP_SPAN = 1.0 - 2.0 * _SNAP_LO


@njit(cache=True, fastmath=FASTMATH, inline="always")
def hybrid_adapt(
    w1r: np.ndarray, w2r: np.ndarray, p: np.ndarray, pi: np.ndarray, u: np.ndarray, fxbuf: np.ndarray,
    hf: int, n: int, dh: float, energy: float, mix: np.ndarray, mu: float, keep: float, eps: float,
    lam: float, delta: float, max_trace: float, mu_mix: float, stride: int,
) -> float:  # fmt: skip
    """One hybrid step (see the module docstring) on d^[n] = dh; returns the combined virtual error.

    w1r (L,) / w2r (N,) reversed FxNLMS / FxRLS coefficients (the RLS taps `stride` samples apart);
    p (N, N), pi (N,) RLS state, u (N,) scratch; energy: running ||x'_vec||^2 over L samples; mix (3,)
    [a, lam, p] mixing state, updated here (lam = sigmoid(a), the unsnapped weight). The leakage (`keep`)
    applies to the FxNLMS coefficients only: the RLS is regularised by its forgetting factor and trace cap,
    and a per-sample leak would fight its gain in weakly excited directions (it costs 20+ dB on a tone).
    """
    l_taps = w1r.shape[0]
    n_taps = w2r.shape[0]
    b1 = hf + n - l_taps + 1
    gather_strided(u, fxbuf, hf + n - (n_taps - 1) * stride, stride)
    v1 = dot(w1r, 0, fxbuf, b1, l_taps)
    v2 = dot(w2r, 0, u, 0, n_taps)
    e1 = dh + v1
    e2 = dh + v2
    mlam = mix[MIX_LAMBDA]
    ec = dh + mlam * v1 + (1.0 - mlam) * v2
    diff = v1 - v2
    pw = MIX_BETA * mix[MIX_POWER] + (1.0 - MIX_BETA) * diff * diff
    a = mix[MIX_A] - mu_mix * ec * diff * mlam * (1.0 - mlam) / (MIX_EPS + pw)
    if a > MIX_A_LIMIT:
        a = MIX_A_LIMIT
    elif a < -MIX_A_LIMIT:
        a = -MIX_A_LIMIT
    elif not np.isfinite(a):
        a = 0.0
    mix[MIX_A] = a
    mix[MIX_LAMBDA] = 1.0 / (1.0 + np.exp(-a))
    mix[MIX_POWER] = pw
    leaky_update(w1r, keep, -mu * e1 / (eps + energy), fxbuf, b1, l_taps)
    rls_update(w2r, p, pi, u, -e2, lam, 1.0, delta, max_trace)
    return ec


@njit(cache=True, inline="always")
def output_weight(mix_lambda: float, snap: bool) -> float:
    """The FxNLMS share actually played: sigmoid(a) itself, or (snap) its snapped form (see MIX_A_SNAP)."""
    if not snap:
        return mix_lambda
    g = (mix_lambda - _SNAP_LO) / _SNAP_SPAN
    if g > 1.0:
        return 1.0
    if g < 0.0:
        return 0.0
    return g


@njit(cache=True, inline="always")
def feed_back(w1r: np.ndarray, w2r: np.ndarray, weight: float, stride: int) -> None:
    """w1 <- weight * w1 + (1 - weight) * w2 embedded on w1's tap grid: the played combination, in w1.

    Coefficient feedback (after Arenas-Garcia et al.): called once per block, it hands the long FxNLMS
    filter what the fast FxRLS has learnt, so the FxNLMS goes on from there instead of from its own slow
    start. A no-op at weight 1 (the FxRLS never leaks into a better FxNLMS). w1r (L,), w2r (N,) reversed,
    (N - 1) * stride < L.
    """
    if weight >= 1.0:
        return
    l_taps = w1r.shape[0]
    n_taps = w2r.shape[0]
    for i in range(l_taps):
        w1r[i] *= weight
    rest = 1.0 - weight
    for k in range(n_taps):
        w1r[l_taps - 1 - k * stride] += rest * w2r[n_taps - 1 - k]


@njit(cache=True, fastmath=FASTMATH, inline="always")
def hybrid_output(
    w1r: np.ndarray, w2r: np.ndarray, xbuf: np.ndarray, hx: int, n: int, mix: np.ndarray, stride: int,
    snap: bool,
) -> float:  # fmt: skip
    """y[n] = g (w1 . x_vec) + (1 - g) (w2 . x_vec), g = output_weight(lam, snap), x[n] at xbuf[hx + n]."""
    l_taps = w1r.shape[0]
    n_taps = w2r.shape[0]
    y1 = dot(w1r, 0, xbuf, hx + n - l_taps + 1, l_taps)
    y2 = dot_strided(w2r, xbuf, hx + n - (n_taps - 1) * stride, stride)
    g = output_weight(mix[MIX_LAMBDA], snap)
    return g * y1 + (1.0 - g) * y2


def reset_mix(mix: np.ndarray) -> None:
    """Neutral mixing state: a = 0 (lam = 0.5), no power history. mix (..., 3) float64."""
    mix[..., MIX_A] = 0.0
    mix[..., MIX_LAMBDA] = 0.5
    mix[..., MIX_POWER] = 0.0


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def hybrid_block(
    w1r: np.ndarray,
    w2r: np.ndarray,
    p: np.ndarray,
    pi: np.ndarray,
    u: np.ndarray,
    mix: np.ndarray,
    energy: np.ndarray,
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
    mu: float,
    lam: float,
    leakage: float,
    eps: float,
    delta: float,
    max_trace: float,
    mu_mix: float,
    stride: int,
    snap: bool,
    feedback: bool,
) -> None:
    """One block of the hybrid controller: x (B,) reference, e (B,) measured error, y (B,) output written.

    State as in `hybrid_adapt`; energy (1,) running ||x'_vec||^2 over L samples; histories xbuf (hx past),
    fxbuf (hf >= max(L, (N-1) stride + 1) past), ybuf (hy past outputs), each with room for one block; all
    float64. snap: play the snapped weight (`output_weight`); feedback: `feed_back` after the block.
    """
    l_taps = w1r.shape[0]
    block = x.shape[0]
    keep = 1.0 - leakage
    en = energy[0]
    for n in range(block):
        xbuf[hx + n] = x[n]
        en = push_filtered(fxbuf, hf, n, filtered_reference(sr, delay, xbuf, hx, n), l_taps, en)
        yn = hybrid_output(w1r, w2r, xbuf, hx, n, mix, stride, snap)
        y[n] = yn
        ybuf[hy + n] = yn
        dh = estimated_disturbance(e[n], sr, delay, ybuf, hy, n)
        hybrid_adapt(
            w1r, w2r, p, pi, u, fxbuf, hf, n, dh, en, mix, mu, keep, eps, lam, delta, max_trace, mu_mix,
            stride,
        )  # fmt: skip
    if feedback:
        feed_back(w1r, w2r, output_weight(mix[MIX_LAMBDA], snap), stride)
    shift_history(xbuf, hx, block)
    shift_history(fxbuf, hf, block)
    shift_history(ybuf, hy, block)
    energy[0] = sum_squares(fxbuf, hf - l_taps, l_taps)


class Hybrid:
    """Single-channel hybrid controller: a long FxNLMS and a short FxRLS in an adaptive convex mix."""

    def __init__(
        self,
        fx_taps: int,
        rls_taps: int,
        secondary: SecondaryPath,
        mu: float,
        lam: float,
        leakage: float = 0.0,
        eps: float = 1e-8,
        delta: float = 1e-3,
        mu_mix: float = DEFAULT_MU_MIX,
        max_trace: float | None = None,
        max_block: int = 1024,
        stride: int = 1,
        snap: bool = False,
        feedback: bool = False,
    ) -> None:
        self.fx_taps = check_positive_int("fx_taps", fx_taps)
        self.rls_taps = check_positive_int("rls_taps", rls_taps)
        self.stride = check_positive_int("stride", stride)
        span = (self.rls_taps - 1) * self.stride + 1
        if feedback and span > self.fx_taps:
            raise ValueError(
                f"feedback: the FxRLS spans {span} samples ((rls_taps - 1) * stride + 1), more than "
                f"fx_taps {self.fx_taps}; feedback needs it inside the FxNLMS filter"
            )
        self.snap = bool(snap)
        self.feedback = bool(feedback)
        self.mu = check_range("mu", mu, 0.0, 2.0)
        self.lam = check_range("lam", lam, 0.5, 1.0)
        self.leakage = check_range("leakage", leakage, 0.0, 1.0)
        self.eps = check_range("eps", eps, 0.0, np.inf)
        self.delta = check_range("delta", delta, 1e-12, np.inf)
        self.mu_mix = check_range("mu_mix", mu_mix, 0.0, np.inf)
        self.max_trace = (
            default_max_trace(self.rls_taps, self.delta) if max_trace is None else float(max_trace)
        )
        self.secondary = secondary
        self._sr = reversed_fir(secondary)
        self._delay = secondary.delay_samples
        longest = max(self.fx_taps, span)
        self._hx = max(longest, self._delay + secondary.taps) - 1
        self._hf = longest
        self._hy = self._delay + secondary.taps - 1
        max_block = check_positive_int("max_block", max_block)
        self._w1r = np.zeros(self.fx_taps)
        self._w2r = np.zeros(self.rls_taps)
        self.p = np.zeros((self.rls_taps, self.rls_taps))
        reset_inverse_correlation(self.p, self.delta)
        self._pi = np.zeros(self.rls_taps)
        self._u = np.zeros(self.rls_taps)
        self.mix = np.zeros(MIX_STATE_SIZE)
        """(3,) float64 mixing state [a, lam, p]; lam is the weight of the FxNLMS component."""
        reset_mix(self.mix)
        self._energy = np.zeros(1)
        self._xbuf = np.zeros(self._hx + max_block)
        self._fxbuf = np.zeros(self._hf + max_block)
        self._ybuf = np.zeros(self._hy + max_block)

    @property
    def w(self) -> np.ndarray:
        """(fx_taps,) float64 FxNLMS coefficients in natural order; a writable view."""
        return self._w1r[::-1]

    @property
    def w_rls(self) -> np.ndarray:
        """(rls_taps,) float64 FxRLS coefficients in natural order; a writable view."""
        return self._w2r[::-1]

    @property
    def mix_weight(self) -> float:
        """The FxNLMS share of the output (the rest goes to the FxRLS): lam, snapped if `snap`."""
        return float(output_weight(self.mix[MIX_LAMBDA], self.snap))

    def process(self, x: np.ndarray, e: np.ndarray, y: np.ndarray) -> None:
        """x (B,) reference block, e (B,) measured error block, y (B,) anti-noise output; float64."""
        block = x.shape[0]
        if block + self._hf > self._fxbuf.shape[0]:
            self._xbuf = grown_history(self._xbuf, self._hx, block)
            self._fxbuf = grown_history(self._fxbuf, self._hf, block)
            self._ybuf = grown_history(self._ybuf, self._hy, block)
        hybrid_block(
            self._w1r, self._w2r, self.p, self._pi, self._u, self.mix, self._energy, self._sr, self._delay,
            self._xbuf, self._hx, self._fxbuf, self._hf, self._ybuf, self._hy, x, e, y,
            self.mu, self.lam, self.leakage, self.eps, self.delta, self.max_trace, self.mu_mix,
            self.stride, self.snap, self.feedback,
        )  # fmt: skip

    def reset(self) -> None:
        self._w1r[:] = 0.0
        self._w2r[:] = 0.0
        reset_inverse_correlation(self.p, self.delta)
        reset_mix(self.mix)
        self._energy[0] = 0.0
        self._xbuf[:] = 0.0
        self._fxbuf[:] = 0.0
        self._ybuf[:] = 0.0
