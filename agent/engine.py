"""The audio callback object: the only code that runs on the audio thread.

`Engine.callback(indata, outdata, frames, time, status)` is what PortAudio (or a simulated backend)
calls once per block. It runs the current processing stage (the start-up secondary-path identifier, the
Controller, or silence) with ONE numba call, then writes the block's measurements with one more
(`agent.audio.rings.record_block`): processing time (perf_counter_ns at entry and after the stage),
error/reference/output/disturbance power from the stage's metrics vector, the xrun flags PortAudio
reported, and the reference-mic samples of controller 0 for the feature extractor and safety detector.

Rules of the audio thread, and how they are kept:
- no allocation: every array is preallocated and flags are read as plain bools into a small int. What
  CPython itself creates per call (the two perf_counter_ns integers, the argument tuples of the numba
  calls, numba's array views) comes from its small-object pools and is released before the block ends:
  nothing is retained and numba's NRT holds nothing more afterwards (measured for thousands of blocks,
  directly and through PortAudio, by `tests/engine/test_callback_allocations.py`);
- no lock, no I/O, no logging: the stage is swapped by the control thread with one attribute store
  (`install`), parameters reach the Controller only through `Controller.apply` (its preallocated
  parameter sets are flipped between blocks), and measurements leave through lock-free rings;
- nothing escapes: a block of the wrong length is silenced and counted; should a stage ever raise, the
  block is silenced and counted in `counters[C_UNEXPECTED]` (the try block costs nothing when nothing
  is raised, and the handler only calls a preallocated kernel).
The first callback of a stream records the audio thread's native id (once) so the control thread can
raise that thread's scheduling priority; nothing else differs between blocks.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from agent.audio.rings import (
    C_BAD_FRAMES,
    C_UNEXPECTED,
    N_POWERS,
    W_BLOCKS,
    XRUN_INPUT_OVERFLOW,
    XRUN_INPUT_UNDERFLOW,
    XRUN_OUTPUT_OVERFLOW,
    XRUN_OUTPUT_UNDERFLOW,
    MeasurementRings,
    record_block,
    silence_block,
)
from agent.profiles import Profile

STAGE_SILENCE = 0
STAGE_IDENTIFY = 1
STAGE_CONTROL = 2
STAGE_NAMES = ("silence", "identify", "control")

_NO_METRICS = np.full(N_POWERS, -1, dtype=np.int64)


class BlockProcessor(Protocol):
    def process(self, indata: np.ndarray, outdata: np.ndarray) -> None: ...


class Silence:
    """A stage that outputs silence (before start-up identification and while a controller is built)."""

    def __init__(self) -> None:
        self._counters = np.zeros(1, dtype=np.int64)

    def process(self, indata: np.ndarray, outdata: np.ndarray) -> None:
        silence_block(outdata, self._counters, -1)


@dataclass(frozen=True)
class Stage:
    """What the callback runs: a processor, its metrics vector and where the powers sit in it.

    metric_index: (N_POWERS,) int64 positions of the error, reference, output and disturbance power in
    `metrics` (agent.audio.rings.P_*); -1 where the stage has none (the block is measured instead).
    """

    processor: BlockProcessor
    code: int
    metrics: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.float64))
    metric_index: np.ndarray = field(default_factory=lambda: _NO_METRICS.copy())


class Engine:
    """The callback object (see module docstring). Build it, `install` a stage, hand `callback` to a
    backend; the control thread drains `rings`."""

    def __init__(self, profile: Profile, block_ring_s: float = 4.0, sample_ring_s: float = 2.0) -> None:
        self.profile = profile
        audio = profile.audio
        self._block_size = audio.block_size
        ch = profile.channels
        self._ref_channel = ch.reference_mics[0]
        self._channels = np.array([ch.error_mics, ch.reference_mics, ch.speakers], dtype=np.int64)
        self.rings = MeasurementRings(
            block_capacity=max(64, audio.blocks(block_ring_s)),
            sample_capacity=max(4 * audio.block_size, audio.samples(sample_ring_s)),
        )
        r = self.rings
        self._counters = r.counters
        self._ring_proc_ns, self._ring_power, self._ring_xrun = r.proc_ns, r.power, r.xrun
        self._ring_stage, self._samples = r.stage, r.samples
        self._stage = Stage(Silence(), STAGE_SILENCE)
        self._perf_ns = time.perf_counter_ns
        self.audio_thread_id = 0
        self._warm_kernels()

    def _warm_kernels(self) -> None:
        """Compile (or load from the cache) the writer kernels before the first real block."""
        scratch = MeasurementRings(8, 8 * self._block_size)
        n_in = self.profile.channels.input_channels
        indata = np.zeros((self._block_size, n_in), dtype=np.float32)
        outdata = np.zeros((self._block_size, self.profile.channels.output_channels), dtype=np.float32)
        silence_block(outdata, scratch.counters, -1)
        record_block(
            indata, outdata, self._channels, self._ref_channel, 0, 0, 0, 0, np.zeros(1), _NO_METRICS,
            scratch.proc_ns, scratch.power, scratch.xrun, scratch.stage, scratch.samples, scratch.counters,
        )  # fmt: skip

    # ----- control thread -----
    def install(self, stage: Stage) -> None:
        """Make `stage` the one the next block runs (a single attribute store: atomic for the callback)."""
        if stage.metric_index.dtype != np.int64 or stage.metric_index.shape != (N_POWERS,):
            raise ValueError(f"stage.metric_index must be an int64 array of shape ({N_POWERS},)")
        self._stage = stage

    @property
    def stage(self) -> Stage:
        return self._stage

    @property
    def blocks(self) -> int:
        """Blocks the callback has completed since the engine was built."""
        return int(self._counters[W_BLOCKS])

    def counter(self, index: int) -> int:
        return int(self._counters[index])

    # ----- audio thread -----
    def callback(self, indata: np.ndarray, outdata: np.ndarray, frames: int, time: Any, status: Any) -> None:
        """One block: run the stage, then record the block. See the module docstring for the rules."""
        t0 = self._perf_ns()
        stage = self._stage
        if self.audio_thread_id == 0:
            self.audio_thread_id = threading.get_native_id()
        bits = 0
        if status.input_underflow:
            bits |= XRUN_INPUT_UNDERFLOW
        if status.input_overflow:
            bits |= XRUN_INPUT_OVERFLOW
        if status.output_underflow:
            bits |= XRUN_OUTPUT_UNDERFLOW
        if status.output_overflow:
            bits |= XRUN_OUTPUT_OVERFLOW
        if frames != self._block_size:
            silence_block(outdata, self._counters, C_BAD_FRAMES)
        else:
            try:
                stage.processor.process(indata, outdata)
            except Exception:
                silence_block(outdata, self._counters, C_UNEXPECTED)
        t1 = self._perf_ns()
        record_block(
            indata, outdata, self._channels, self._ref_channel, t0, t1, bits, stage.code, stage.metrics,
            stage.metric_index,
            self._ring_proc_ns, self._ring_power, self._ring_xrun, self._ring_stage, self._samples,
            self._counters,
        )  # fmt: skip
