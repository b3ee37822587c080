"""Lock-free single-producer/single-consumer rings that carry measurements out of the audio callback.

The audio thread is the only writer and the control thread the only reader. Each ring is preallocated
numpy arrays plus integer counters held in a shared int64 `counters` array: the writer stores the data,
then advances its write counter (`counters[W_BLOCKS]`, `counters[W_SAMPLES]`, which only ever grow); the
reader keeps its own read position and copies what lies between. When the reader falls more than a
ring's capacity behind, the oldest records are gone: the reader counts them as lost instead of reading
torn data (it re-checks the write counter after copying).

`record_block` is the writer: one `@njit` call per block that copies the block's measurements and the
reference-mic samples into the rings. It allocates nothing and cannot raise for any block shape up to
the sample ring's capacity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

# Indices into the shared counters array (int64).
W_BLOCKS = 0  # blocks written to the block ring (its write counter)
W_SAMPLES = 1  # reference samples written to the sample ring (its write counter)
C_UNEXPECTED = 2  # blocks where the processing stage raised (the output was silenced)
C_BAD_FRAMES = 3  # blocks whose frame count was not the profile's block size (silenced, not processed)
C_NONFINITE_IN = 4  # blocks whose reference channel held NaN/Inf (copied to the sample ring as 0)
N_COUNTERS = 8

# Bits of the per-block xrun flags, as PortAudio reports them to the callback.
XRUN_INPUT_UNDERFLOW = 1
XRUN_INPUT_OVERFLOW = 2
XRUN_OUTPUT_UNDERFLOW = 4
XRUN_OUTPUT_OVERFLOW = 8
XRUN_NAMES = ("input_underflow", "input_overflow", "output_underflow", "output_overflow")

# Columns of the block ring's power array: mean squares of the block, summed over channels.
P_ERROR = 0
P_REFERENCE = 1
P_OUTPUT = 2
P_DISTURBANCE = 3  # the controller's estimate of the uncontrolled error (d^ = e - S^ * y)
N_POWERS = 4


@njit(cache=True)
def record_block(
    indata: np.ndarray,
    outdata: np.ndarray,
    channels: np.ndarray,
    ref_channel: int,
    t0_ns: int,
    t1_ns: int,
    xrun_bits: int,
    stage_code: int,
    metrics: np.ndarray,
    metric_index: np.ndarray,
    ring_proc_ns: np.ndarray,
    ring_power: np.ndarray,
    ring_xrun: np.ndarray,
    ring_stage: np.ndarray,
    samples: np.ndarray,
    counters: np.ndarray,
) -> None:
    """Write one block's measurements.

    indata: (frames, n_in) float32, the mic block; outdata: (frames, n_out) float32, the speaker block.
    channels: (3, C) int64, rows: error mic, reference mic and speaker column of each controller (used to
    measure a power the stage's metrics do not hold). ref_channel: the column copied to `samples`.
    t0_ns, t1_ns: perf_counter_ns at callback entry and after the processing stage returned.
    metrics: the stage's float64 metrics vector; metric_index: int64 (N_POWERS,) positions of the error,
    reference, output and disturbance power in it (-1 = not in this stage's metrics: measured here from
    the block as the mean square per controller channel, summed over controllers, like the Controller
    does; with no controller running, the disturbance is the error itself).
    ring_proc_ns: (cap,) int64 processing time in ns; ring_power: (cap, N_POWERS) float64; ring_xrun,
    ring_stage: (cap,) uint8; samples: (scap,) float32; both capacities are powers of two.
    """
    cap = ring_proc_ns.shape[0]
    w = counters[W_BLOCKS]
    i = w & (cap - 1)
    ring_proc_ns[i] = t1_ns - t0_ns
    frames = indata.shape[0]
    for k in range(N_POWERS):
        m = metric_index[k]
        if 0 <= m < metrics.shape[0]:
            ring_power[i, k] = metrics[m]
            continue
        block = outdata if k == P_OUTPUT else indata
        row = P_ERROR if k == P_DISTURBANCE else k
        acc = 0.0
        for c in range(channels.shape[1]):
            col = channels[row, c]
            if 0 <= col < block.shape[1] and block.shape[0] == frames and frames > 0:
                sq = 0.0
                for n in range(frames):
                    v = np.float64(block[n, col])
                    sq += v * v
                acc += sq / frames
        ring_power[i, k] = acc
    ring_xrun[i] = xrun_bits
    ring_stage[i] = stage_code

    scap = samples.shape[0]
    if 0 <= ref_channel < indata.shape[1] and frames <= scap:
        ws = counters[W_SAMPLES]
        bad = False
        for n in range(frames):
            v = indata[n, ref_channel]
            if not np.isfinite(v):
                v = np.float32(0.0)
                bad = True
            samples[(ws + n) & (scap - 1)] = v
        if bad:
            counters[C_NONFINITE_IN] += 1
        counters[W_SAMPLES] = ws + frames
    counters[W_BLOCKS] = w + 1


@njit(cache=True)
def silence_block(outdata: np.ndarray, counters: np.ndarray, counter: int) -> None:
    """Zero `outdata` (frames, n_out) float32 and add one to `counters[counter]` (when counter >= 0)."""
    for n in range(outdata.shape[0]):
        for c in range(outdata.shape[1]):
            outdata[n, c] = 0.0
    if 0 <= counter < counters.shape[0]:
        counters[counter] += 1


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, int(n - 1).bit_length())


@dataclass(frozen=True, slots=True)
class BlockRecords:
    """Blocks drained from the ring, oldest first. proc_ns: (n,) int64 processing time in ns;
    power: (n, N_POWERS) float64 mean squares (columns P_*); xrun: (n,) uint8 bits;
    stage: (n,) uint8 stage codes; lost: blocks overwritten before they could be read."""

    proc_ns: np.ndarray
    power: np.ndarray
    xrun: np.ndarray
    stage: np.ndarray
    lost: int

    def __len__(self) -> int:
        return int(self.proc_ns.shape[0])


class MeasurementRings:
    """The block ring and the reference-sample ring, plus the reader's side (see module docstring)."""

    def __init__(self, block_capacity: int, sample_capacity: int) -> None:
        cap = _pow2_at_least(block_capacity)
        scap = _pow2_at_least(sample_capacity)
        self.counters = np.zeros(N_COUNTERS, dtype=np.int64)
        self.proc_ns = np.zeros(cap, dtype=np.int64)
        self.power = np.zeros((cap, N_POWERS), dtype=np.float64)
        self.xrun = np.zeros(cap, dtype=np.uint8)
        self.stage = np.zeros(cap, dtype=np.uint8)
        self.samples = np.zeros(scap, dtype=np.float32)
        self._read_blocks = 0
        self._read_samples = 0
        self.lost_blocks = 0
        self.lost_samples = 0

    @property
    def block_capacity(self) -> int:
        return int(self.proc_ns.shape[0])

    @property
    def sample_capacity(self) -> int:
        return int(self.samples.shape[0])

    def blocks_written(self) -> int:
        return int(self.counters[W_BLOCKS])

    def drain_blocks(self) -> BlockRecords:
        """Copy out every block written since the last call (control thread only)."""
        cap = self.block_capacity
        w = int(self.counters[W_BLOCKS])
        idx, lost = _unread_slots(w, self._read_blocks, cap)
        proc, power, xrun, stage = self.proc_ns[idx], self.power[idx], self.xrun[idx], self.stage[idx]
        # Records the writer overwrote while we copied are torn: drop them.
        torn = _overwritten(int(self.counters[W_BLOCKS]), w - idx.shape[0], cap)
        if torn:
            proc, power, xrun, stage = proc[torn:], power[torn:], xrun[torn:], stage[torn:]
            lost += torn
        self._read_blocks = w
        self.lost_blocks += lost
        return BlockRecords(proc, power, xrun, stage, lost)

    def drain_samples(self) -> np.ndarray:
        """(n,) float32 reference-mic samples written since the last call, oldest first."""
        scap = self.sample_capacity
        w = int(self.counters[W_SAMPLES])
        idx, lost = _unread_slots(w, self._read_samples, scap)
        out = self.samples[idx]
        torn = _overwritten(int(self.counters[W_SAMPLES]), w - idx.shape[0], scap)
        if torn:
            out = out[torn:]
            lost += torn
        self._read_samples = w
        self.lost_samples += lost
        return out


def _unread_slots(written: int, read: int, capacity: int) -> tuple[np.ndarray, int]:
    """The slots (int64, oldest first) of a ring of `capacity` (a power of two) that hold the records
    written after the first `read` and still there, and how many of those records were already overwritten
    (lost) when the writer had written `written`."""
    lost = max(0, written - read - capacity)
    return np.arange(read + lost, written, dtype=np.int64) & (capacity - 1), lost


def _overwritten(written: int, first: int, capacity: int) -> int:
    """How many records from number `first` on the writer has overwritten once it has written `written`."""
    return max(0, written - first - capacity)
