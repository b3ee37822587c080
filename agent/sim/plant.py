"""The simulated acoustic plant: what the controller's microphones hear, block by block.

`AcousticPlant.step(outdata, indata)` takes the speaker block the controller has just written and
produces the next microphone block, exactly as the audio hardware would:

    plant.step(outdata, indata)        # consumes output block k-1, produces mic block k
    controller.process(indata, outdata)  # reads mic block k, writes output block k

Output sample n (global index) is played at n + 2*block_size + converter_delay_samples (one block of
input buffering, one of output buffering, the converters' group delay), then reaches the error mic
through the acoustic secondary path. Reference mics hear the noise source directly; error mic c hears
primary_c(noise) + secondary_c(speaker c). Cross paths and the speaker's leak into the reference mic
are not modelled (the controllers are independent SISO loops). Every mic adds a low sensor noise
floor. The DAC and the ADCs clip at full scale (1.0).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit

from agent.dsp.primitives import FASTMATH, dot, shift_history
from agent.profiles import Profile
from agent.sim.noise import NoiseSource, make_noise, rms_of_dbfs
from agent.sim.paths import AcousticPath, built_in_path

SENSOR_NOISE_DBFS = -90.0  # microphone self-noise (RMS)


@njit(cache=True, fastmath=FASTMATH)
def plant_step(
    outdata: np.ndarray,
    indata: np.ndarray,
    noise: np.ndarray,
    sensor: np.ndarray,
    sensor_rms: float,
    xhist: np.ndarray,
    shist: np.ndarray,
    primary_reversed: np.ndarray,
    secondary_reversed: np.ndarray,
    reference_channels: np.ndarray,
    error_channels: np.ndarray,
    speaker_channels: np.ndarray,
    loop_delay_samples: int,
) -> None:
    """One block through the plant; allocates nothing.

    outdata: (B, n_out) float32, the speaker block the controller wrote last (full scale 1.0).
    indata: (B, n_in) float32, overwritten with the next mic block.
    noise: (B,) float64, the noise source's samples for this mic block.
    sensor: (B, n_in) float64 unit-variance Gaussian, scaled by sensor_rms (mic self-noise).
    xhist: (Lp - 1 + B,) float64 noise history, oldest first. shist: (n_out, H) float64 speaker history,
    H >= loop_delay_samples + Ls, oldest first. primary_reversed: (C, Lp), secondary_reversed: (C, Ls) float64
    acoustic FIRs, time-reversed (last tap first) so both dot-product operands run forward.
    reference_channels: distinct input channels that hear the noise; error_channels, speaker_channels: (C,).
    loop_delay_samples: 2 * B + converter delay (must be >= B).
    """
    block = indata.shape[0]
    lp = primary_reversed.shape[1]
    ls = secondary_reversed.shape[1]
    # Shift the histories once per block and append the newest samples.
    xpast = xhist.shape[0] - block
    shift_history(xhist, xpast, block)
    for n in range(block):
        xhist[xpast + n] = noise[n]
    spast = shist.shape[1] - block
    for o in range(shist.shape[0]):
        shift_history(shist[o], spast, block)
        for n in range(block):
            v = float(outdata[n, o])
            if not np.isfinite(v):
                v = 0.0
            shist[o, spast + n] = min(1.0, max(-1.0, v))
    for n in range(block):
        for ch in range(indata.shape[1]):
            sensor[n, ch] *= sensor_rms
        for r in range(reference_channels.shape[0]):
            sensor[n, reference_channels[r]] += noise[n]
    base_s = shist.shape[1] - loop_delay_samples - ls + 1
    for c in range(error_channels.shape[0]):
        o = speaker_channels[c]
        for n in range(block):
            heard = dot(primary_reversed[c], 0, xhist, n, lp) + dot(
                secondary_reversed[c], 0, shist[o], base_s + n, ls
            )
            sensor[n, error_channels[c]] += heard
    for n in range(block):
        for ch in range(indata.shape[1]):
            indata[n, ch] = min(1.0, max(-1.0, sensor[n, ch]))


def _per_controller(
    given: AcousticPath | Sequence[AcousticPath] | None, profile: Profile, kind: str
) -> tuple[AcousticPath, ...]:
    count = profile.channels.controllers
    fs = profile.audio.sample_rate_hz
    if given is None:
        return tuple(built_in_path(profile, kind, c) for c in range(count))  # type: ignore[arg-type]
    paths = (given,) * count if isinstance(given, AcousticPath) else tuple(given)
    if len(paths) != count:
        raise ValueError(f"{kind}: {len(paths)} paths given; one, or one per controller ({count}), is needed")
    for p in paths:
        if p.sample_rate_hz != fs:
            raise ValueError(
                f"{kind}: path {p.origin} is at {p.sample_rate_hz} Hz; profile {profile.name} runs at {fs} Hz"
            )
    return paths


def _stack(paths: tuple[AcousticPath, ...]) -> np.ndarray:
    """(C, L) float64: the responses zero-padded to the longest, then time-reversed."""
    length = max(p.ir.shape[0] for p in paths)
    out = np.zeros((len(paths), length))
    for c, p in enumerate(paths):
        out[c, : p.ir.shape[0]] = p.ir
    return np.ascontiguousarray(out[:, ::-1])


class AcousticPlant:
    """The acoustic world around one device: noise source, primary and secondary paths, loop delay.

    `primary`/`secondary`: one path for every controller, one per controller, or None for the
    profile's built-in paths. `noise`: a NoiseSource, or None for the profile's default noise.
    `sensor_noise_dbfs`: mic self-noise RMS, or None for none. `seed` seeds the sensor noise
    (default: the profile's simulation seed).
    """

    def __init__(
        self,
        profile: Profile,
        primary: AcousticPath | Sequence[AcousticPath] | None = None,
        secondary: AcousticPath | Sequence[AcousticPath] | None = None,
        noise: NoiseSource | None = None,
        sensor_noise_dbfs: float | None = SENSOR_NOISE_DBFS,
        seed: int | None = None,
    ) -> None:
        self.profile = profile
        self.primary = _per_controller(primary, profile, "primary")
        self.secondary = _per_controller(secondary, profile, "secondary")
        self.noise = noise if noise is not None else make_noise(profile.simulation.default_noise, profile)
        if self.noise.sample_rate_hz != profile.audio.sample_rate_hz:
            raise ValueError(
                f"noise {self.noise.spec!r} is at {self.noise.sample_rate_hz} Hz; "
                f"profile {profile.name} runs at {profile.audio.sample_rate_hz} Hz"
            )
        ch = profile.channels
        block = profile.audio.block_size
        self.loop_delay_samples = 2 * block + profile.converter_delay_samples
        self._primary = _stack(self.primary)
        self._secondary = _stack(self.secondary)
        self._reference = np.array(sorted(set(ch.reference_mics)), dtype=np.int64)
        self._error = np.array(ch.error_mics, dtype=np.int64)
        self._speaker = np.array(ch.speakers, dtype=np.int64)
        self._sensor_rms = 0.0 if sensor_noise_dbfs is None else rms_of_dbfs(sensor_noise_dbfs)
        self._seed = profile.simulation.seed + 7919 if seed is None else seed
        self._in_shape = (block, ch.input_channels)
        self._out_shape = (block, ch.output_channels)
        self._noise_block = np.zeros(block)
        self._sensor = np.zeros(self._in_shape)
        self._xhist = np.zeros(self._primary.shape[1] - 1 + block)
        self._shist = np.zeros(
            (ch.output_channels, self.loop_delay_samples + self._secondary.shape[1] + block)
        )
        self.reset()

    def reset(self) -> None:
        """Silence every history and restart the sensor noise (the noise source itself runs on)."""
        self._xhist[:] = 0.0
        self._shist[:] = 0.0
        self._rng = np.random.default_rng(self._seed)

    @property
    def electronic_delay_samples(self) -> int:
        """Output index to speaker sound, in samples: 2 * block_size + converter_delay_samples."""
        return self.loop_delay_samples

    @property
    def electronic_delay_s(self) -> float:
        return self.loop_delay_samples / self.profile.audio.sample_rate_hz

    @property
    def causality_margin_s(self) -> float:
        """min over controllers of primary acoustic delay - (electronic delay + secondary acoustic delay).

        Negative: the anti-noise arrives after the noise, so only predictable (tonal) noise can be cancelled.
        """
        return min(
            p.delay_s - (self.electronic_delay_s + s.delay_s)
            for p, s in zip(self.primary, self.secondary, strict=True)
        )

    def true_secondary_responses(self) -> list[np.ndarray]:
        """Per controller, (electronic delay + taps,) float64: output index to error mic (what identification
        measures)."""
        return [np.concatenate([np.zeros(self.loop_delay_samples), s.ir]) for s in self.secondary]

    def step(self, outdata: np.ndarray, indata: np.ndarray) -> None:
        """Consume the speaker block `outdata` ((B, n_out) float32) and write the next mic block into
        `indata` ((B, n_in) float32). Allocates no sample buffers."""
        if outdata.shape != self._out_shape or indata.shape != self._in_shape:
            raise ValueError(
                f"plant.step: outdata {outdata.shape} / indata {indata.shape}; "
                f"expected {self._out_shape} / {self._in_shape}"
            )
        self.noise.fill(self._noise_block)
        self._rng.standard_normal(out=self._sensor)
        plant_step(
            outdata,
            indata,
            self._noise_block,
            self._sensor,
            self._sensor_rms,
            self._xhist,
            self._shist,
            self._primary,
            self._secondary,
            self._reference,
            self._error,
            self._speaker,
            self.loop_delay_samples,
        )
