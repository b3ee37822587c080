"""The C reference compiles and computes the same filters as the plain numpy versions."""

from __future__ import annotations

import numpy as np
import pytest

from agent.bench import creference
from tests.bench.numpy_reference import leaky_fxrls, secondary_response
from tests.support import dsp_reference as ref

BLOCK = 16
N = 40 * BLOCK


@pytest.fixture(scope="module")
def signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.standard_normal(N)
    plant = rng.standard_normal(12) * np.exp(-np.arange(12) / 3.0)
    d = np.convolve(x, plant)[:N] + 1e-3 * rng.standard_normal(N)
    return {"x": x, "d": d, "e": 0.5 * rng.standard_normal(N), "fir": 0.3 * rng.standard_normal(9)}


def _close(a: np.ndarray, b: np.ndarray, rtol: float = 1e-9) -> bool:
    return bool(np.max(np.abs(a - b)) <= rtol * max(1.0, float(np.max(np.abs(b)))))


def test_library_builds_once_and_is_reused_from_the_cache() -> None:
    first = creference.build()
    mtime = first.stat().st_mtime_ns
    assert creference.build() == first
    assert first.stat().st_mtime_ns == mtime
    assert creference.library().nlms_block is not None


@pytest.mark.parametrize("leakage", [0.0, 1e-3])
def test_c_nlms_matches_numpy_per_block_and_whole_signal(
    signals: dict[str, np.ndarray], leakage: float
) -> None:
    x, d = signals["x"], signals["d"]
    y_ref, e_ref, w_ref = ref.nlms(x, d, taps=8, mu=0.5, eps=1e-8, leakage=leakage)
    per_block = creference.CNlms(8, mu=0.5, leakage=leakage, block=BLOCK)
    y, e = np.zeros(N), np.zeros(N)
    for b in range(0, N, BLOCK):
        per_block.process(x[b : b + BLOCK], d[b : b + BLOCK], y[b : b + BLOCK], e[b : b + BLOCK])
    assert _close(y, y_ref) and _close(e, e_ref) and _close(per_block.w, w_ref)
    whole = creference.CNlms(8, mu=0.5, leakage=leakage, block=BLOCK)
    y2, e2 = np.zeros(N), np.zeros(N)
    whole.run(x, d, y2, e2)
    assert _close(y2, y_ref) and _close(e2, e_ref) and _close(whole.w, w_ref)


def test_c_nlms_identifies_the_plant(signals: dict[str, np.ndarray]) -> None:
    f = creference.CNlms(16, mu=0.5, block=BLOCK)
    y, e = np.zeros(N), np.zeros(N)
    f.run(signals["x"], signals["d"], y, e)
    assert np.mean(e[-BLOCK * 5 :] ** 2) < 1e-2 * np.mean(signals["d"] ** 2)


@pytest.mark.parametrize("leakage", [0.0, 1e-3])
def test_c_rls_matches_numpy(signals: dict[str, np.ndarray], leakage: float) -> None:
    x, d = signals["x"], signals["d"]
    y_ref, e_ref, w_ref, _ = ref.rls(x, d, taps=12, lam=0.999, delta=1e-2, leakage=leakage, textbook=True)
    f = creference.CRls(12, lam=0.999, delta=1e-2, leakage=leakage, block=BLOCK)
    y, e = np.zeros(N), np.zeros(N)
    f.run(x, d, y, e)
    assert _close(y, y_ref, 1e-7) and _close(e, e_ref, 1e-7) and _close(f.w, w_ref, 1e-7)
    assert np.array_equal(f.p, f.p.T), "the symmetric update keeps P exactly symmetric"


@pytest.mark.parametrize("leakage", [0.0, 1e-3])
def test_c_fxnlms_matches_numpy(signals: dict[str, np.ndarray], leakage: float) -> None:
    x, e, fir = signals["x"], signals["e"], signals["fir"]
    y_ref, w_ref = ref.fxnlms(
        x, e, taps=10, s_hat=secondary_response(21, fir), mu=0.1, eps=1e-8, leakage=leakage
    )
    per_block = creference.CFxNlms(10, 21, fir, mu=0.1, leakage=leakage, block=BLOCK)
    y = np.zeros(N)
    for b in range(0, N, BLOCK):
        per_block.process(x[b : b + BLOCK], e[b : b + BLOCK], y[b : b + BLOCK])
    assert _close(y, y_ref) and _close(per_block.w, w_ref)
    whole = creference.CFxNlms(10, 21, fir, mu=0.1, leakage=leakage, block=BLOCK)
    y2 = np.zeros(N)
    whole.run(x, e, y2)
    assert _close(y2, y_ref) and _close(whole.w, w_ref)


def test_c_fxrls_matches_numpy(signals: dict[str, np.ndarray]) -> None:
    x, e, fir = signals["x"], signals["e"], signals["fir"]
    s_hat = secondary_response(5, fir)
    y_ref, w_ref = leaky_fxrls(x, e, taps=8, s_hat=s_hat, lam=0.999, delta=1e-1, leakage=1e-4)
    f = creference.CFxRls(8, 5, fir, lam=0.999, delta=1e-1, leakage=1e-4, block=BLOCK)
    y = np.zeros(N)
    f.run(x, e, y)
    assert _close(y, y_ref, 1e-7) and _close(f.w, w_ref, 1e-7)


def test_signal_that_is_not_whole_blocks_is_refused(signals: dict[str, np.ndarray]) -> None:
    f = creference.CNlms(8, mu=0.5, block=BLOCK)
    x = signals["x"][: BLOCK + 3]
    with pytest.raises(ValueError, match="whole number of 16-sample blocks"):
        f.run(x, x.copy(), np.zeros_like(x), np.zeros_like(x))
