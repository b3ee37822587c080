"""Timing harness: best-of-N timing of a callable, and a description of the machine.

What is timed is only the call handed to `measure` (the kernel working through signals prepared
beforehand); making the inputs, compiling (numba JIT, the C build) and the warm-up run are not.
A measurement repeats the call until at least `min_time_s` of work has been done, so short kernels
are not lost in timer resolution; the figure kept is the best (fastest) of `repeats` measurements.

Every measurement reads two clocks: the wall clock and the CPU time of the calling thread. All the
work is single-threaded and runs on the calling thread, so on an idle machine the two agree; on a
shared machine (other processes competing for the cores) the wall clock also counts the time the
thread spent waiting for a core, which says nothing about the kernel. The figures therefore use the
thread CPU time; `cpu_share` (CPU time / wall time of the best measurement) says how contended the
machine was, and the wall-clock rate is reported next to it.
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

SAMPLE_RATE_HZ = 48_000  # "times real time" is quoted at this rate


@dataclass(frozen=True, slots=True)
class Timing:
    """Samples processed per second (best of the repeats) and that figure as a multiple of real time."""

    samples: int  # samples processed in one measurement
    best_s: float  # thread CPU time of the fastest measurement
    best_wall_s: float  # wall-clock time of the fastest measurement (by the wall clock)
    cpu_share: float  # CPU / wall time of the measurement with the best wall time (1.0: uncontended)
    repeats: int

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.best_s

    @property
    def wall_samples_per_s(self) -> float:
        return self.samples / self.best_wall_s

    @property
    def x_realtime_48k(self) -> float:
        return self.samples_per_s / SAMPLE_RATE_HZ


def measure(
    run: Callable[[], None], samples_per_call: int, min_time_s: float = 1.0, repeats: int = 3
) -> Timing:
    """Time `run` (which processes `samples_per_call` samples per call) after one warm-up call.

    Each of `repeats` measurements calls `run` enough times to last at least `min_time_s`
    (estimated from the warm-up call); the best measurement is kept.
    """
    c0 = time.thread_time()
    run()
    first_s = max(time.thread_time() - c0, 1e-6)
    calls = max(1, math.ceil(min_time_s / first_s))
    best_cpu_s = best_wall_s = math.inf
    share = 1.0
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.thread_time()
        for _ in range(calls):
            run()
        cpu_s, wall_s = time.thread_time() - c0, time.perf_counter() - t0
        best_cpu_s = min(best_cpu_s, max(cpu_s, 1e-9))
        if wall_s < best_wall_s:
            best_wall_s, share = wall_s, min(1.0, cpu_s / wall_s)
    return Timing(calls * samples_per_call, best_cpu_s, best_wall_s, share, repeats)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info(extra: dict[str, object] | None = None) -> dict[str, object]:
    """What a reader needs to compare figures across machines: CPU, load, interpreter and library versions."""
    info: dict[str, object] = {
        "cpu": _cpu_model(),
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": _version("numpy"),
        "numba": _version("numba"),
        "padasip": _version("padasip"),
        "pyroomacoustics": _version("pyroomacoustics"),
        "threads": 1,
        "sample_rate_hz": SAMPLE_RATE_HZ,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    info.update(extra or {})
    return info
