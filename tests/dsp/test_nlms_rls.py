"""NLMS and RLS kernels against the numpy references, padasip and pyroomacoustics."""

from __future__ import annotations

import numpy as np
import padasip as pa
import pytest
from pyroomacoustics.adaptive import NLMS as PraNlms
from pyroomacoustics.adaptive import RLS as PraRls

from agent.dsp.nlms import Nlms
from agent.dsp.rls import Rls
from tests.support import dsp_reference as ref


def system(seed: int, samples: int, taps: int = 12, noise: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """A random FIR system driven by white noise: x, d (samples,) float64."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(samples)
    h = rng.standard_normal(taps)
    d = np.convolve(x, h)[:samples] + noise * rng.standard_normal(samples)
    return x, d


def run_blocks(filt: Nlms | Rls, x: np.ndarray, d: np.ndarray, sizes: list[int]) -> tuple[np.ndarray, ...]:
    """Feed x, d through filt.process in blocks of the given sizes, cycling; returns y, e."""
    y = np.zeros_like(x)
    e = np.zeros_like(x)
    start, i = 0, 0
    while start < x.shape[0]:
        b = min(sizes[i % len(sizes)], x.shape[0] - start)
        sl = slice(start, start + b)
        filt.process(x[sl], d[sl], y[sl], e[sl])
        start += b
        i += 1
    return y, e


def padasip_regressors(x: np.ndarray, taps: int) -> np.ndarray:
    """(T, taps) rows [x[n], ..., x[n-taps+1]] for padasip's run()."""
    return np.array([ref.regressor(x, n, taps) for n in range(x.shape[0])])


@pytest.mark.parametrize("sizes", [[32], [1, 7, 64, 3], [256]])
def test_nlms_matches_numpy_reference_sample_for_sample(sizes: list[int]) -> None:
    x, d = system(1, 1500)
    f = Nlms(16, mu=0.5, leakage=1e-4, eps=1e-6)
    y, e = run_blocks(f, x, d, sizes)
    y_ref, e_ref, w_ref = ref.nlms(x, d, 16, 0.5, 1e-6, leakage=1e-4)
    np.testing.assert_allclose(y, y_ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(e, e_ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(f.w, w_ref, rtol=1e-9, atol=1e-12)


def test_nlms_matches_padasip_filter_nlms() -> None:
    x, d = system(2, 2000)
    w0 = np.random.default_rng(20).standard_normal(12)  # the same non-zero start for both
    f = Nlms(12, mu=0.3, eps=1e-3)
    f.w[:] = w0
    y, e = run_blocks(f, x, d, [64])
    pf = pa.filters.FilterNLMS(12, mu=0.3, eps=1e-3, w=w0.copy())
    y_pa, e_pa, _ = pf.run(d, padasip_regressors(x, 12))
    np.testing.assert_allclose(y, y_pa, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(e, e_pa, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(f.w, pf.w, rtol=1e-9, atol=1e-12)


def test_nlms_matches_pyroomacoustics_nlms_without_epsilon() -> None:
    # pyroomacoustics divides by ||x||^2 with no epsilon and keeps the newest sample first: eps=0 here.
    x, d = system(3, 1000)
    f = Nlms(8, mu=0.5, eps=0.0)
    run_blocks(f, x, d, [50])
    pra = PraNlms(8, mu=0.5)
    for xn, dn in zip(x, d, strict=True):
        pra.update(xn, dn)
    np.testing.assert_allclose(f.w, pra.w, rtol=1e-9, atol=1e-12)


def test_nlms_identifies_the_system() -> None:
    x, d = system(4, 4000, noise=0.0)
    f = Nlms(12, mu=0.8)
    run_blocks(f, x, d, [32])
    rng = np.random.default_rng(4)  # the same draws as system(): x first, then h
    rng.standard_normal(4000)
    h = rng.standard_normal(12)
    np.testing.assert_allclose(f.w, h, atol=1e-6)


@pytest.mark.parametrize("sizes", [[32], [5, 100, 1]])
def test_rls_matches_numpy_reference_sample_for_sample(sizes: list[int]) -> None:
    x, d = system(5, 1200)
    f = Rls(10, lam=0.995, delta=1e-2, leakage=1e-5)
    y, e = run_blocks(f, x, d, sizes)
    y_ref, e_ref, w_ref, p_ref = ref.rls(x, d, 10, 0.995, 1e-2, leakage=1e-5)
    np.testing.assert_allclose(y, y_ref, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(e, e_ref, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(f.w, w_ref, rtol=1e-6, atol=1e-9)
    # the kernel keeps P in time-reversed tap order
    np.testing.assert_allclose(f.p[::-1, ::-1], p_ref, rtol=1e-6, atol=1e-9)


def test_rls_matches_padasip_filter_rls() -> None:
    # padasip: mu is the forgetting factor, eps the regulariser (R0 = I / eps), same a priori error.
    x, d = system(6, 1500)
    w0 = np.random.default_rng(21).standard_normal(8)  # the same non-zero start for both
    f = Rls(8, lam=0.99, delta=1e-2)
    f.w[:] = w0
    y, e = run_blocks(f, x, d, [32])
    pf = pa.filters.FilterRLS(8, mu=0.99, eps=1e-2, w=w0.copy())
    y_pa, e_pa, _ = pf.run(d, padasip_regressors(x, 8))
    np.testing.assert_allclose(y, y_pa, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(e, e_pa, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(f.w, pf.w, rtol=1e-6, atol=1e-9)


def test_rls_matches_pyroomacoustics_rls_in_float64() -> None:
    # pyroomacoustics: lmbd is the forgetting factor, P0 = I / delta; its default dtype is float32.
    x, d = system(7, 1000)
    f = Rls(8, lam=0.999, delta=0.5)
    run_blocks(f, x, d, [40])
    pra = PraRls(8, lmbd=0.999, delta=0.5, dtype=np.float64)
    for xn, dn in zip(x, d, strict=True):
        pra.update(xn, dn)
    np.testing.assert_allclose(f.w, pra.w, rtol=1e-6, atol=1e-9)


def test_rls_inverse_correlation_stays_exactly_symmetric_and_bounded_over_200k_samples() -> None:
    rng = np.random.default_rng(8)
    n = 200_000
    t = np.arange(n)
    # an ill-conditioned input: a low tone plus a little noise (most directions barely excited)
    x = np.sin(2 * np.pi * 150 / 48000 * t) + 1e-3 * rng.standard_normal(n)
    d = 0.5 * np.roll(x, 3)
    f = Rls(32, lam=0.999, delta=1e-2)
    _, e = run_blocks(f, x, d, [32])
    assert np.all(np.isfinite(f.p)) and np.all(np.isfinite(f.w)) and np.all(np.isfinite(e))
    assert np.array_equal(f.p, f.p.T)
    assert np.trace(f.p) <= f.max_trace * (1 + 1e-12)
    assert np.min(np.linalg.eigvalsh(f.p)) > 0
    assert np.mean(e[-4800:] ** 2) < 1e-6 * np.mean(d[-4800:] ** 2)


def test_textbook_rls_update_loses_symmetry_where_the_kernel_keeps_it() -> None:
    # Proves the symmetry assertion above can fail: the textbook P update drifts on the same kind of input.
    rng = np.random.default_rng(9)
    n = 12_000
    x = np.sin(2 * np.pi * 150 / 48000 * np.arange(n)) + 1e-3 * rng.standard_normal(n)
    d = 0.5 * np.roll(x, 3)
    *_, p_textbook = ref.rls(x, d, 16, 0.99, 1e-2, textbook=True)
    *_, p_symmetric = ref.rls(x, d, 16, 0.99, 1e-2)
    asym = np.max(np.abs(p_textbook - p_textbook.T)) / np.max(np.abs(p_textbook))
    assert asym > 1e-14
    f = Rls(16, lam=0.99, delta=1e-2)
    run_blocks(f, x, d, [32])
    assert np.array_equal(f.p, f.p.T)
    np.testing.assert_allclose(
        f.p[::-1, ::-1], p_symmetric, rtol=1e-5, atol=1e-9 * np.max(np.abs(p_symmetric))
    )


def test_rls_recovers_when_excitation_stops() -> None:
    # Silence makes P grow like lam^-n; the trace cap keeps it finite and the filter still works after.
    x, d = system(10, 4000, taps=6, noise=0.0)
    f = Rls(6, lam=0.99, delta=1e-2)
    run_blocks(f, x, d, [32])
    silence = np.zeros(48000)
    run_blocks(f, silence, silence, [32])
    assert np.all(np.isfinite(f.p)) and np.trace(f.p) <= f.max_trace * (1 + 1e-12)
    _, e = run_blocks(f, x, d, [32])
    assert np.mean(e[-1000:] ** 2) < 1e-8


def test_bad_parameters_name_the_field() -> None:
    with pytest.raises(ValueError, match="mu"):
        Nlms(8, mu=3.0)
    with pytest.raises(ValueError, match="taps"):
        Rls(0, lam=0.99)
    with pytest.raises(ValueError, match="lam"):
        Rls(8, lam=1.5)
