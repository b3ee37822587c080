"""Audio backends: PortAudio through sounddevice, the simulated acoustic plant, and WAV replay.

`open_backend(name, profile, ...)` builds one by name; each module imports its heavy dependency
(PortAudio, the simulator) only when that backend is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.audio.base import AudioBackend, AudioBackendError, AudioCallback, StreamLatency, StreamStatus

if TYPE_CHECKING:
    from agent.profiles import Profile

BACKENDS = ("sounddevice", "simulated", "wav")

__all__ = ["BACKENDS", "AudioBackend", "AudioBackendError", "AudioCallback", "StreamLatency", "StreamStatus"]


def open_backend(name: str, profile: Profile, **options: object) -> AudioBackend:
    """Build the backend called `name` (one of BACKENDS) for `profile`; options go to its constructor."""
    if name == "sounddevice":
        from agent.audio.sounddevice_backend import SounddeviceBackend

        return SounddeviceBackend(profile, **options)
    if name == "simulated":
        from agent.audio.simulated import SimulatedBackend, build_plant

        noise = options.pop("noise", None)
        plant = build_plant(profile, noise if isinstance(noise, str) else None)
        return SimulatedBackend(profile, plant=plant, **options)  # type: ignore[arg-type]
    if name == "wav":
        from agent.audio.wavfile import WavBackend

        return WavBackend(profile, **options)  # type: ignore[arg-type]
    raise AudioBackendError(f"backend {name!r}: allowed values: {', '.join(BACKENDS)}")
