"""Learning curves: FxNLMS, FxRLS and the hybrid on the same simulated plants, as a PNG and a summary.

Each panel is one firmware profile's built-in plant with its default noise (a causal broadband duct
and a tonal headphone). Every algorithm runs through `agent.sim.run.simulate` (secondary-path
identification through the loop, then control with the identified path) on identical noise. The curves
are the error-mic power in dBFS, a 100 ms moving average of the block powers, from the moment control
starts; the uncontrolled power (same noise, silent speaker) is drawn for reference. The summary takes
the attenuation and convergence time as `simulate` reports them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agent.profiles import load_profile

ALGORITHMS = ("fxnlms", "fxrls", "hybrid")
PLANTS = ("hvac-duct-16k", "headphone-ff-48k")  # broadband (causal) and tonal
SECONDS = 10.0
QUICK_SECONDS = 1.5
SMOOTHING_S = 0.1
FIGURE_NAME = "learning_curves.png"


def smoothed_power_db(
    signal: np.ndarray, block_size: int, block_period_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Moving-average power of (N, C) error-mic samples -> (time_s (M,), power_dbfs (M,)) float64.

    time_s is the end of each SMOOTHING_S window, from the start of the signal.
    """
    from agent.sim.metrics import block_powers

    powers = block_powers(signal, block_size)
    window = max(1, min(round(SMOOTHING_S / block_period_s), powers.size))
    smooth = np.convolve(powers, np.ones(window) / window, mode="valid")
    return (np.arange(smooth.size) + window) * block_period_s, 10 * np.log10(np.maximum(smooth, 1e-30))


def plot(results: dict[str, list[Any]], path: Path) -> Path:
    """One panel per plant: smoothed error power (dBFS) vs time, one line per algorithm; PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6.5 * len(results), 4.4), squeeze=False)
    for ax, (plant, runs) in zip(axes[0], results.items(), strict=True):
        period_s = runs[0].block_size / runs[0].sample_rate_hz
        t_s, base = smoothed_power_db(runs[0].error_without, runs[0].block_size, period_s)
        ax.plot(t_s, base, color="0.6", lw=1.0, label="no control")
        for r in runs:
            t_s, ctl = smoothed_power_db(r.error_with, r.block_size, period_s)
            att = "diverged" if r.attenuation_db is None else f"{r.attenuation_db:.1f} dB"
            ax.plot(t_s, ctl, lw=1.2, label=f"{r.settings.algorithm} ({att})")
        ax.set_title(f"{plant}: {runs[0].noise}")
        ax.set_xlabel("time since control start (s)")
        ax.set_ylabel(f"error mic power, {SMOOTHING_S * 1e3:g} ms average (dBFS)")
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
        from agent.dsp.controller import ControllerSettings
        from agent.sim.run import simulate
    except ImportError as exc:
        return {"unavailable": f"controller or simulator not importable: {exc}", "summary": ""}
    results: dict[str, list[Any]] = {}
    for name in PLANTS:
        profile = load_profile(name)
        results[name] = [
            simulate(
                profile, seconds=seconds, settings=ControllerSettings.from_profile(profile, algorithm=alg)
            )
            for alg in ALGORITHMS
        ]
    figure = plot(results, Path(plot_dir) / FIGURE_NAME)
    plants: dict[str, dict[str, Any]] = {}
    lines = [f"learning curves ({seconds:g} s of control per run) -> {figure}"]
    for name, runs in results.items():
        plants[name] = {}
        for r in runs:
            figures = r.figures()
            keep = ("attenuation_db", "convergence_s", "diverged", "divergence_count", "identification_s")
            plants[name][r.settings.algorithm] = {k: figures[k] for k in keep}
            att = "-" if r.attenuation_db is None else f"{r.attenuation_db:6.1f} dB"
            conv = "-" if r.convergence_s is None else f"{r.convergence_s:.2f} s"
            lines.append(
                f"  {name:<18}{r.settings.algorithm:<8} attenuation {att}, converged after {conv}, "
                f"divergence guard trips {r.divergence_count}"
            )
    return {"seconds": seconds, "figure": str(figure), "plants": plants, "summary": "\n".join(lines)}
