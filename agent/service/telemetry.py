"""The 1 Hz telemetry aggregate, built on the control thread from the blocks drained out of the rings.

One record per interval: attenuation estimate (dB), error and reference power (dBFS), callback time
p50/p99 (µs and as a share of the block period), slow blocks (processing over half the block period),
xruns by kind, blocks, blocks lost from the ring, CPU % of the process (all threads, 100 = one core),
mode, sequence number.

Attenuation estimate: the true attenuation needs the error signal without control, which a running
device never hears. The Controller estimates it per block as d^ = e - S^ * y (the error mic minus the
anti-noise as heard through the identified secondary path) and reports its power
(`M_DISTURBANCE_POWER`); `attenuation_db = 10 log10(sum of d^ power / sum of error power)` over the
interval, reported in mode `anc` only (None otherwise).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from agent.audio.rings import P_DISTURBANCE, P_ERROR, P_REFERENCE, XRUN_NAMES, BlockRecords

_FLOOR = 1e-20
SLOW_BLOCK_SHARE = 0.5  # a block whose processing takes more than this share of the block period is slow


def power_dbfs(mean_square: float) -> float | None:
    """Mean square (full scale 1.0) in dBFS (a full-scale sine reads -3 dBFS), None when not finite."""
    if not math.isfinite(mean_square):
        return None
    return round(10.0 * math.log10(max(mean_square, _FLOOR)), 2)


class TelemetryAggregator:
    """Accumulates drained blocks and turns them into one record per interval."""

    def __init__(self, block_period_s: float) -> None:
        self.block_period_us = block_period_s * 1e6
        self._slow_ns = int(SLOW_BLOCK_SHARE * block_period_s * 1e9)
        self._seq = 0
        self._reset_interval()
        self._cpu_t = time.process_time()
        self._wall_t = time.monotonic()
        self.total_xruns = 0

    def _reset_interval(self) -> None:
        self._proc: list[np.ndarray] = []
        self._err_sum = 0.0
        self._ref_sum = 0.0
        self._dist_sum = 0.0
        self._n_power = 0
        self._xruns = dict.fromkeys(XRUN_NAMES, 0)
        self._blocks = 0
        self._slow = 0
        self._lost = 0

    def add(self, records: BlockRecords) -> None:
        if records.lost:
            self._lost += records.lost
        n = len(records)
        if not n:
            return
        self._blocks += n
        self._proc.append(records.proc_ns)
        self._slow += int(np.count_nonzero(records.proc_ns > self._slow_ns))
        err, ref = records.power[:, P_ERROR], records.power[:, P_REFERENCE]
        dist = records.power[:, P_DISTURBANCE]
        ok = np.isfinite(err) & np.isfinite(ref) & np.isfinite(dist)
        self._err_sum += float(err[ok].sum())
        self._ref_sum += float(ref[ok].sum())
        self._dist_sum += float(dist[ok].sum())
        self._n_power += int(ok.sum())
        bits = records.xrun
        if bits.any():
            for k, name in enumerate(XRUN_NAMES):
                hits = int(np.count_nonzero(bits & (1 << k)))
                self._xruns[name] += hits
                self.total_xruns += hits

    def attenuation_db(self) -> float | None:
        """10 log10(d^ power / error power) over the interval so far, None without data."""
        if self._n_power == 0 or self._dist_sum <= _FLOOR:
            return None
        return round(10.0 * math.log10(self._dist_sum / max(self._err_sum, _FLOOR)), 2)

    def record(self, mode: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Close the interval and return its record (`mode`: the effective mode during the interval)."""
        now_wall, now_cpu = time.monotonic(), time.process_time()
        wall = max(now_wall - self._wall_t, 1e-9)
        cpu_pct = 100.0 * (now_cpu - self._cpu_t) / wall
        self._wall_t, self._cpu_t = now_wall, now_cpu
        attenuation_db = self.attenuation_db() if mode == "anc" else None
        proc_us = np.concatenate(self._proc) / 1e3 if self._proc else np.zeros(0)
        p50 = float(np.percentile(proc_us, 50)) if proc_us.size else None
        p99 = float(np.percentile(proc_us, 99)) if proc_us.size else None
        n = max(self._n_power, 1)
        rec: dict[str, Any] = {
            "seq": self._seq,
            "ts": round(time.time(), 3),
            "interval_s": round(wall, 3),
            "mode": mode,
            "attenuation_db": attenuation_db,
            "error_power_dbfs": power_dbfs(self._err_sum / n) if self._n_power else None,
            "reference_power_dbfs": power_dbfs(self._ref_sum / n) if self._n_power else None,
            "callback_us_p50": None if p50 is None else round(p50, 2),
            "callback_us_p99": None if p99 is None else round(p99, 2),
            "callback_load_p99": None if p99 is None else round(p99 / self.block_period_us, 4),
            "xruns": sum(self._xruns.values()),
            "xrun_kinds": dict(self._xruns),
            "blocks": self._blocks,
            "slow_blocks": self._slow,
            "blocks_lost": self._lost,
            "cpu_pct": round(cpu_pct, 2),
        }
        if extra:
            rec.update(extra)
        self._seq += 1
        self._reset_interval()
        return rec
