"""A tiny acoustic plant for the DSP tests: primary and secondary FIRs and the block loop delay.

The error mic hears e[n] = (P * x)[n] + (S * s)[n], where s is the speaker signal: the controller's output
block k is played 2 blocks + `converter_delay_samples` later (one block of input and one of output
buffering). Everything is float64 numpy, sample-exact and deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from scipy.signal import lfilter

from agent.profiles import Profile


class BlockProcessor(Protocol):
    """Anything run once per audio block: the Controller, the SecondaryPathIdentifier."""

    def process(self, indata: np.ndarray, outdata: np.ndarray) -> None: ...


def decaying_fir(rng: np.random.Generator, delay_samples: int, taps: int, decay_samples: float) -> np.ndarray:
    """(delay_samples + taps,) float64, unit energy: a pure delay, then an exponentially decaying response
    with random detail (like a small enclosure: strong at low frequencies, never a spectral null there)."""
    h = np.zeros(delay_samples + taps)
    h[delay_samples:] = np.exp(-np.arange(taps) / decay_samples) * (1.0 + 0.5 * rng.standard_normal(taps))
    return h / np.sqrt(np.sum(h**2))


class BlockPlant:
    """Single-channel loop: `step(y_block)` records the output block; `error_block()` gives the next e.

    x (T,) float64 is the whole reference signal; primary (K,) and secondary (J,) are FIRs (the loop delay
    is added here, not in `secondary`); optional white sensor noise at the error mic (part of d, which
    the controller cannot cancel). Blocks are consumed in order.
    """

    def __init__(
        self,
        x: np.ndarray,
        primary: np.ndarray,
        secondary: np.ndarray,
        block: int,
        converter_delay_samples: int,
        sensor_noise_rms: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.x = x.copy()
        self.block = block
        self.loop_delay = 2 * block + converter_delay_samples
        self.d = lfilter(primary, [1.0], x)
        if sensor_noise_rms > 0:
            self.d = self.d + sensor_noise_rms * np.random.default_rng(seed).standard_normal(x.shape[0])
        self.secondary = secondary
        self.played = np.zeros(x.shape[0] + self.loop_delay + block)
        self._zi = np.zeros(secondary.shape[0] - 1)
        self.k = 0

    @property
    def blocks(self) -> int:
        return self.x.shape[0] // self.block

    def reference_block(self) -> np.ndarray:
        return self.x[self.k * self.block : (self.k + 1) * self.block]

    def disturbance_block(self) -> np.ndarray:
        return self.d[self.k * self.block : (self.k + 1) * self.block]

    def error_block(self) -> np.ndarray:
        """(B,) float64 error-mic signal of the current block (depends only on outputs already played)."""
        lo = self.k * self.block
        seg = self.played[lo : lo + self.block]
        anti, self._zi = lfilter(self.secondary, [1.0], seg, zi=self._zi)
        return self.disturbance_block() + anti

    def play(self, y: np.ndarray) -> None:
        """Record the controller output of the current block and advance to the next block."""
        lo = self.k * self.block + self.loop_delay
        self.played[lo : lo + self.block] = y
        self.k += 1


def tone(freq_hz: float, sample_rate_hz: int, seconds: float, level: float = 0.1) -> np.ndarray:
    """A sine of amplitude `level`: (round(seconds * rate),) float64."""
    t = np.arange(round(seconds * sample_rate_hz)) / sample_rate_hz
    return level * np.sin(2 * np.pi * freq_hz * t)


class ProfileLoop:
    """The block loop of a whole profile: one `BlockPlant` per controller channel, wired to the mic and
    speaker channel numbers of the profile, driving anything with `process(indata, outdata)`.

    references: (C, T) float64, one reference signal per controller channel (channels sharing a
    reference mic must be given the same signal); primaries / secondaries: C FIRs each. `indata` holds
    the last block handed to the processor, `outdata` what it wrote.
    """

    def __init__(
        self,
        profile: Profile,
        references: np.ndarray,
        primaries: Sequence[np.ndarray],
        secondaries: Sequence[np.ndarray],
        sensor_noise_rms: float = 0.0,
    ) -> None:
        self.profile = profile
        ch = profile.channels
        block = profile.audio.block_size
        self.plants = [
            BlockPlant(
                references[c],
                primaries[c],
                secondaries[c],
                block,
                profile.converter_delay_samples,
                sensor_noise_rms,
                seed=c,
            )
            for c in range(ch.controllers)
        ]
        self.indata = np.zeros((block, ch.input_channels), dtype=np.float32)
        self.outdata = np.zeros((block, ch.output_channels), dtype=np.float32)

    @property
    def blocks(self) -> int:
        return self.plants[0].blocks

    def step(self, processor: BlockProcessor) -> tuple[np.ndarray, np.ndarray]:
        """Run one block; returns (error (C, B), disturbance (C, B)) float64 of that block."""
        ch = self.profile.channels
        errors = []
        dists = []
        for c, plant in enumerate(self.plants):
            e = plant.error_block()
            self.indata[:, ch.reference_mics[c]] = plant.reference_block()
            self.indata[:, ch.error_mics[c]] = e
            errors.append(e)
            dists.append(plant.disturbance_block().copy())
        processor.process(self.indata, self.outdata)
        for c, plant in enumerate(self.plants):
            plant.play(self.outdata[:, ch.speakers[c]].astype(np.float64))
        return np.array(errors), np.array(dists)

    def run(self, processor: BlockProcessor, blocks: int) -> tuple[np.ndarray, np.ndarray]:
        """Run `blocks` blocks; returns (error (C, blocks*B), disturbance (C, blocks*B))."""
        es, ds = zip(*(self.step(processor) for _ in range(blocks)), strict=True)
        return np.concatenate(es, axis=1), np.concatenate(ds, axis=1)
