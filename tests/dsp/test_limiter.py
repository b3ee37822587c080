"""Output limiter: never above the limit, instant attack, smooth release, transparent below the limit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from agent.dsp.limiter import Limiter, limit_amplitude

FS = 48000


@settings(max_examples=60, deadline=None)
@given(
    block=arrays(
        np.float32,
        (64, 2),
        elements=st.floats(width=32, allow_nan=True, allow_infinity=True),
    ),
    limit_dbfs=st.floats(-40.0, 0.0),
)
def test_output_never_exceeds_the_limit_for_any_input(block: np.ndarray, limit_dbfs: float) -> None:
    lim = Limiter(limit_dbfs, 2, FS)
    y = block.copy()
    lim.process(y)
    assert np.all(np.isfinite(y))
    assert np.all(np.abs(y) <= np.float32(10 ** (limit_dbfs / 20)))


def test_limit_amplitude_is_the_largest_float32_not_above_the_limit() -> None:
    for dbfs in (-6.0, -3.0, -0.1, -20.0):
        amp = np.float32(limit_amplitude(dbfs))
        assert float(amp) <= 10 ** (dbfs / 20) < float(np.nextafter(amp, np.float32(2.0)))


def test_attack_is_instant_and_release_is_smooth() -> None:
    lim = Limiter(-6.0, 1, FS, release_s=0.05)
    limit = limit_amplitude(-6.0)
    y = np.full((FS // 2, 1), 0.25)
    y[100] = 2.0  # one loud sample
    lim.process(y)
    assert y[100, 0] == limit  # limited on the very sample that went over
    assert lim.count == 1
    after = y[101:, 0]
    gain = after / 0.25
    assert np.all(np.diff(gain) >= 0)  # recovers monotonically, no steps back down
    assert gain[0] < 0.3  # still held down right after the peak
    g0 = limit / 2.0
    # one time constant after the peak the gain has closed 1 - 1/e of its gap to 1
    assert gain[round(0.05 * FS) - 1] == pytest.approx(1 - (1 - g0) / np.e, rel=0.01)
    assert gain[-1] > 0.99
    assert np.max(np.abs(np.diff(after))) < 0.01  # no click while releasing


def test_signals_below_the_limit_pass_unchanged() -> None:
    lim = Limiter(-6.0, 2, FS)
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal((1000, 2))).astype(np.float32)
    y = x.copy()
    lim.process(y)
    np.testing.assert_array_equal(y, x)
    assert lim.count == 0
