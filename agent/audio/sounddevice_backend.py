"""The hardware backend: one duplex PortAudio stream through python-sounddevice.

Opened from the profile: input/output device (None = the system default, a name substring or an index),
sample rate, block size, the profile's input and output channel counts, float32 samples and the
profile's `latency` ("low" by default). PortAudio calls the engine callback from its own real-time thread.
Once started, `latency` reports what PortAudio measured for the opened stream.
"""

from __future__ import annotations

from typing import Any

from agent.audio.base import AudioBackendError, AudioCallback, StreamLatency
from agent.profiles import Profile


class SounddeviceBackend:
    """AudioBackend over `sounddevice.Stream` (see module docstring)."""

    name = "sounddevice"

    def __init__(self, profile: Profile, **_: Any) -> None:
        self.profile = profile
        self._stream: Any = None

    def _device(self, which: str, value: str | int | None) -> str | int | None:
        import sounddevice as sd

        if value is None:
            return None
        try:
            sd.query_devices(value, kind=which)
        except (ValueError, sd.PortAudioError) as exc:
            names = ", ".join(f"{i}: {d['name']}" for i, d in enumerate(sd.query_devices()))
            raise AudioBackendError(
                f"profile {self.profile.name}: audio.{which}_device {value!r}: {exc} (available: {names})"
            ) from exc
        return value

    def start(self, callback: AudioCallback) -> None:
        import sounddevice as sd

        p = self.profile
        device = (self._device("input", p.input_device), self._device("output", p.output_device))
        try:
            stream = sd.Stream(
                samplerate=p.audio.sample_rate_hz,
                blocksize=p.audio.block_size,
                device=device,
                channels=(p.channels.input_channels, p.channels.output_channels),
                dtype="float32",
                latency=p.latency,
                callback=callback,
                prime_output_buffers_using_stream_callback=False,
            )
            stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            raise AudioBackendError(
                f"profile {p.name}: cannot open the audio stream ({p.audio.sample_rate_hz} Hz, block "
                f"{p.audio.block_size}, {p.channels.input_channels} in / {p.channels.output_channels} out, "
                f"device {device}): {exc}"
            ) from exc
        self._stream = stream

    def stop(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.stop()
            stream.close()

    @property
    def running(self) -> bool:
        return self._stream is not None and bool(self._stream.active)

    @property
    def latency(self) -> StreamLatency:
        if self._stream is None:
            return StreamLatency(0.0, 0.0)
        lat_in, lat_out = self._stream.latency
        return StreamLatency(input_s=float(lat_in), output_s=float(lat_out))

    @property
    def cpu_load(self) -> float:
        """PortAudio's estimate of the callback's share of the available time (0..1)."""
        return float(self._stream.cpu_load) if self._stream is not None else 0.0

    def stall(self, stalled: bool) -> bool:
        return False
