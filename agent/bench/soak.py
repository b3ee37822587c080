"""Soak runs: ten minutes of simulated time per algorithm on tonal and on broadband noise.

Each run is a closed loop (`agent.bench.closedloop`) on a built-in plant, run as fast as the machine
allows: the tone on the headphone (where only predictable noise can be cancelled) and broadband
noise in the duct (whose acoustic delay leaves the controller time to act). Reported per run: the
attenuation over the last 10 s, the divergence-guard, non-finite and limiter counters of the
controller, and whether the error ever rose `DIVERGED_ABOVE_BASELINE_DB` above the uncontrolled
power over a 1 s window after the first 10 s (a run "diverged" if so).
Not part of the tests (minutes of CPU); `anc-agent bench --soak` runs it.
"""

from __future__ import annotations

import math
import time
from typing import Any, TextIO

import numpy as np

from agent.bench.closedloop import LoopRun, run_closed_loop
from agent.profiles import load_profile

SOAK_S = 600.0
PLANTS = (("headphone-ff-48k", "tonal:150"), ("hvac-duct-16k", "broadband:100-500"))  # (profile, noise)
ALGORITHMS = ("fxnlms", "fxrls", "hybrid")
WINDOW_S = 1.0
SETTLE_S = 10.0
DIVERGED_ABOVE_BASELINE_DB = 6.0  # error this far above the uncontrolled power over a window: diverged


def worst_excess_db(run: LoopRun) -> float:
    """Largest (controlled - uncontrolled) error power over 1 s windows after the first 10 s, in dB.

    NaN when the run is too short to have a window after the first 10 s."""
    per = max(1, round(WINDOW_S / run.block_period_s))
    start = round(SETTLE_S / run.block_period_s)
    n = (run.error_power.size - start) // per
    if n <= 0:
        return float("nan")
    e = run.error_power[start : start + n * per].reshape(n, per).mean(axis=1)
    b = run.baseline_power[start : start + n * per].reshape(n, per).mean(axis=1)
    return float(np.max(10 * np.log10(np.maximum(e, 1e-30) / np.maximum(b, 1e-30))))


def soak_report(seconds: float = SOAK_S, progress: TextIO | None = None) -> dict[str, Any]:
    """Every algorithm on every plant for `seconds` of simulated time; JSON-ready figures and a summary."""
    runs: list[dict[str, Any]] = []
    for profile_name, noise in PLANTS:
        profile = load_profile(profile_name)
        for alg in ALGORITHMS:
            t0 = time.perf_counter()
            run = run_closed_loop(profile, alg, seconds, noise=noise)
            excess = worst_excess_db(run)
            entry = {
                "algorithm": alg,
                "profile": profile.name,
                "noise": noise,
                "simulated_s": seconds,
                "wall_s": time.perf_counter() - t0,
                "attenuation_last_10s_db": run.attenuation_db(last_s=10.0),
                "worst_excess_over_uncontrolled_db": excess if math.isfinite(excess) else None,
                "diverged": bool(excess > DIVERGED_ABOVE_BASELINE_DB) if math.isfinite(excess) else None,
                "divergence_count": run.divergence_count,
                "nonfinite_count": run.nonfinite_count,
                "limiter_count": run.limiter_count,
            }
            runs.append(entry)
            if progress is not None:
                print(f"soak {alg} on {noise}: done in {entry['wall_s']:.0f} s", file=progress, flush=True)
    lines = [f"soak ({seconds:g} s simulated per run):"]
    for r in runs:
        verdict = {True: "DIVERGED", False: "stable", None: "too short"}[r["diverged"]]
        lines.append(
            f"  {r['profile']:<18}{r['algorithm']:<8}{r['noise']:<20}{verdict:<9}"
            f" attenuation {r['attenuation_last_10s_db']:6.1f} dB"
            f"  guard trips {r['divergence_count']}, non-finite {r['nonfinite_count']}, "
            f"limiter {r['limiter_count']}, wall {r['wall_s']:.0f} s"
        )
    return {"seconds": seconds, "runs": runs, "summary": "\n".join(lines)}
