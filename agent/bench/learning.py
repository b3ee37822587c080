"""Learning curves: FxNLMS, FxRLS and the hybrid on the same simulated plants, as a PNG and a summary.

Each panel is one firmware profile's built-in plant with its default noise (a causal broadband duct
and a tonal headphone); every algorithm runs on identical noise after its own secondary-path
identification (`agent.bench.closedloop`). The curves are the error-mic power in dBFS, one-pole
smoothed (100 ms), from the moment control starts; the uncontrolled power is drawn for reference.
The summary gives, per algorithm, the final attenuation and the time to reach 90 % of it (in dB).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.bench.closedloop import LoopRun, run_closed_loop
from agent.profiles import load_profile

ALGORITHMS = ("fxnlms", "fxrls", "hybrid")
PLANTS = ("hvac-duct-16k", "headphone-ff-48k")  # broadband (causal) and tonal
SECONDS = 12.0
QUICK_SECONDS = 1.5
SMOOTHING_TAU_S = 0.1
FIGURE_NAME = "learning_curves.png"


def _summary(run: LoopRun, seconds: float) -> dict[str, Any]:
    return {
        "final_attenuation_db": run.attenuation_db(last_s=seconds / 10),
        "convergence_s": run.convergence_s(SMOOTHING_TAU_S),
        "divergence_count": run.divergence_count,
        "nonfinite_count": run.nonfinite_count,
        "identification_s": run.identification_s,
    }


def plot(runs: dict[str, list[LoopRun]], path: Path) -> Path:
    """Write one panel per plant (smoothed error power in dB vs time, one line per algorithm) to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(runs), figsize=(6.5 * len(runs), 4.2), squeeze=False)
    for ax, (plant, plant_runs) in zip(axes[0], runs.items(), strict=True):
        for i, run in enumerate(plant_runs):
            ctl, base = run.smoothed_db(SMOOTHING_TAU_S)
            t_s = np.arange(ctl.size) * run.block_period_s
            if i == 0:
                ax.plot(t_s, base, color="0.6", lw=1.0, label="no control")
            ax.plot(t_s, ctl, lw=1.2, label=f"{run.algorithm} ({run.attenuation_db(t_s[-1] / 10):.1f} dB)")
        ax.set_title(f"{plant}: {plant_runs[0].noise}")
        ax.set_xlabel("time since control start (s)")
        ax.set_ylabel("error mic power, 100 ms smoothing (dBFS)")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
    fig.suptitle("Learning curves on the simulated plants (final attenuation in brackets)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def learning_report(plot_dir: Path, quick: bool = False) -> dict[str, Any]:
    """Run every algorithm on every plant, write the figure, return the figures (JSON-ready)."""
    seconds = QUICK_SECONDS if quick else SECONDS
    try:
        runs = {
            name: [run_closed_loop(load_profile(name), alg, seconds) for alg in ALGORITHMS] for name in PLANTS
        }
    except ImportError as exc:
        return {"unavailable": f"controller or identifier not importable: {exc}", "summary": ""}
    figure = plot(runs, Path(plot_dir) / FIGURE_NAME)
    results = {name: {r.algorithm: _summary(r, seconds) for r in rs} for name, rs in runs.items()}
    lines = [f"learning curves ({seconds:g} s simulated per run) -> {figure}"]
    for name, per_alg in results.items():
        for alg, s in per_alg.items():
            conv = "-" if s["convergence_s"] is None else f"{s['convergence_s']:.2f} s"
            lines.append(
                f"  {name:<18}{alg:<8} final attenuation {s['final_attenuation_db']:6.1f} dB, "
                f"90% of it after {conv}, divergence guard trips {s['divergence_count']}"
            )
    return {"seconds": seconds, "figure": str(figure), "plants": results, "summary": "\n".join(lines)}
