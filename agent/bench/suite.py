"""Runs the kernel benchmark: every case, our kernel and its peers, timed and cross-checked in one run.

For each case (`agent.bench.cases`) our kernel and each applicable peer are built on the same
signals (`agent.bench.signals`) with the same parameters, then
1. cross-checked: a fresh instance of each runs the first `check_samples` samples, and the largest
   difference of its outputs and final coefficients from ours, relative to ours' largest magnitude,
   is reported (`max_rel_diff`, `agrees` when below `AGREEMENT_RTOL`), so a speed ratio is only read
   for implementations that compute the same thing;
2. timed (`agent.bench.harness.measure`): best of `repeats` after a warm-up, each measurement at least
   `min_time_s` of work, single thread. Slow peers (padasip, pyroomacoustics: pure Python per sample)
   run on a shorter chunk and a shorter minimum time.
`ratio` is our samples/s divided by the peer's: above 1 our kernel is faster. A diagnostic figure
`one_call_samples_per_s` gives our kernel handed the whole chunk in one call (no per-block Python
overhead, like the C loop); `call_overhead_us_per_block` is the difference per 64-sample block, and
`one_call_ratio` compares that figure with the peer (kernel against kernel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.bench import creference
from agent.bench.cases import BenchParams, Case, standard_cases
from agent.bench.harness import SAMPLE_RATE_HZ, machine_info, measure
from agent.bench.implementations import Unavailable, prepare
from agent.bench.signals import BLOCK_SIZE, BenchSignals, make_signals

AGREEMENT_RTOL = 1e-6
RATIO_DEFINITION = "ratio = our samples_per_s / peer samples_per_s (above 1: ours is faster)"
PEERS: dict[str, tuple[str, ...]] = {
    "nlms": ("c", "padasip", "pyroomacoustics"),
    "rls": ("c", "padasip", "pyroomacoustics"),
    "fxnlms": ("c",),
    "fxrls": ("c",),
    "hybrid": ("c",),
}
FAST_IMPLEMENTATIONS = ("ours", "ours-one-call", "c")


@dataclass(frozen=True, slots=True)
class RunPlan:
    """How much work each measurement does; `quick` trades precision for a run of a few seconds."""

    chunk_samples: int  # samples per timed call, fast implementations (whole blocks)
    min_time_s: float
    repeats: int
    diagnostic_min_time_s: float  # the one-call diagnostic of our kernels
    diagnostic_repeats: int
    slow_chunk_samples: int  # samples per timed call, pure-Python peers
    slow_min_time_s: float
    slow_repeats: int
    check_samples: int  # samples of the cross-check run

    @classmethod
    def standard(cls) -> RunPlan:
        return cls(
            chunk_samples=48_000, min_time_s=1.0, repeats=3, diagnostic_min_time_s=0.3, diagnostic_repeats=2,
            slow_chunk_samples=4_800, slow_min_time_s=0.3, slow_repeats=2, check_samples=6_400,
        )  # fmt: skip

    @classmethod
    def quick(cls) -> RunPlan:
        return cls(
            chunk_samples=9_600, min_time_s=0.05, repeats=2, diagnostic_min_time_s=0.02, diagnostic_repeats=1,
            slow_chunk_samples=640, slow_min_time_s=0.02, slow_repeats=1, check_samples=1_280,
        )  # fmt: skip


def _rel_diff(ours: np.ndarray, peer: np.ndarray) -> float:
    """max |ours - peer| / max |ours| of two equally shaped float64 arrays; inf if either is non-finite."""
    if not (np.all(np.isfinite(ours)) and np.all(np.isfinite(peer))):
        return math.inf
    scale = max(float(np.max(np.abs(ours))), 1e-300)
    return float(np.max(np.abs(ours - peer))) / scale


def cross_check(case: Case, params: BenchParams, signals: BenchSignals, peer: str, samples: int) -> float:
    """Largest relative difference between fresh runs of ours and `peer` (outputs and coefficients)."""
    ours = prepare("ours", case, params, signals, samples)
    other = prepare(peer, case, params, signals, samples)
    ours.run()
    other.run()
    diff = _rel_diff(ours.coefficients(), other.coefficients())
    out_ours, out_peer = ours.output(), other.output()
    if out_ours is not None and out_peer is not None:
        diff = max(diff, _rel_diff(out_ours, out_peer))
    return diff


def _timed(
    impl: str, case: Case, params: BenchParams, signals: BenchSignals, plan: RunPlan
) -> dict[str, float]:
    fast = impl in FAST_IMPLEMENTATIONS
    n = plan.chunk_samples if fast else plan.slow_chunk_samples
    prepared = prepare(impl, case, params, signals, n)
    if impl == "ours-one-call":
        min_time_s, repeats = plan.diagnostic_min_time_s, plan.diagnostic_repeats
    elif fast:
        min_time_s, repeats = plan.min_time_s, plan.repeats
    else:
        min_time_s, repeats = plan.slow_min_time_s, plan.slow_repeats
    t = measure(prepared.run, n, min_time_s=min_time_s, repeats=repeats)
    return {
        "samples_per_s": t.samples_per_s,
        "x_realtime_48k": t.x_realtime_48k,
        "wall_samples_per_s": t.wall_samples_per_s,
        "cpu_share": t.cpu_share,
        "timed_samples": t.samples,
    }


def run_case(case: Case, params: BenchParams, signals: BenchSignals, plan: RunPlan) -> dict[str, Any]:
    """One row of the report: our figures, then each peer's with its ratio and agreement."""
    row: dict[str, Any] = {"kernel": case.kernel, "taps": case.taps, "label": case.label}
    if case.secondary_taps:
        row["secondary_taps"] = case.secondary_taps
    if case.rls_taps:
        row["rls_taps"] = case.rls_taps
    ours: dict[str, float] | None = None
    try:
        ours = _timed("ours", case, params, signals, plan)
    except Unavailable as exc:
        row.update(samples_per_s=None, x_realtime_48k=None, error=str(exc))
    else:
        row.update(ours)
        one_call = _timed("ours-one-call", case, params, signals, plan)["samples_per_s"]
        row["one_call_samples_per_s"] = one_call
        row["call_overhead_us_per_block"] = 1e6 * BLOCK_SIZE * (1 / ours["samples_per_s"] - 1 / one_call)
    peers: dict[str, Any] = {}
    for peer in PEERS[case.kernel]:
        try:
            figures: dict[str, Any] = _timed(peer, case, params, signals, plan)
        except Unavailable as exc:
            peers[peer] = {"unavailable": str(exc)}
            continue
        if ours is not None:
            figures["ratio"] = ours["samples_per_s"] / figures["samples_per_s"]
            figures["one_call_ratio"] = row["one_call_samples_per_s"] / figures["samples_per_s"]
            diff = cross_check(case, params, signals, peer, plan.check_samples)
            figures["max_rel_diff"] = diff if math.isfinite(diff) else None
            figures["agrees"] = diff <= AGREEMENT_RTOL
        peers[peer] = figures
    row["peers"] = peers
    return row


def _find(rows: list[dict[str, Any]], kernel: str, taps: int) -> dict[str, Any]:
    """The row of `kernel` at `taps`, or an empty dict."""
    return next((r for r in rows if r["kernel"] == kernel and r["taps"] == taps), {})


def check_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The agreed speed targets, each with the measured value and PASS/FAIL (None: not measured)."""
    targets: list[dict[str, Any]] = []

    def add(name: str, value: float | None, threshold: float, higher_is_better: bool = True) -> None:
        if value is None:
            status = "NOT MEASURED"
        elif higher_is_better:
            status = "PASS" if value >= threshold else "FAIL"
        else:
            status = "PASS" if value <= threshold else "FAIL"
        targets.append({"name": name, "value": value, "threshold": threshold, "status": status})

    fx = _find(rows, "fxnlms", 256)
    add("fxnlms 256 (S 128) x real time >= 150", fx.get("x_realtime_48k"), 150.0)
    c = fx.get("peers", {}).get("c", {})
    add(
        "fxnlms 256 (S 128) time / C time <= 1.3",
        1.0 / c["ratio"] if "ratio" in c else None,
        1.3,
        higher_is_better=False,
    )
    add("hybrid 256+32 x real time >= 30", _find(rows, "hybrid", 256).get("x_realtime_48k"), 30.0)
    add("rls 32 x real time >= 40", _find(rows, "rls", 32).get("x_realtime_48k"), 40.0)
    return targets


def run_kernels(quick: bool = False, cases: list[Case] | None = None) -> dict[str, Any]:
    """The whole kernel benchmark as one JSON-ready dict: machine, rows, targets."""
    plan = RunPlan.quick() if quick else RunPlan.standard()
    params = BenchParams()
    cases = cases if cases is not None else standard_cases()
    secondary_taps = max((c.secondary_taps for c in cases), default=0) or 1
    signals = make_signals(max(plan.chunk_samples, plan.check_samples), secondary_taps=secondary_taps)
    try:
        cc = creference.compiler()
        c_info: dict[str, object] = {
            "c_compiler": creference.compiler_version(cc),
            "c_flags": " ".join(creference.CFLAGS),
        }
    except creference.CompilerError as exc:
        c_info = {"c_compiler": f"unavailable: {exc}"}
    machine = machine_info({**c_info, "block_size": BLOCK_SIZE, "quick": quick, "clock": "thread CPU time"})
    rows = [run_case(case, params, signals, plan) for case in cases]
    return {
        "machine": machine,
        "ratio_definition": RATIO_DEFINITION,
        "agreement_rtol": AGREEMENT_RTOL,
        "sample_rate_hz": SAMPLE_RATE_HZ,
        "block_size": BLOCK_SIZE,
        "params": {k: getattr(params, k) for k in ("nlms_mu", "fx_mu", "eps", "leakage", "lam", "delta")},
        "rows": rows,
        "targets": check_targets(rows),
    }
