"""Do-no-harm output gate: scale the anti-noise down where it does not cancel (the controller's last step).

Where the noise cannot be cancelled (broadband noise with a negative causality margin, say) an adaptive
filter still chases whatever it can predict of the recent past; its weight noise then adds more than it
removes and the listener hears the noise louder than with no control at all (2 dB on the headphone's
broadband run with mu = 0.05). The gate compares, over GATE_SMOOTHING_S, what the ungated anti-noise adds
at the error mic, v = S^ * y_ungated (played with the weights it really had when it was computed, so the
weight noise over the loop delay counts: the virtual error the filters adapt on misses exactly that), with
the estimated disturbance d^, and plays g * y where g is the least-squares
output gain g* = -E[d^ v] / E[v^2] mapped linearly from [GATE_LOW, GATE_HIGH] onto [0, 1] and clipped:
exactly 1 for a filter that cancels (g* near 1, so no residual leaks in at 20 log10(1 - g)), exactly 0 for
a filter that only adds (g* near 0), in between for a filter that half helps. The filters keep adapting
on their virtual errors whatever g is, so the gate opens again as soon as the filter cancels.
g moves once per block, ramped linearly across the next block (no zipper noise).

State per channel (float64 vector, GATE_STATE_SIZE): the smoothed moments E[d^ v] and E[v^2], each block's
sums divided by that block's sum of d^2 (so a loud stretch does not outweigh a quiet one for seconds), the
gain at the start of the current block and the gain at its end.
"""

from __future__ import annotations

import numpy as np
from numba import njit

GATE_DV, GATE_VV, GATE_FROM, GATE_TO = range(4)
GATE_STATE_SIZE = 4
GATE_SMOOTHING_S = 0.1
# A block whose ungated output power exceeds this many times its disturbance power (a start-up or onset
# transient) counts with its g* but no more weight than a block at this ratio, so it cannot hold the
# gate shut for seconds after the filter has settled.
GATE_MAX_BLOCK_RATIO = 4.0
GATE_LOW = 0.2
GATE_HIGH = 0.5
# Below this share of the disturbance power the filter output says nothing yet: the gain is left alone.
GATE_SILENT_OUTPUT = 1e-8


def reset_gate(gate: np.ndarray) -> None:
    """Open gate, no history: gate (..., GATE_STATE_SIZE) float64."""
    gate[...] = 0.0
    gate[..., GATE_FROM] = 1.0
    gate[..., GATE_TO] = 1.0


@njit(cache=True, inline="always")
def gate_gain(gate: np.ndarray, n: int, block: int) -> float:
    """The gain for sample n (0-based) of a block of `block` samples: a linear ramp GATE_FROM -> GATE_TO."""
    return gate[GATE_FROM] + (gate[GATE_TO] - gate[GATE_FROM]) * (n + 1) / block


@njit(cache=True)
def gate_update(gate: np.ndarray, dv: float, vv: float, dd: float, samples: int, alpha: float) -> None:
    """After a block: fold its sums (dv = sum d^ v, vv = sum v^2, dd = sum d^2 over `samples` adapting
    samples) into the smoothed moments with weight alpha (per block), then set the next block's ramp.

    gate (GATE_STATE_SIZE,) float64, updated in place. With no adapting samples, or no disturbance, or
    non-finite sums, the gain holds.
    """
    gate[GATE_FROM] = gate[GATE_TO]
    if samples <= 0 or not (dd > 0.0 and dd < np.inf and abs(dv) < np.inf and vv < np.inf):
        return
    scale = 1.0 / dd
    if vv * scale > GATE_MAX_BLOCK_RATIO:
        scale = GATE_MAX_BLOCK_RATIO / vv
    gate[GATE_DV] += alpha * (dv * scale - gate[GATE_DV])
    gate[GATE_VV] += alpha * (vv * scale - gate[GATE_VV])
    if not (gate[GATE_VV] > GATE_SILENT_OUTPUT):
        return
    best = -gate[GATE_DV] / gate[GATE_VV]
    g = (best - GATE_LOW) / (GATE_HIGH - GATE_LOW)
    if g > 1.0:
        g = 1.0
    elif not (g > 0.0):  # also catches NaN
        g = 0.0
    gate[GATE_TO] = g


def gate_alpha(sample_rate_hz: int, block_size: int) -> float:
    """Per-block smoothing weight for GATE_SMOOTHING_S at this stream format."""
    return min(1.0, block_size / (GATE_SMOOTHING_S * sample_rate_hz))
