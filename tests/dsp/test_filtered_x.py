"""FxNLMS, FxRLS and the hybrid against sample-by-sample numpy references (open loop: given x and e)."""

from __future__ import annotations

import numpy as np
import pytest

from agent.dsp.fxnlms import FxNlms
from agent.dsp.fxrls import FxRls
from agent.dsp.hybrid import Hybrid
from agent.dsp.secondary_path import SecondaryPath
from tests.support import dsp_reference as ref


def signals(seed: int, samples: int) -> tuple[np.ndarray, np.ndarray, SecondaryPath]:
    """Reference x, an arbitrary error e (T,) and a secondary path with a bulk delay."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(samples)
    e = 0.5 * rng.standard_normal(samples)
    path = SecondaryPath(9, rng.standard_normal(12) * np.exp(-np.arange(12) / 4.0))
    return x, e, path


def run_blocks(filt, x: np.ndarray, e: np.ndarray, sizes: list[int]) -> np.ndarray:
    """Feed x, e through filt.process(x, e, y) in blocks of the given sizes (cycling); returns y."""
    y = np.zeros_like(x)
    start, i = 0, 0
    while start < x.shape[0]:
        b = min(sizes[i % len(sizes)], x.shape[0] - start)
        sl = slice(start, start + b)
        filt.process(x[sl], e[sl], y[sl])
        start += b
        i += 1
    return y


@pytest.mark.parametrize("sizes", [[32], [3, 50, 1, 17]])
def test_fxnlms_matches_numpy_reference_sample_for_sample(sizes: list[int]) -> None:
    x, e, path = signals(1, 1200)
    f = FxNlms(24, path, mu=0.1, leakage=1e-4, eps=1e-6)
    y = run_blocks(f, x, e, sizes)
    y_ref, w_ref = ref.fxnlms(x, e, 24, path.impulse_response(), 0.1, 1e-6, leakage=1e-4)
    np.testing.assert_allclose(y, y_ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(f.w, w_ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("sizes", [[32], [7, 64, 1]])
def test_fxrls_matches_numpy_reference_sample_for_sample(sizes: list[int]) -> None:
    x, e, path = signals(2, 1000)
    f = FxRls(8, path, lam=0.995, delta=1e-2)
    y = run_blocks(f, x, e, sizes)
    y_ref, w_ref = ref.fxrls(x, e, 8, path.impulse_response(), 0.995, 1e-2)
    np.testing.assert_allclose(y, y_ref, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(f.w, w_ref, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("sizes", [[32], [5, 40, 2]])
def test_hybrid_matches_numpy_reference_sample_for_sample(sizes: list[int]) -> None:
    x, e, path = signals(3, 1000)
    f = Hybrid(20, 6, path, mu=0.05, lam=0.995, leakage=1e-4, eps=1e-6, delta=1e-2, mu_mix=0.5)
    y = run_blocks(f, x, e, sizes)
    y_ref, w1, w2, mix = ref.hybrid(
        x, e, 20, 6, path.impulse_response(), 0.05, 0.995, 1e-2, 1e-6, 0.5, leakage=1e-4
    )
    np.testing.assert_allclose(y, y_ref, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(f.w, w1, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(f.w_rls, w2, rtol=1e-6, atol=1e-9)
    assert f.mix_weight == pytest.approx(mix, rel=1e-6)


def test_secondary_path_rejects_bad_values_naming_the_field() -> None:
    with pytest.raises(ValueError, match="delay_samples"):
        SecondaryPath(-1, np.ones(4))
    with pytest.raises(ValueError, match="fir"):
        SecondaryPath(3, np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="fir"):
        SecondaryPath(3, np.zeros((2, 2)))
