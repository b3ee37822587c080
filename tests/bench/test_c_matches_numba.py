"""The C reference and our numba kernels compute the same thing, so the speed comparison is honest."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from agent.bench import creference
from agent.dsp.fxnlms import FxNlms
from agent.dsp.fxrls import FxRls
from agent.dsp.hybrid import MIX_A_LIMIT, MIX_BETA, MIX_EPS, Hybrid
from agent.dsp.nlms import Nlms
from agent.dsp.rls import Rls
from agent.dsp.secondary_path import SecondaryPath

BLOCK = 32
N = 60 * BLOCK
RTOL = 1e-9


@pytest.fixture(scope="module")
def sig() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    x = 0.1 * rng.standard_normal(N)
    plant = rng.standard_normal(16) * np.exp(-np.arange(16) / 4.0)
    return {
        "x": x,
        "d": np.convolve(x, plant)[:N],
        "e": 0.05 * rng.standard_normal(N),
        "fir": 0.4 * rng.standard_normal(24) * np.exp(-np.arange(24) / 6.0),
    }


def _blockwise(process: Callable[..., None], *arrays: np.ndarray) -> None:
    for b in range(0, N, BLOCK):
        process(*(a[b : b + BLOCK] for a in arrays))


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def test_nlms_outputs_and_coefficients_match(sig: dict[str, np.ndarray]) -> None:
    ours, c = Nlms(48, 0.5, leakage=1e-4, eps=1e-8), creference.CNlms(48, 0.5, 1e-4, 1e-8, BLOCK)
    y1, e1, y2, e2 = (np.zeros(N) for _ in range(4))
    _blockwise(ours.process, sig["x"], sig["d"], y1, e1)
    _blockwise(c.process, sig["x"], sig["d"], y2, e2)
    assert _rel(e1, e2) < RTOL and _rel(ours.w, c.w) < RTOL


def test_rls_outputs_and_coefficients_match(sig: dict[str, np.ndarray]) -> None:
    ours, c = Rls(24, 0.999, delta=1e-2), creference.CRls(24, 0.999, 1e-2, 0.0, BLOCK)
    y1, e1, y2, e2 = (np.zeros(N) for _ in range(4))
    _blockwise(ours.process, sig["x"], sig["d"], y1, e1)
    _blockwise(c.process, sig["x"], sig["d"], y2, e2)
    assert _rel(e1, e2) < RTOL and _rel(ours.w, c.w) < RTOL


@pytest.mark.parametrize("delay", [3, 2 * BLOCK + 20])
def test_fxnlms_anti_noise_and_coefficients_match(sig: dict[str, np.ndarray], delay: int) -> None:
    ours = FxNlms(64, SecondaryPath(delay, sig["fir"]), 0.05, leakage=1e-6)
    c = creference.CFxNlms(64, delay, sig["fir"], 0.05, 1e-6, ours.eps, BLOCK)
    y1, y2 = np.zeros(N), np.zeros(N)
    _blockwise(ours.process, sig["x"], sig["e"], y1)
    _blockwise(c.process, sig["x"], sig["e"], y2)
    assert np.any(y2 != 0.0)
    assert _rel(y1, y2) < RTOL and _rel(ours.w, c.w) < RTOL


@pytest.mark.parametrize("delay", [3, 2 * BLOCK + 20])
def test_fxrls_anti_noise_and_coefficients_match(sig: dict[str, np.ndarray], delay: int) -> None:
    ours = FxRls(16, SecondaryPath(delay, sig["fir"]), 0.999, delta=1e-2, leakage=1e-5)
    c = creference.CFxRls(16, delay, sig["fir"], 0.999, 1e-2, 1e-5, BLOCK)
    y1, y2 = np.zeros(N), np.zeros(N)
    _blockwise(ours.process, sig["x"], sig["e"], y1)
    _blockwise(c.process, sig["x"], sig["e"], y2)
    assert np.any(y2 != 0.0)
    assert _rel(y1, y2) < 1e-7 and _rel(ours.w, c.w) < 1e-7


@pytest.mark.parametrize("delay", [3, 2 * BLOCK + 20])
def test_hybrid_anti_noise_coefficients_and_mix_match(sig: dict[str, np.ndarray], delay: int) -> None:
    ours = Hybrid(64, 12, SecondaryPath(delay, sig["fir"]), 0.05, 0.999, leakage=1e-6)
    c = creference.CHybrid(64, 12, delay, sig["fir"], 0.05, 0.999, 1e-6, ours.eps, ours.delta, ours.mu_mix,
                           MIX_BETA, MIX_EPS, MIX_A_LIMIT, BLOCK)  # fmt: skip
    y1, y2 = np.zeros(N), np.zeros(N)
    _blockwise(ours.process, sig["x"], sig["e"], y1)
    _blockwise(c.process, sig["x"], sig["e"], y2)
    assert np.any(y2 != 0.0) and c.mix[1] != 0.5
    assert _rel(y1, y2) < 1e-7 and _rel(ours.w, c.w) < 1e-7 and _rel(ours.w_rls, c.w_rls) < 1e-7
    assert ours.mix_weight == pytest.approx(c.mix[1], rel=1e-7)
