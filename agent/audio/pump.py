"""A thread that clocks blocks through an audio callback: the heart of the non-PortAudio backends.

Each block the pump calls `callback(indata, outdata, frames, None, status)` and then hands the
filled `outdata` to a `source` that produces the next `indata`. Paced, it keeps a monotonic deadline per
block (block k is due at start + k * block period) and sleeps until it. Behind schedule it runs blocks
back to back to catch up (as a sound card's buffer would absorb a late wake-up); more than `late_s`
behind, it flags an output underflow on the next block (what a real sound card would report) and
re-anchors the clock instead of bursting further. Unpaced, it runs as fast as the
CPU allows. With `prime_input` the source fills the first mic block before the first callback (a file);
otherwise the first block is silence (a plant that has heard nothing yet). It can be told to stall
(deliver no blocks while the stream stays open) so the service watchdog can be tested. `PumpedBackend`
is the backend side every pump-driven backend shares (start, stop, stall, latency).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from agent.audio.base import AudioCallback, StreamLatency, StreamStatus
from agent.timing import AudioFormat

if TYPE_CHECKING:
    from agent.profiles import Profile

# source(outdata (B, n_out) float32, indata (B, n_in) float32) -> bool: consume the speaker block,
# write the next mic block; False ends the stream (end of a file).
BlockSource = Callable[[np.ndarray, np.ndarray], bool]


class BlockPump:
    """Drives `callback` from a dedicated thread, block by block."""

    def __init__(
        self,
        audio: AudioFormat,
        input_channels: int,
        output_channels: int,
        source: BlockSource,
        paced: bool = True,
        late_s: float = 0.05,
        prime_input: bool = False,
        name: str = "audio-pump",
    ) -> None:
        self.audio = audio
        self._source = source
        self._paced = paced
        self._late_ns = int(max(late_s, 2 * audio.block_period_s) * 1e9)
        self._period_ns = audio.block_size * 1_000_000_000 // audio.sample_rate_hz
        self._period_rem = audio.block_size * 1_000_000_000 % audio.sample_rate_hz
        self._indata = np.zeros((audio.block_size, input_channels), dtype=np.float32)
        self._outdata = np.zeros((audio.block_size, output_channels), dtype=np.float32)
        self._status = StreamStatus()
        self._stop = threading.Event()
        self._resume = threading.Event()
        self._resume.set()
        self._thread: threading.Thread | None = None
        self._name = name
        if prime_input:
            source(self._outdata, self._indata)
        self.blocks = 0
        self.late_events = 0
        self.finished = threading.Event()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, callback: AudioCallback) -> None:
        if self.running:
            raise RuntimeError("the block pump is already running")
        self._stop.clear()
        self.finished.clear()
        self._thread = threading.Thread(target=self._run, args=(callback,), name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        self._resume.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def stall(self, stalled: bool) -> None:
        if stalled:
            self._resume.clear()
        else:
            self._resume.set()

    @property
    def stalled(self) -> bool:
        return not self._resume.is_set()

    def _run(self, callback: AudioCallback) -> None:
        frames = self.audio.block_size
        indata, outdata, status = self._indata, self._outdata, self._status
        sr = self.audio.sample_rate_hz
        start_ns = time.monotonic_ns()
        k = 0  # blocks since the clock was last anchored
        try:
            while not self._stop.is_set():
                if not self._resume.is_set():
                    self._resume.wait()
                    start_ns, k = time.monotonic_ns(), 0
                    continue
                if self._paced:
                    due_ns = start_ns + k * self._period_ns + (k * self._period_rem) // sr
                    now_ns = time.monotonic_ns()
                    if now_ns < due_ns:
                        time.sleep((due_ns - now_ns) / 1e9)
                    elif now_ns - due_ns > self._late_ns:
                        status.output_underflow = True
                        self.late_events += 1
                        start_ns, k = now_ns, 0
                callback(indata, outdata, frames, None, status)
                status.clear()
                self.blocks += 1
                k += 1
                if not self._source(outdata, indata):
                    break
        finally:
            self.finished.set()


class PumpedBackend:
    """The AudioBackend methods of every backend clocked by a `BlockPump`: start, stop, stall, latency.

    A subclass sets `self.profile` and `self._pump` in its constructor; the loop it reports is one block
    of input and one of output buffering, like the contract in `agent.audio.base` says.
    """

    name: str
    profile: Profile
    _pump: BlockPump

    @property
    def pump(self) -> BlockPump:
        return self._pump

    def start(self, callback: AudioCallback) -> None:
        self._pump.start(callback)

    def stop(self) -> None:
        self._pump.stop()

    @property
    def running(self) -> bool:
        return self._pump.running

    @property
    def latency(self) -> StreamLatency:
        """One block period of input and one of output latency, in seconds."""
        period_s = self.profile.audio.block_period_s
        return StreamLatency(input_s=period_s, output_s=period_s)

    def stall(self, stalled: bool) -> bool:
        self._pump.stall(stalled)
        return True
