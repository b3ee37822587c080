"""Adapters that give every implementation of a kernel the same shape: prepare once, then run.

`prepare(impl, case, params, signals, samples)` returns a `Prepared` whose `run()` pushes the first
`samples` samples of the bench signals through the implementation (continuing its adaptive state
from the previous call); `output()` is what it produced on the last run (the error e for the
system-identification kernels NLMS and RLS, the anti-noise y for the filtered-x ones; None where the
API does not return it) and `coefficients()` its adaptive weights now.

How each implementation is driven, which is what its timing includes:
- `ours`: the `agent.dsp` class called once per 64-sample block from Python, exactly as the audio
  callback calls it (so the figure includes the per-block call overhead the device pays);
- `ours-one-call`: the same class handed the whole chunk as one block, the kernel's own speed
  without per-block Python overhead (a diagnostic: the difference is the call overhead);
- `c`: the C reference's `*_run` entry point, one ctypes call for the whole signal with the loop over
  blocks inside C (no per-block overhead: the strictest yardstick);
- `padasip`: `FilterNLMS.run` / `FilterRLS.run` on the matrix of regressors (built beforehand);
- `pyroomacoustics`: `adaptive.NLMS.update` / `adaptive.RLS.update` once per sample (its only API).
A missing library or kernel raises `Unavailable` with the reason, and the row reports it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from agent.bench import creference
from agent.bench.cases import BenchParams, Case
from agent.bench.signals import BLOCK_SIZE, BenchSignals

IMPLEMENTATIONS = ("ours", "ours-one-call", "c", "padasip", "pyroomacoustics")


class Unavailable(Exception):
    """This implementation cannot run this case here; the message says why."""


class Prepared(Protocol):
    samples: int

    def run(self) -> None: ...

    def output(self) -> np.ndarray | None: ...

    def coefficients(self) -> np.ndarray: ...


class _Runner:
    """A `Prepared` made of a closure, the array it writes its output into and its coefficient getter."""

    def __init__(
        self, samples: int, run: Callable[[], None], out: np.ndarray | None, w: Callable[[], np.ndarray]
    ) -> None:
        self.samples = samples
        self._run = run
        self._out = out
        self._w = w

    def run(self) -> None:
        self._run()

    def output(self) -> np.ndarray | None:
        """(samples,) float64 output of the last run (e or y), or None if the API does not give it."""
        return self._out

    def coefficients(self) -> np.ndarray:
        """(taps,) float64 copy of the adaptive coefficients now."""
        return np.array(self._w(), dtype=np.float64)


def _blocks(*arrays: np.ndarray, block: int = BLOCK_SIZE) -> list[tuple[np.ndarray, ...]]:
    """Per-block views of equally long arrays, made once so the timed loop does no slicing."""
    n = arrays[0].size
    return [tuple(a[i : i + block] for a in arrays) for i in range(0, n, block)]


def _ours_one_call(case: Case, p: BenchParams, s: BenchSignals, n: int) -> Prepared:
    """Ours handed the whole chunk as one block: the kernel without the per-block Python call overhead."""
    return _ours(case, p, s, n, block=n)


def _ours(case: Case, p: BenchParams, s: BenchSignals, n: int, block: int = BLOCK_SIZE) -> Prepared:
    kernel: Any  # one of the agent.dsp kernel classes, imported here so a missing one only costs its rows
    try:
        if case.kernel == "nlms":
            from agent.dsp.nlms import Nlms

            kernel = Nlms(case.taps, p.nlms_mu, leakage=0.0, eps=p.eps)
        elif case.kernel == "rls":
            from agent.dsp.rls import Rls

            kernel = Rls(case.taps, p.lam, delta=p.delta, leakage=0.0)
        else:
            from agent.dsp.secondary_path import SecondaryPath

            sec = SecondaryPath(s.secondary_delay_samples, s.secondary_fir[: case.secondary_taps].copy())
            if case.kernel == "fxnlms":
                from agent.dsp.fxnlms import FxNlms

                kernel = FxNlms(case.taps, sec, p.fx_mu, leakage=p.leakage)
            elif case.kernel == "fxrls":
                from agent.dsp.fxrls import FxRls

                kernel = FxRls(case.taps, sec, p.lam, delta=p.delta)
            else:
                from agent.dsp.hybrid import Hybrid

                kernel = Hybrid(
                    case.taps, case.rls_taps, sec, p.fx_mu, p.lam, leakage=p.leakage, delta=p.delta
                )
    except ImportError as exc:
        raise Unavailable(f"agent.dsp kernel not importable: {exc}") from exc
    process = kernel.process
    if case.filtered_x:
        y = np.zeros(n)
        blocks = _blocks(s.x[:n], s.e[:n], y, block=block)

        def run() -> None:
            for xb, eb, yb in blocks:
                process(xb, eb, yb)

        return _Runner(n, run, y, lambda: kernel.w)
    y, e = np.zeros(n), np.zeros(n)
    blocks = _blocks(s.x[:n], s.d[:n], y, e, block=block)

    def run_sysid() -> None:
        for xb, db, yb, eb in blocks:
            process(xb, db, yb, eb)

    return _Runner(n, run_sysid, e, lambda: kernel.w)


def _c(case: Case, p: BenchParams, s: BenchSignals, n: int) -> Prepared:
    try:
        creference.library()
    except creference.CompilerError as exc:
        raise Unavailable(str(exc)) from exc
    x, d, ee = s.x[:n], s.d[:n], s.e[:n]
    fir = s.secondary_fir[: case.secondary_taps].copy()
    if case.kernel in ("nlms", "rls"):
        if case.kernel == "nlms":
            f: creference.CNlms | creference.CRls = creference.CNlms(
                case.taps, p.nlms_mu, 0.0, p.eps, BLOCK_SIZE
            )
        else:
            f = creference.CRls(case.taps, p.lam, p.delta, 0.0, BLOCK_SIZE)
        y, e = np.zeros(n), np.zeros(n)
        return _Runner(n, lambda: f.run(x, d, y, e), e, lambda: f.w)
    if case.kernel == "fxnlms":
        fx: creference.CFxNlms | creference.CFxRls | creference.CHybrid = creference.CFxNlms(
            case.taps, s.secondary_delay_samples, fir, p.fx_mu, p.leakage, p.eps, BLOCK_SIZE
        )
    elif case.kernel == "fxrls":
        fx = creference.CFxRls(case.taps, s.secondary_delay_samples, fir, p.lam, p.delta, 0.0, BLOCK_SIZE)
    else:
        fx = creference.CHybrid(
            case.taps, case.rls_taps, s.secondary_delay_samples, fir, p.fx_mu, p.lam, p.leakage, p.eps,
            p.delta, block=BLOCK_SIZE,
        )  # fmt: skip
    y = np.zeros(n)
    return _Runner(n, lambda: fx.run(x, ee, y), y, lambda: fx.w)


def _regressors(x: np.ndarray, taps: int) -> np.ndarray:
    """(n, taps) matrix whose row k is [x[k], x[k-1], ..., x[k-taps+1]] (zeros before the start)."""
    padded = np.concatenate([np.zeros(taps - 1), x])
    return np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(padded, taps)[:, ::-1])


def _plain_filter_peer(case: Case, module: str) -> Any:
    """The peer library `module` (imported here), for the plain NLMS and RLS cases only; Unavailable
    naming the library for a filtered-x case or when it does not import."""
    library = module.split(".")[0]
    if case.kernel not in ("nlms", "rls"):
        raise Unavailable(f"{library} has no filtered-x filters")
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise Unavailable(f"{library} not importable: {exc}") from exc


def _padasip(case: Case, p: BenchParams, s: BenchSignals, n: int) -> Prepared:
    padasip = _plain_filter_peer(case, "padasip")
    regressors, d = _regressors(s.x[:n], case.taps), s.d[:n]
    if case.kernel == "nlms":
        f = padasip.filters.FilterNLMS(case.taps, mu=p.nlms_mu, eps=p.eps, w="zeros")
    else:  # padasip's R(0) = I / eps and mu is the forgetting factor
        f = padasip.filters.FilterRLS(case.taps, mu=p.lam, eps=p.delta, w="zeros")
    out = np.zeros(n)

    def run() -> None:
        out[:] = f.run(d, regressors)[1]

    return _Runner(n, run, out, lambda: f.w)


def _pyroomacoustics(case: Case, p: BenchParams, s: BenchSignals, n: int) -> Prepared:
    adaptive = _plain_filter_peer(case, "pyroomacoustics.adaptive")
    if case.kernel == "nlms":
        f = adaptive.NLMS(case.taps, mu=p.nlms_mu)
    else:
        f = adaptive.RLS(case.taps, lmbd=p.lam, delta=p.delta, dtype=np.float64)
    x, d = s.x[:n].tolist(), s.d[:n].tolist()

    def run() -> None:
        update = f.update
        for k in range(n):
            update(x[k], d[k])

    return _Runner(n, run, None, lambda: f.w)


PREPARERS: dict[str, Callable[[Case, BenchParams, BenchSignals, int], Prepared]] = {
    "ours": _ours,
    "ours-one-call": _ours_one_call,
    "c": _c,
    "padasip": _padasip,
    "pyroomacoustics": _pyroomacoustics,
}


def prepare(impl: str, case: Case, params: BenchParams, signals: BenchSignals, samples: int) -> Prepared:
    """Build `impl`'s version of `case` on the first `samples` samples (whole blocks) of `signals`."""
    if samples % BLOCK_SIZE or samples > signals.samples:
        raise ValueError(f"samples must be whole blocks within the signals, got {samples}")
    return PREPARERS[impl](case, params, signals, samples)
