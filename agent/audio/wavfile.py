"""The WAV backend: replays a multi-channel WAV file as the mic input, at the profile's block rate.

The file must have at least the profile's input channel count (extra channels are ignored); any rate
(resampled to the profile's) and any encoding `agent.sim.wavio.read_wav` reads. The speaker output is
discarded (a recording cannot hear the anti-noise), so this backend is for replaying field recordings
through the detector, features and telemetry, not for measuring cancellation. `loop=True` replays forever.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agent.audio.base import AudioBackendError
from agent.audio.pump import BlockPump, PumpedBackend
from agent.profiles import Profile
from agent.sim.wavio import AudioFileError, read_wav


class WavBackend(PumpedBackend):
    """AudioBackend replaying a WAV file as mic input (see module docstring)."""

    name = "wav"

    def __init__(
        self, profile: Profile, path: str | Path, loop: bool = True, paced: bool = True, **_: Any
    ) -> None:
        self.profile = profile
        self.path = Path(path)
        try:
            samples = read_wav(self.path, profile.audio.sample_rate_hz)
        except AudioFileError as exc:
            raise AudioBackendError(str(exc)) from exc
        need = profile.channels.input_channels
        if samples.shape[1] < need:
            raise AudioBackendError(
                f"{self.path}: {samples.shape[1]} channels; profile {profile.name} needs at least {need}"
            )
        if samples.shape[0] < profile.audio.block_size:
            raise AudioBackendError(
                f"{self.path}: shorter than one block ({profile.audio.block_size} samples)"
            )
        self.samples = np.ascontiguousarray(samples[:, :need], dtype=np.float32)
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
