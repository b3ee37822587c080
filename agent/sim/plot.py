"""The picture of one simulated run: error spectrum with and without control, attenuation over time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import signal

from agent.sim.run import FINAL_WINDOW_S, SimulationResult

SPECTRUM_SEGMENT_S = 0.1  # Welch segment length (10 Hz resolution)


def write_plot(result: SimulationResult, path: str | Path) -> None:
    """Write a PNG of `result` to `path` (matplotlib, Agg backend; needs the `plot` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fs = result.sample_rate_hz
    tail = min(round(FINAL_WINDOW_S * fs), result.error_with.shape[0] // 2)
    segment = min(round(SPECTRUM_SEGMENT_S * fs), tail)
    fig, (ax_spec, ax_time) = plt.subplots(2, 1, figsize=(9, 7), layout="constrained")
    for data, label in ((result.error_without, "without control"), (result.error_with, "with control")):
        freqs, psd = signal.welch(data[-tail:, 0], fs=fs, nperseg=segment)
        ax_spec.semilogx(freqs[1:], 10 * np.log10(np.maximum(psd[1:], 1e-20)), label=label)
    ax_spec.set_xlabel("frequency (Hz)")
    ax_spec.set_ylabel("error mic PSD (dBFS/Hz)")
    ax_spec.set_title(
        f"{result.profile}, {result.noise}, {result.settings.algorithm}: "
        f"attenuation {_fmt(result.attenuation_db)} dB over the last {tail / fs:g} s"
    )
    ax_spec.grid(True, which="both", alpha=0.3)
    ax_spec.legend()
    ax_time.plot(result.curve_time_s, result.curve_attenuation_db)
    if result.convergence_s is not None:
        ax_time.axvline(result.convergence_s, color="grey", linestyle="--", label="converged")
        ax_time.legend()
    ax_time.set_xlabel("time since control started (s)")
    ax_time.set_ylabel("attenuation (dB)")
    ax_time.grid(True, alpha=0.3)
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"
