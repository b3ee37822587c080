"""The measurement rings: order, wrap-around, loss accounting and non-finite samples."""

from __future__ import annotations

import numpy as np

from agent.audio.rings import (
    C_NONFINITE_IN,
    P_DISTURBANCE,
    P_ERROR,
    P_OUTPUT,
    P_REFERENCE,
    MeasurementRings,
    record_block,
)

B = 16
CHANNELS = np.array([[1], [0], [0]], dtype=np.int64)  # error mic 1, reference mic 0, speaker 0
NO_METRICS = np.full(4, -1, dtype=np.int64)


def _write(rings: MeasurementRings, indata: np.ndarray, k: int, metrics: np.ndarray | None = None) -> None:
    outdata = np.full((indata.shape[0], 1), 0.5, dtype=np.float32)
    index = NO_METRICS if metrics is None else np.arange(4, dtype=np.int64)
    record_block(
        indata, outdata, CHANNELS, 0, 1000 * k, 1000 * k + 10 + k, k & 15, 2,
        np.zeros(4) if metrics is None else metrics, index,
        rings.proc_ns, rings.power, rings.xrun, rings.stage, rings.samples, rings.counters,
    )  # fmt: skip


def _block(k: int) -> np.ndarray:
    x = np.zeros((B, 2), dtype=np.float32)
    x[:, 0] = k * B + np.arange(B)  # reference channel: a running sample index
    x[:, 1] = 2.0
    return x


def test_blocks_and_samples_drain_in_order_across_wraparound() -> None:
    rings = MeasurementRings(block_capacity=8, sample_capacity=4 * B)
    seen_proc, seen_samples = [], []
    for k in range(30):
        _write(rings, _block(k), k)
        if k % 3 == 2:
            rec = rings.drain_blocks()
            assert rec.lost == 0
            seen_proc.extend(rec.proc_ns.tolist())
            seen_samples.extend(rings.drain_samples().tolist())
    assert seen_proc == [10 + k for k in range(30)]
    assert seen_samples == list(range(30 * B))


def test_powers_are_measured_from_the_block_when_the_stage_has_no_metrics() -> None:
    rings = MeasurementRings(8, 4 * B)
    x = _block(0)
    _write(rings, x, 0)
    rec = rings.drain_blocks()
    assert rec.power[0, P_ERROR] == 4.0  # error mic holds 2.0
    assert np.isclose(rec.power[0, P_REFERENCE], np.mean(x[:, 0].astype(np.float64) ** 2))
    assert rec.power[0, P_OUTPUT] == 0.25
    assert rec.power[0, P_DISTURBANCE] == 4.0  # nothing cancels: the disturbance is the error itself
    _write(rings, x, 1, metrics=np.array([7.0, 8.0, 9.0, 10.0]))
    assert rings.drain_blocks().power[0].tolist() == [7.0, 8.0, 9.0, 10.0]


def test_a_slow_reader_counts_lost_blocks_and_gets_only_intact_ones() -> None:
    rings = MeasurementRings(block_capacity=8, sample_capacity=2 * B)
    for k in range(20):
        _write(rings, _block(k), k)
    rec = rings.drain_blocks()
    assert rec.lost == 12
    assert rec.proc_ns.tolist() == [10 + k for k in range(12, 20)]
    samples = rings.drain_samples()
    assert samples.tolist() == list(range(18 * B, 20 * B))
    assert rings.lost_samples == 18 * B


def test_non_finite_reference_samples_become_zero_and_are_counted() -> None:
    rings = MeasurementRings(8, 4 * B)
    x = _block(1)
    x[3, 0] = np.nan
    x[5, 0] = np.inf
    _write(rings, x, 0)
    samples = rings.drain_samples()
    assert samples[3] == 0.0 and samples[5] == 0.0
    assert np.all(np.isfinite(samples))
    assert rings.counters[C_NONFINITE_IN] == 1


def test_xrun_bits_and_stage_codes_are_recorded() -> None:
    rings = MeasurementRings(8, 4 * B)
    for k in range(4):
        _write(rings, _block(k), k)
    rec = rings.drain_blocks()
    assert rec.xrun.tolist() == [0, 1, 2, 3]
    assert rec.stage.tolist() == [2, 2, 2, 2]
