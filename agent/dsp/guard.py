"""Divergence guard, run inside the controller's block kernel once per channel and block.

Healthy means: every coefficient finite, the coefficient norm below `max_norm`, and (while cancelling) the
smoothed error power no more than `ratio` times the smoothed estimated-disturbance power d^ (the level the
error mic would have without anti-noise) plus a floor, and the output limiter reducing no more than
`max_limited_fraction` of the samples (smoothed). The last rule catches what the first cannot: with a
badly wrong secondary-path estimate d^ is wrong too and grows with the output, but a controller that sits
on the limiter is never a healthy one. While the controller is healthy *and* doing no harm
(error power <= disturbance power), a snapshot of all adaptive state is taken every `snapshot_blocks`
blocks into preallocated arrays. When unhealthy, the snapshot is restored (or, if the last restore was
less than `repeat_blocks` ago, so the snapshot itself is suspect, the state is zeroed), the RLS inverse
correlation is reset, the error smoother restarts at the disturbance level, and the event is counted.
After `TRIP_AFTER_QUICK_RESTORES` restores in a row, each within `repeat_blocks` of the previous one, the
channel trips: the controller mutes its anti-noise and stops adapting until `reset()` or a coefficient
load (the secondary path has most likely changed and needs identifying again).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from agent.dsp.hybrid import MIX_LAMBDA, MIX_POWER
from agent.dsp.primitives import all_finite, reset_inverse_correlation, sum_squares

# per-channel guard state, float64 vector
G_ERROR_POWER, G_DISTURBANCE_POWER, G_SINCE_SNAPSHOT, G_SINCE_RESTORE, G_LIMITED = 0, 1, 2, 3, 4
G_QUICK_RESTORES, G_TRIPPED = 5, 6
GUARD_STATE_SIZE = 7
TRIP_AFTER_QUICK_RESTORES = 3
# guard parameters, float64 vector
GP_ALPHA, GP_RATIO, GP_FLOOR, GP_SNAPSHOT_BLOCKS, GP_REPEAT_BLOCKS, GP_MAX_NORM2, GP_DELTA = range(7)
GP_MAX_LIMITED = 7
GUARD_PARAM_SIZE = 8


def guard_parameters(
    sample_rate_hz: int,
    block_size: int,
    delta: float,
    smoothing_s: float = 0.05,
    ratio: float = 4.0,
    floor_power: float = 1e-10,
    snapshot_s: float = 0.25,
    repeat_s: float = 1.0,
    max_norm: float = 1e4,
    max_limited_fraction: float = 0.25,
) -> np.ndarray:
    """(GUARD_PARAM_SIZE,) float64 guard parameters for one stream format."""
    blocks_per_s = sample_rate_hz / block_size
    gp = np.zeros(GUARD_PARAM_SIZE)
    gp[GP_ALPHA] = min(1.0, 1.0 / (smoothing_s * blocks_per_s))
    gp[GP_RATIO] = ratio
    gp[GP_FLOOR] = floor_power
    gp[GP_SNAPSHOT_BLOCKS] = max(1.0, round(snapshot_s * blocks_per_s))
    gp[GP_REPEAT_BLOCKS] = max(1.0, round(repeat_s * blocks_per_s))
    gp[GP_MAX_NORM2] = max_norm * max_norm
    gp[GP_DELTA] = delta
    gp[GP_MAX_LIMITED] = max_limited_fraction
    return gp


@njit(cache=True, inline="always")
def _copy(dst: np.ndarray, src: np.ndarray) -> None:
    for i in range(src.shape[0]):
        dst[i] = src[i]


@njit(cache=True)
def guard_channel(
    w1r: np.ndarray,
    w2r: np.ndarray,
    p: np.ndarray,
    mix: np.ndarray,
    snap_w1: np.ndarray,
    snap_w2: np.ndarray,
    snap_mix: np.ndarray,
    gs: np.ndarray,
    gp: np.ndarray,
    error_power: float,
    disturbance_power: float,
    limited_fraction: float,
    cancelling: bool,
) -> bool:
    """Check one channel after a block; returns True when it restored the state (a divergence event).

    w1r (L,), w2r (N,), p (N, N), mix (3,): live adaptive state; snap_*: their snapshots; gs
    (GUARD_STATE_SIZE,) this channel's guard state; gp guard parameters; error_power and
    disturbance_power: mean squares of e and d^ over the block just processed; limited_fraction: the
    share of this channel's output samples the limiter had to reduce in that block.
    """
    alpha = gp[GP_ALPHA]
    gs[G_ERROR_POWER] += alpha * (error_power - gs[G_ERROR_POWER])
    gs[G_DISTURBANCE_POWER] += alpha * (disturbance_power - gs[G_DISTURBANCE_POWER])
    gs[G_LIMITED] += alpha * (limited_fraction - gs[G_LIMITED])
    if not cancelling:
        # In pass-through, off or a crossfade the mic hears what the speaker plays on purpose (the
        # ambient, in pass-through): that says nothing of the filter, so the judgement restarts from
        # the disturbance level when cancelling resumes, instead of from the pass-through level.
        gs[G_ERROR_POWER] = gs[G_DISTURBANCE_POWER]
        gs[G_LIMITED] = 0.0
    gs[G_SINCE_SNAPSHOT] += 1.0
    gs[G_SINCE_RESTORE] += 1.0
    l_taps = w1r.shape[0]
    n_taps = w2r.shape[0]
    norm2 = sum_squares(w1r, 0, l_taps) + sum_squares(w2r, 0, n_taps)
    pe = gs[G_ERROR_POWER]
    pd = gs[G_DISTURBANCE_POWER]
    finite = (
        norm2 < np.inf
        and np.isfinite(pe)
        and all_finite(mix, 0, mix.shape[0])
        and all_finite(p[0], 0, n_taps)  # a non-finite P spreads to row 0 within a sample
        and all_finite(p[n_taps - 1], 0, n_taps)
    )
    healthy = finite and norm2 <= gp[GP_MAX_NORM2]
    if healthy and cancelling:
        healthy = pe <= gp[GP_RATIO] * pd + gp[GP_FLOOR] and gs[G_LIMITED] <= gp[GP_MAX_LIMITED]
    if healthy:
        if gs[G_SINCE_RESTORE] >= gp[GP_REPEAT_BLOCKS]:
            gs[G_QUICK_RESTORES] = 0.0
        if gs[G_SINCE_SNAPSHOT] >= gp[GP_SNAPSHOT_BLOCKS] and (not cancelling or pe <= pd + gp[GP_FLOOR]):
            _copy(snap_w1, w1r)
            _copy(snap_w2, w2r)
            _copy(snap_mix, mix)
            gs[G_SINCE_SNAPSHOT] = 0.0
        return False
    if gs[G_SINCE_RESTORE] < gp[GP_REPEAT_BLOCKS]:
        gs[G_QUICK_RESTORES] += 1.0
        if gs[G_QUICK_RESTORES] >= TRIP_AFTER_QUICK_RESTORES:
            gs[G_TRIPPED] = 1.0
        snap_w1[:] = 0.0
        snap_w2[:] = 0.0
        snap_mix[0] = 0.0
        snap_mix[MIX_LAMBDA] = 0.5
        snap_mix[MIX_POWER] = 0.0
    _copy(w1r, snap_w1)
    _copy(w2r, snap_w2)
    _copy(mix, snap_mix)
    reset_inverse_correlation(p, gp[GP_DELTA])
    gs[G_ERROR_POWER] = pd if np.isfinite(pd) else 0.0
    if not np.isfinite(pd):
        gs[G_DISTURBANCE_POWER] = 0.0
    gs[G_SINCE_RESTORE] = 0.0
    gs[G_SINCE_SNAPSHOT] = 0.0
    gs[G_LIMITED] = 0.0
    return True
