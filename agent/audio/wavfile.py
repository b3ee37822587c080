"""The WAV backend: replays a multi-channel WAV file as the mic input, at the profile's block rate.

The file must have the profile's sample rate and at least its input channel count (extra channels are
ignored); PCM 16/24/32-bit integer or 32-bit float. The speaker output is discarded (a WAV recording
cannot hear the anti-noise), so this backend is for replaying field recordings through the detector,
features and telemetry, not for measuring cancellation. `loop=True` replays forever.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agent.audio.base import AudioBackendError, AudioCallback, StreamLatency
from agent.audio.pump import BlockPump
from agent.profiles import Profile


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Samples `(n, channels)` float32 in [-1, 1] and the sample rate of a PCM or float WAV file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise AudioBackendError(f"{path}: cannot read: {exc.strerror}") from exc
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise AudioBackendError(f"{path}: not a WAV file (expected a RIFF/WAVE header)")
    fmt_tag, channels, rate, bits, data = _parse_chunks(path, raw)
    if fmt_tag == 3 and bits == 32:
        samples = np.frombuffer(data, dtype="<f4")
    elif fmt_tag in (1, 0xFFFE) and bits in (16, 24, 32):
        width = bits // 8
        if width == 3:
            b = np.frombuffer(data[: len(data) - len(data) % 3], dtype=np.uint8).reshape(-1, 3)
            ints = (
                b[:, 0].astype(np.int32) | (b[:, 1].astype(np.int32) << 8) | (b[:, 2].astype(np.int32) << 16)
            )
            ints = (ints << 8) >> 8
            samples = ints.astype(np.float32) / float(1 << 23)
        else:
            dtype = "<i2" if width == 2 else "<i4"
            samples = np.frombuffer(data, dtype=dtype).astype(np.float32) / float(1 << (bits - 1))
    elif fmt_tag == 0xFFFE and bits == 32:
        samples = np.frombuffer(data, dtype="<f4")
    else:
        raise AudioBackendError(
            f"{path}: unsupported WAV encoding (format {fmt_tag}, {bits} bit); "
            "allowed: PCM 16/24/32-bit integer, 32-bit float"
        )
    usable = len(samples) - len(samples) % channels
    return np.ascontiguousarray(samples[:usable].reshape(-1, channels), dtype=np.float32), rate


def _parse_chunks(path: Path, raw: bytes) -> tuple[int, int, int, int, bytes]:
    pos, fmt, data = 12, None, None
    while pos + 8 <= len(raw):
        cid, size = raw[pos : pos + 4], int.from_bytes(raw[pos + 4 : pos + 8], "little")
        body = raw[pos + 8 : pos + 8 + size]
        if cid == b"fmt " and size >= 16:
            fmt = (
                int.from_bytes(body[0:2], "little"),
                int.from_bytes(body[2:4], "little"),
                int.from_bytes(body[4:8], "little"),
                int.from_bytes(body[14:16], "little"),
            )
            if fmt[0] == 0xFFFE and size >= 26:
                sub = int.from_bytes(body[24:26], "little")
                fmt = (3 if sub == 3 else 1, fmt[1], fmt[2], fmt[3])
        elif cid == b"data":
            data = body
        pos += 8 + size + (size & 1)
    if fmt is None or data is None:
        raise AudioBackendError(
            f"{path}: truncated WAV file (missing {'fmt' if fmt is None else 'data'} chunk)"
        )
    if fmt[1] <= 0:
        raise AudioBackendError(f"{path}: WAV file declares {fmt[1]} channels")
    return fmt[0], fmt[1], fmt[2], fmt[3], data


class WavBackend:
    """AudioBackend replaying a WAV file as mic input (see module docstring)."""

    name = "wav"

    def __init__(
        self, profile: Profile, path: str | Path, loop: bool = True, paced: bool = True, **_: Any
    ) -> None:
        self.profile = profile
        self.path = Path(path)
        samples, rate = read_wav(self.path)
        need = profile.channels.input_channels
        if rate != profile.audio.sample_rate_hz:
            raise AudioBackendError(
                f"{self.path}: sample rate {rate} Hz; profile {profile.name} needs "
                f"{profile.audio.sample_rate_hz} Hz"
            )
        if samples.shape[1] < need:
            raise AudioBackendError(
                f"{self.path}: {samples.shape[1]} channels; profile {profile.name} needs at least {need}"
            )
        if samples.shape[0] < profile.audio.block_size:
            raise AudioBackendError(
                f"{self.path}: shorter than one block ({profile.audio.block_size} samples)"
            )
        self.samples = np.ascontiguousarray(samples[:, :need])
        self.loop = loop
        self._pos = 0
        block = profile.audio.block_size

        def source(outdata: np.ndarray, indata: np.ndarray) -> bool:
            n = self.samples.shape[0]
            if self._pos >= n and not self.loop:
                return False
            filled = 0
            while filled < block:
                if self._pos >= n:
                    if not self.loop:
                        indata[filled:] = 0.0
                        break
                    self._pos = 0
                take = min(block - filled, n - self._pos)
                indata[filled : filled + take] = self.samples[self._pos : self._pos + take]
                filled += take
                self._pos += take
            return True

        self._pump = BlockPump(
            profile.audio,
            need,
            profile.channels.output_channels,
            source,
            paced=paced,
            prime_input=True,
            name="audio-wav",
        )

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
        period_s = self.profile.audio.block_period_s
        return StreamLatency(input_s=period_s, output_s=period_s)

    def stall(self, stalled: bool) -> bool:
        self._pump.stall(stalled)
        return True
