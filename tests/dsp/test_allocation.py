"""The per-block calls allocate nothing: no Python objects survive a call and numba's allocator is idle."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import numpy as np
import pytest
from numba.core.runtime import _nrt_python, rtsys

from agent.dsp.controller import Controller, ControllerSettings
from agent.dsp.fxnlms import FxNlms
from agent.dsp.fxrls import FxRls
from agent.dsp.hybrid import Hybrid
from agent.dsp.nlms import Nlms
from agent.dsp.rls import Rls
from agent.dsp.secondary_path import SecondaryPath, SecondaryPathIdentifier
from agent.profiles import load_profile

CALLS = 1000
BLOCK = 32


@pytest.fixture(autouse=True, scope="module")
def nrt_statistics():
    """Numba counts its runtime allocations only when asked to (NUMBA_NRT_STATS does it at start-up)."""
    was_enabled = _nrt_python.memsys_stats_enabled()
    _nrt_python.memsys_enable_stats()
    yield
    if not was_enabled:
        _nrt_python.memsys_disable_stats()


def nrt_counts() -> np.ndarray:
    """(alloc, free, mi_alloc, mi_free) counters of numba's runtime allocator."""
    return np.array(rtsys.get_allocation_stats(), dtype=np.int64)


def agent_growth(call: Callable[[], None]) -> int:
    """Bytes allocated from agent/ code and still alive after CALLS calls of `call`.

    Only allocations made by agent/ frames count, so the measuring loop's own objects do not.
    """
    only_agent = [tracemalloc.Filter(True, "*/agent/*")]
    tracemalloc.start()
    try:
        call()
        before = tracemalloc.take_snapshot().filter_traces(only_agent)
        for _ in range(CALLS):
            call()
        after = tracemalloc.take_snapshot().filter_traces(only_agent)
    finally:
        tracemalloc.stop()
    return sum(stat.size_diff for stat in after.compare_to(before, "lineno"))


def assert_allocates_nothing(call: Callable[[], None], array_arguments: int) -> None:
    """No agent/ allocation survives CALLS calls, and numba's runtime allocates nothing but the one
    wrapper (MemInfo) per array argument that every call from Python into a numba function needs, all
    of them released on return."""
    for _ in range(20):  # warm-up: compilation, caches, first-use growth
        call()
    growth = agent_growth(call)
    assert growth == 0, f"{growth} bytes still allocated after {CALLS} calls"
    before = nrt_counts()
    for _ in range(CALLS):
        call()
    alloc, free, mi_alloc, mi_free = nrt_counts() - before
    assert alloc == free and mi_alloc == mi_free, "numba runtime memory left allocated"
    assert alloc <= CALLS * array_arguments, f"{alloc / CALLS:.1f} runtime allocations per call"


@pytest.fixture(scope="module")
def path() -> SecondaryPath:
    rng = np.random.default_rng(0)
    return SecondaryPath(84, 0.1 * rng.standard_normal(128))


def single_channel_cases(path: SecondaryPath) -> dict[str, tuple[Callable[[], None], int]]:
    """name -> (one process call, the number of arrays its numba kernel receives)."""
    rng = np.random.default_rng(1)
    x = 0.1 * rng.standard_normal(BLOCK)
    d = 0.1 * rng.standard_normal(BLOCK)
    y = np.zeros(BLOCK)
    e = np.zeros(BLOCK)
    nlms, rls = Nlms(256, 0.1), Rls(32, 0.9995)
    fxnlms, fxrls = FxNlms(256, path, 0.01), FxRls(32, path, 0.9995)
    hybrid = Hybrid(256, 32, path, 0.01, 0.9995)
    return {
        "nlms": (lambda: nlms.process(x, d, y, e), 7),
        "rls": (lambda: rls.process(x, d, y, e), 8),
        "fxnlms": (lambda: fxnlms.process(x, d, y), 8),
        "fxrls": (lambda: fxrls.process(x, d, y), 10),
        "hybrid": (lambda: hybrid.process(x, d, y), 14),
    }


@pytest.mark.parametrize("name", ["nlms", "rls", "fxnlms", "fxrls", "hybrid"])
def test_single_channel_process_allocates_nothing(path: SecondaryPath, name: str) -> None:
    assert_allocates_nothing(*single_channel_cases(path)[name])


@pytest.mark.parametrize("algorithm", ["fxnlms", "fxrls", "hybrid"])
def test_controller_process_allocates_nothing(path: SecondaryPath, algorithm: str) -> None:
    profile = load_profile("headphone-ff-48k")
    paths = [path] * profile.channels.controllers
    ctl = Controller(profile, paths, ControllerSettings.from_profile(profile, algorithm=algorithm))
    rng = np.random.default_rng(2)
    indata = (0.1 * rng.standard_normal((BLOCK, profile.channels.input_channels))).astype(np.float32)
    indata[3, 0] = np.nan
    outdata = np.zeros((BLOCK, profile.channels.output_channels), dtype=np.float32)
    arrays = 2 + sum(isinstance(a, np.ndarray) for a in ctl._args)
    assert_allocates_nothing(lambda: ctl.process(indata, outdata), arrays)


def test_identifier_process_allocates_nothing() -> None:
    profile = load_profile("headphone-ff-48k")
    ident = SecondaryPathIdentifier(profile)
    indata = np.zeros((BLOCK, profile.channels.input_channels), dtype=np.float32)
    outdata = np.zeros((BLOCK, profile.channels.output_channels), dtype=np.float32)
    assert_allocates_nothing(lambda: ident.process(indata, outdata), 14)
