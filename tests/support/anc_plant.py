"""Closed loops for the DSP tests, on the simulator's own plant (`agent.sim.plant.AcousticPlant`).

The tests choose the signals and the acoustic FIRs; the physics (loop delay of 2 blocks + converters,
speaker and mic clipping, mic self-noise) is the simulator's, so the tests and `anc-agent simulate` run
the same plant. Each loop steps a second, identical plant with the speaker silent and the same sensor-noise
seed, which gives the error the mic would hear without control (the disturbance) block by block.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from agent.profiles import Profile
from agent.sim.paths import AcousticPath
from agent.sim.plant import AcousticPlant


class BlockProcessor(Protocol):
    """Anything run once per audio block: the Controller, the SecondaryPathIdentifier."""

    def process(self, indata: np.ndarray, outdata: np.ndarray) -> None: ...


def decaying_fir(rng: np.random.Generator, delay_samples: int, taps: int, decay_samples: float) -> np.ndarray:
    """(delay_samples + taps,) float64, unit energy: a pure delay, then an exponentially decaying response
    with random detail (like a small enclosure: strong at low frequencies, never a spectral null there)."""
    h = np.zeros(delay_samples + taps)
    h[delay_samples:] = np.exp(-np.arange(taps) / decay_samples) * (1.0 + 0.5 * rng.standard_normal(taps))
    return h / np.sqrt(np.sum(h**2))


def tone(freq_hz: float, sample_rate_hz: int, seconds: float, level: float = 0.1) -> np.ndarray:
    """A sine of amplitude `level`: (round(seconds * rate),) float64."""
    t = np.arange(round(seconds * sample_rate_hz)) / sample_rate_hz
    return level * np.sin(2 * np.pi * freq_hz * t)


class ArrayNoise:
    """A NoiseSource playing a given signal (T,) float64 once, then silence."""

    def __init__(self, samples: np.ndarray, sample_rate_hz: int) -> None:
        self.spec = "test signal"
        self.sample_rate_hz = sample_rate_hz
        self.samples = np.ascontiguousarray(samples, dtype=np.float64)
        self.position = 0

    def fill(self, out: np.ndarray) -> None:
        part = self.samples[self.position : self.position + out.shape[0]]
        out[: part.shape[0]] = part
        out[part.shape[0] :] = 0.0
        self.position += out.shape[0]


Corruption = Callable[[int, np.ndarray], None]


class ProfileLoop:
    """The block loop of a whole profile around one noise source, driving anything with `process`.

    references: (T,) float64, or (C, T) with identical rows (every reference mic hears the one source);
    primaries / secondaries: one acoustic FIR per controller channel (the loop delay is the plant's);
    sensor_noise_rms: every mic's self-noise (0 for none). `indata` holds the last block handed to the
    processor, `outdata` what it wrote; `k` counts the blocks run.
    """

    def __init__(
        self,
        profile: Profile,
        references: np.ndarray,
        primaries: Sequence[np.ndarray],
        secondaries: Sequence[np.ndarray],
        sensor_noise_rms: float = 0.0,
    ) -> None:
        refs = np.atleast_2d(np.asarray(references, dtype=np.float64))
        if not np.array_equal(refs, np.broadcast_to(refs[0], refs.shape), equal_nan=True):
            raise ValueError("references: the plant has one noise source; give every channel the same signal")
        self.profile = profile
        fs = profile.audio.sample_rate_hz
        block = profile.audio.block_size
        ch = profile.channels
        sensor_dbfs = None if sensor_noise_rms <= 0 else 20.0 * np.log10(sensor_noise_rms)

        def plant() -> AcousticPlant:
            return AcousticPlant(
                profile,
                [AcousticPath(np.asarray(h, dtype=np.float64), 0.0, fs, "test") for h in primaries],
                [AcousticPath(np.asarray(h, dtype=np.float64), 0.0, fs, "test") for h in secondaries],
                ArrayNoise(refs[0], fs),
                sensor_dbfs,
                seed=0,
            )

        self.plant = plant()
        self._quiet = plant()
        self.blocks = refs.shape[1] // block
        self.k = 0
        self.indata = np.zeros((block, ch.input_channels), dtype=np.float32)
        self.outdata = np.zeros((block, ch.output_channels), dtype=np.float32)
        self._quiet_in = np.zeros_like(self.indata)
        self._silence = np.zeros_like(self.outdata)
        self._errors = np.array(ch.error_mics, dtype=np.int64)

    def step(
        self, processor: BlockProcessor, corrupt: Corruption | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Run one block; returns (error (C, B), disturbance (C, B)) float64 of that block.

        `corrupt(k, indata)` may alter the mic block k before the processor sees it (fault injection).
        """
        self.plant.step(self.outdata, self.indata)
        self._quiet.step(self._silence, self._quiet_in)
        if corrupt is not None:
            corrupt(self.k, self.indata)
        errors = self.indata[:, self._errors].T.astype(np.float64)
        disturbance = self._quiet_in[:, self._errors].T.astype(np.float64)
        processor.process(self.indata, self.outdata)
        self.k += 1
        return errors, disturbance

    def run(self, processor: BlockProcessor, blocks: int) -> tuple[np.ndarray, np.ndarray]:
        """Run `blocks` blocks; returns (error (C, blocks*B), disturbance (C, blocks*B))."""
        es, ds = zip(*(self.step(processor) for _ in range(blocks)), strict=True)
        return np.concatenate(es, axis=1), np.concatenate(ds, axis=1)
