"""Noise sources for the simulated plant, parsed from a spec string and generated block by block.

Accepted specs (`NOISE_FORMS`): `tonal:HZ` (a tone with decaying harmonics), `broadband:LO-HI`
(Gaussian noise band-limited to LO..HI Hz), `engine:RPM0-RPM1` (engine orders sweeping between two
crankshaft speeds), or the path of a WAV file (looped). Every source writes its next block with
`fill(out)` and allocates nothing there, so a simulated audio backend can stream it forever.
The level is the RMS of the signal, in dB relative to full scale 1.0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from numba import njit
from scipy import signal

from agent.profiles import Profile
from agent.sim.wavio import AudioFileError, read_wav

NOISE_FORMS = "tonal:HZ, broadband:LO-HI, engine:RPM0-RPM1 or the path of a .wav file"
TONAL_HARMONICS = 4  # the fundamental plus three harmonics
HARMONIC_DECAY = 0.5  # amplitude ratio between successive harmonics (and engine orders)
DEFAULT_ENGINE_ORDERS = (2.0, 4.0, 6.0)
ENGINE_SWEEP_S = 10.0  # time for one run-up from RPM0 to RPM1 (then back down, and so on)
BROADBAND_ORDER = 4  # Butterworth band-pass order
NYQUIST_FRACTION = 0.45  # components must stay below this share of the sample rate


class NoiseSpecError(ValueError):
    """A noise spec that cannot be used; the message names the spec and the accepted forms."""


class NoiseSource(Protocol):
    """Fills noise blocks: `fill(out)` overwrites `out` ((B,) float64) with the next B samples."""

    spec: str
    sample_rate_hz: int

    def fill(self, out: np.ndarray) -> None: ...


def rms_of_dbfs(level_dbfs: float) -> float:
    """The RMS amplitude of a signal at `level_dbfs` (0 dBFS = RMS 1.0)."""
    return 10.0 ** (level_dbfs / 20.0)


@njit(cache=True)
def harmonic_fill(
    out: np.ndarray,
    phases: np.ndarray,
    multiples: np.ndarray,
    amplitudes: np.ndarray,
    state: np.ndarray,
) -> None:
    """Sum of sines at multiples of a base frequency that sweeps in a triangle.

    out: (B,) float64, overwritten. phases: (K,) float64 radians, advanced in place. multiples, amplitudes:
    (K,) float64. state: (5,) float64 = [t_s, base_lo_hz, base_hi_hz, sweep_s, sample_rate_hz]; t_s advances.
    A component whose frequency is above 0.45 * sample rate is muted for that sample.
    """
    t_s = state[0]
    lo_hz = state[1]
    hi_hz = state[2]
    sweep_s = state[3]
    fs = state[4]
    dt = 1.0 / fs
    two_pi = 2.0 * np.pi
    for n in range(out.shape[0]):
        cycle = (t_s / sweep_s) % 2.0 if sweep_s > 0.0 else 0.0
        frac = cycle if cycle < 1.0 else 2.0 - cycle
        base_hz = lo_hz + (hi_hz - lo_hz) * frac
        acc = 0.0
        for k in range(phases.shape[0]):
            f_hz = base_hz * multiples[k]
            if f_hz < 0.45 * fs:
                acc += amplitudes[k] * np.sin(phases[k])
            phases[k] += two_pi * f_hz * dt
            if phases[k] > two_pi:
                phases[k] -= two_pi
        out[n] = acc
        t_s += dt
    state[0] = t_s


@njit(cache=True)
def sos_fill(out: np.ndarray, white: np.ndarray, sos: np.ndarray, zi: np.ndarray, gain: float) -> None:
    """Filter `white` through second-order sections into `out` (both (B,) float64), times `gain`.

    sos: (S, 6) float64 [b0 b1 b2 a0 a1 a2] with a0 = 1; zi: (S, 2) float64 transposed-direct-form-II
    state, updated in place.
    """
    for n in range(out.shape[0]):
        x = white[n]
        for s in range(sos.shape[0]):
            y = sos[s, 0] * x + zi[s, 0]
            zi[s, 0] = sos[s, 1] * x - sos[s, 4] * y + zi[s, 1]
            zi[s, 1] = sos[s, 2] * x - sos[s, 5] * y
            x = y
        out[n] = gain * x


class HarmonicNoise:
    """Tones at `multiples` of a base frequency sweeping between `base_lo_hz` and `base_hi_hz`.

    Amplitudes decay by HARMONIC_DECAY per component; the whole is scaled to `level_dbfs` RMS.
    """

    def __init__(
        self,
        spec: str,
        sample_rate_hz: int,
        base_lo_hz: float,
        base_hi_hz: float,
        multiples: tuple[float, ...],
        level_dbfs: float,
        sweep_s: float,
        seed: int,
    ) -> None:
        self.spec = spec
        self.sample_rate_hz = sample_rate_hz
        self.multiples = np.asarray(multiples, dtype=np.float64)
        shape = HARMONIC_DECAY ** np.arange(len(multiples), dtype=np.float64)
        self.amplitudes = shape * rms_of_dbfs(level_dbfs) / math.sqrt(float(np.sum(shape**2)) / 2.0)
        self.phases = np.random.default_rng(seed).uniform(0.0, 2.0 * np.pi, len(multiples))
        self.state = np.array([0.0, base_lo_hz, base_hi_hz, sweep_s, float(sample_rate_hz)])

    def fill(self, out: np.ndarray) -> None:
        harmonic_fill(out, self.phases, self.multiples, self.amplitudes, self.state)


class BroadbandNoise:
    """Gaussian noise through a Butterworth band-pass `lo_hz`..`hi_hz`, scaled to `level_dbfs` RMS."""

    def __init__(
        self, spec: str, sample_rate_hz: int, lo_hz: float, hi_hz: float, level_dbfs: float, seed: int
    ) -> None:
        self.spec = spec
        self.sample_rate_hz = sample_rate_hz
        self.sos = np.ascontiguousarray(
            signal.butter(BROADBAND_ORDER, [lo_hz, hi_hz], btype="bandpass", fs=sample_rate_hz, output="sos"),
            dtype=np.float64,
        )
        _, response = signal.sosfreqz(self.sos, worN=16384)
        power_gain = float(np.mean(np.abs(response) ** 2))  # output power for unit-variance white input
        self.gain = rms_of_dbfs(level_dbfs) / math.sqrt(power_gain)
        self.zi = np.zeros((self.sos.shape[0], 2))
        self.rng = np.random.default_rng(seed)
        self.white = np.zeros(0)

    def fill(self, out: np.ndarray) -> None:
        if self.white.shape[0] != out.shape[0]:  # first block (or a new block size) only
            self.white = np.zeros(out.shape[0])
        self.rng.standard_normal(out=self.white)
        sos_fill(out, self.white, self.sos, self.zi, self.gain)


class FileNoise:
    """A WAV recording (mixed to mono, at the profile rate) looped forever, scaled to `level_dbfs` RMS."""

    def __init__(self, spec: str, sample_rate_hz: int, samples: np.ndarray, level_dbfs: float) -> None:
        self.spec = spec
        self.sample_rate_hz = sample_rate_hz
        rms = math.sqrt(float(np.mean(samples**2)))
        self.samples = np.ascontiguousarray(samples * (rms_of_dbfs(level_dbfs) / rms))
        self.position = 0

    def fill(self, out: np.ndarray) -> None:
        done = 0
        total = out.shape[0]
        while done < total:
            count = min(total - done, self.samples.shape[0] - self.position)
            out[done : done + count] = self.samples[self.position : self.position + count]
            done += count
            self.position = (self.position + count) % self.samples.shape[0]


@dataclass(frozen=True)
class _Range:
    lo: float
    hi: float


def _parse_range(spec: str, body: str, form: str) -> _Range:
    parts = body.split("-")
    try:
        if len(parts) != 2:
            raise ValueError
        lo, hi = float(parts[0]), float(parts[1])
    except ValueError:
        raise NoiseSpecError(f"noise {spec!r}: expected {form} (accepted: {NOISE_FORMS})") from None
    if not (0 < lo < hi) or not (math.isfinite(lo) and math.isfinite(hi)):
        raise NoiseSpecError(f"noise {spec!r}: expected {form} with 0 < low < high")
    return _Range(lo, hi)


def make_noise(spec: str, profile: Profile, seed: int | None = None) -> NoiseSource:
    """Build the noise source `spec` names, at the profile's rate and `simulation.noise_level_dbfs`.

    `seed` defaults to the profile's simulation seed; the same spec and seed give the same samples.
    Raises NoiseSpecError naming the spec and the accepted forms.
    """
    fs = profile.audio.sample_rate_hz
    level = profile.simulation.noise_level_dbfs
    seed = profile.simulation.seed if seed is None else seed
    limit_hz = NYQUIST_FRACTION * fs
    kind, sep, body = spec.partition(":")
    if sep and kind == "tonal":
        try:
            tone_hz = float(body)
        except ValueError:
            raise NoiseSpecError(f"noise {spec!r}: expected tonal:HZ (accepted: {NOISE_FORMS})") from None
        if not (0 < tone_hz < limit_hz):
            raise NoiseSpecError(f"noise {spec!r}: the tone must lie in (0, {limit_hz:g}) Hz at {fs} Hz")
        multiples = tuple(float(k) for k in range(1, TONAL_HARMONICS + 1))
        return HarmonicNoise(spec, fs, tone_hz, tone_hz, multiples, level, 0.0, seed)
    if sep and kind == "broadband":
        band = _parse_range(spec, body, "broadband:LO-HI")
        if band.hi >= limit_hz:
            raise NoiseSpecError(f"noise {spec!r}: the band must end below {limit_hz:g} Hz at {fs} Hz")
        return BroadbandNoise(spec, fs, band.lo, band.hi, level, seed)
    if sep and kind == "engine":
        rpm = _parse_range(spec, body, "engine:RPM0-RPM1")
        orders = profile.engine_orders or DEFAULT_ENGINE_ORDERS
        if min(orders) * rpm.hi / 60.0 >= limit_hz:
            raise NoiseSpecError(
                f"noise {spec!r}: order {min(orders):g} at {rpm.hi:g} rpm is above {limit_hz:g} Hz"
            )
        return HarmonicNoise(spec, fs, rpm.lo / 60.0, rpm.hi / 60.0, orders, level, ENGINE_SWEEP_S, seed)
    path = Path(spec)
    if path.suffix.lower() == ".wav":
        try:
            frames = read_wav(path, fs)
        except AudioFileError as exc:
            raise NoiseSpecError(f"noise {spec!r}: {exc}") from exc
        mono = frames.mean(axis=1)
        if not np.all(np.isfinite(mono)) or not np.any(mono):
            raise NoiseSpecError(f"noise {spec!r}: the recording is silent or holds NaN/Inf samples")
        return FileNoise(spec, fs, mono, level)
    raise NoiseSpecError(f"noise {spec!r}: not understood (accepted: {NOISE_FORMS})")
