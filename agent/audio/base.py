"""The one interface every audio backend implements, and the status flags a callback receives.

A backend owns the clock: it calls `callback(indata, outdata, frames, time, status)` once per block with
`indata` of shape `(block_size, input_channels)` float32 (the mic samples of this block) and expects
`outdata` `(block_size, output_channels)` float32 filled before it returns, exactly like a PortAudio
duplex stream driven through sounddevice. The engine therefore runs unchanged on real hardware, on the
simulated acoustic plant and on a replayed WAV file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

# (indata, outdata, frames, time, status) -> None, the sounddevice callback signature.
AudioCallback = Callable[[np.ndarray, np.ndarray, int, Any, Any], None]


class StreamStatus:
    """The xrun flags of one block, with the attribute names of `sounddevice.CallbackFlags`.

    Backends that are not PortAudio hand the callback one of these; reading an attribute allocates
    nothing (plain bools).
    """

    __slots__ = ("input_overflow", "input_underflow", "output_overflow", "output_underflow")

    def __init__(self) -> None:
        self.input_underflow = False
        self.input_overflow = False
        self.output_underflow = False
        self.output_overflow = False

    def clear(self) -> None:
        self.input_underflow = False
        self.input_overflow = False
        self.output_underflow = False
        self.output_overflow = False

    def __bool__(self) -> bool:
        return self.input_underflow or self.input_overflow or self.output_underflow or self.output_overflow


@dataclass(frozen=True, slots=True)
class StreamLatency:
    """Latency the backend reports once running, in seconds (PortAudio's figures on hardware)."""

    input_s: float
    output_s: float


class AudioBackend(Protocol):
    """Something that calls an audio callback once per block until stopped."""

    name: str

    def start(self, callback: AudioCallback) -> None:
        """Open the stream and start calling `callback` (from the backend's own thread)."""
        ...

    def stop(self) -> None:
        """Stop calling the callback and close the stream; returns once no callback is running."""
        ...

    @property
    def latency(self) -> StreamLatency:
        """Measured input and output latency; zeros before `start`."""
        ...

    @property
    def running(self) -> bool: ...

    def stall(self, stalled: bool) -> bool:
        """Stop (True) or resume (False) delivering blocks without closing the stream, to exercise the
        watchdog. Returns False when the backend cannot do this (real hardware)."""
        ...


class AudioBackendError(RuntimeError):
    """The backend cannot be opened or configured; the message names the device or file and why."""
