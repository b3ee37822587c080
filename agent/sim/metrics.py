"""Figures of a closed-loop run: attenuation, its curve over time, convergence time, path-model error.

Pure functions over recorded signals, shared by `anc-agent simulate` and anything else that compares a
controlled run with the same noise uncontrolled. Powers are mean squares in full-scale units (FS^2).
"""

from __future__ import annotations

import math

import numpy as np

CONVERGED_WITHIN_DB = 3.0  # converged once the smoothed attenuation stays within this of the final value


def block_powers(signal: np.ndarray, block_size: int) -> np.ndarray:
    """Mean square per block, summed over channels: signal (N, C) -> (N // block_size,) float64."""
    blocks = signal.shape[0] // block_size
    trimmed = signal[: blocks * block_size].astype(np.float64)
    return np.sum(np.mean(trimmed.reshape(blocks, block_size, -1) ** 2, axis=1), axis=1)


def attenuation_db(without: np.ndarray, with_control: np.ndarray) -> float:
    """10 log10(sum(without) / sum(with_control)) of two power sequences; +inf/NaN when with_control is
    silent/non-finite (callers decide what that means)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(10.0 * np.log10(np.sum(without) / np.sum(with_control)))


def attenuation_curve(
    without: np.ndarray, with_control: np.ndarray, window_blocks: int, block_period_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Moving-average attenuation of two block-power sequences (K,) each -> (time_s (M,), attenuation_db
    (M,)) with M = K - window + 1; time_s is the end of each window, from the start of the sequences."""
    window_blocks = max(1, min(window_blocks, len(without)))
    kernel = np.ones(window_blocks) / window_blocks
    p_without = np.convolve(without, kernel, mode="valid")
    p_with = np.convolve(with_control, kernel, mode="valid")
    with np.errstate(divide="ignore", invalid="ignore"):
        curve = 10.0 * np.log10(p_without / p_with)
    time_s = (np.arange(len(curve)) + window_blocks) * block_period_s
    return time_s, curve


def convergence_time_s(time_s: np.ndarray, curve_db: np.ndarray, final_db: float) -> float | None:
    """First time after which the curve never again falls more than CONVERGED_WITHIN_DB below `final_db`.

    time_s, curve_db: (M,) float64 from `attenuation_curve`. None when there is nothing to converge to
    (final attenuation below CONVERGED_WITHIN_DB, or not finite) or the curve settles only at its end.
    """
    if not math.isfinite(final_db) or final_db < CONVERGED_WITHIN_DB or len(curve_db) == 0:
        return None
    below = np.flatnonzero(~(curve_db >= final_db - CONVERGED_WITHIN_DB))  # NaN counts as below
    if len(below) == 0:
        return float(time_s[0])
    if below[-1] + 1 >= len(time_s):
        return None
    return float(time_s[below[-1] + 1])


def path_error_db(true_response: np.ndarray, estimated_response: np.ndarray) -> float:
    """10 log10(||s_true - s_hat||^2 / ||s_true||^2): both (L,) float64 full responses starting at the same
    index 0 (bulk delay included), zero-padded to the longer one. -inf for a perfect model."""
    length = max(len(true_response), len(estimated_response))
    a = np.zeros(length)
    b = np.zeros(length)
    a[: len(true_response)] = true_response
    b[: len(estimated_response)] = estimated_response
    with np.errstate(divide="ignore"):
        return float(10.0 * np.log10(np.sum((a - b) ** 2) / np.sum(a**2)))
