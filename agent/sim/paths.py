"""Acoustic paths of the simulated plant, as FIR impulse responses.

A path is either built from a profile's `simulation` section (a fractional-delay propagation
peak, a decaying random reflection tail and, for the loudspeaker path, a mild band-pass) or loaded
from an impulse-response file (WAV or .npy). The responses here are purely acoustic: the electronic
loop delay (buffering and converters) is added by the plant, not by the path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from scipy import signal

from agent.profiles import Profile
from agent.sim.wavio import AudioFileError, read_wav

PathKind = Literal["primary", "secondary"]

# Half-width of the windowed-sinc fractional delay, in samples.
FRACTIONAL_DELAY_HALF_WIDTH = 16
# Energy of the reflection tail relative to the direct sound, per path kind.
TAIL_LEVEL_DB: dict[str, float] = {"primary": -6.0, "secondary": -12.0}
# The loudspeaker's pass band (first-order band-pass edges) for the built-in secondary path.
SPEAKER_LOW_HZ = 20.0
SPEAKER_HIGH_FRACTION = 0.4  # of the sample rate
# Longest impulse response accepted from a file, in seconds.
MAX_FILE_IR_S = 2.0


class PathFileError(AudioFileError):
    """An impulse-response file that cannot be used; the message names the file and what was expected."""


@dataclass(frozen=True)
class AcousticPath:
    """One acoustic transfer path: `ir` is (taps,) float64, unit gain per unit pressure, at `sample_rate_hz`.

    `delay_s` is the propagation delay (the built-in value, or the main peak's time for a loaded
    file); `origin` says where the response came from ("built-in" or the file path).
    """

    ir: np.ndarray
    delay_s: float
    sample_rate_hz: int
    origin: str

    @property
    def delay_samples(self) -> float:
        return self.delay_s * self.sample_rate_hz


def fractional_delay(delay_samples: float, length: int) -> np.ndarray:
    """A Hann-windowed sinc peaking at `delay_samples` (may be fractional): (length,) float64.

    The taps before sample 0 are dropped (a propagation delay shorter than the window's half
    width gives a causal, slightly skewed peak).
    """
    if delay_samples < 0:
        raise ValueError(f"delay_samples must be >= 0, got {delay_samples}")
    n = np.arange(length, dtype=np.float64)
    offset = n - delay_samples
    window = np.where(
        np.abs(offset) < FRACTIONAL_DELAY_HALF_WIDTH,
        0.5 + 0.5 * np.cos(np.pi * offset / FRACTIONAL_DELAY_HALF_WIDTH),
        0.0,
    )
    return np.sinc(offset) * window


def reflection_tail(
    start_samples: int, decay_s: float, length: int, sample_rate_hz: int, seed: int
) -> np.ndarray:
    """Gaussian reflections from `start_samples` on, decaying by 60 dB over `decay_s`: (length,) float64.

    Unit energy (sum of squares 1), or all zeros when `decay_s` is 0.
    """
    tail = np.zeros(length)
    count = min(length - start_samples, round(decay_s * sample_rate_hz))
    if count <= 0:
        return tail
    rng = np.random.default_rng(seed)
    t_s = np.arange(count) / sample_rate_hz
    envelope = np.exp(-math.log(1000.0) * t_s / decay_s)  # amplitude -60 dB at decay_s
    tail[start_samples : start_samples + count] = rng.standard_normal(count) * envelope
    return tail / math.sqrt(float(np.sum(tail**2)))


def built_in_path(profile: Profile, kind: PathKind, channel: int = 0) -> AcousticPath:
    """The profile's built-in `kind` path for controller `channel` (each channel gets its own reflections)."""
    sim = profile.simulation
    fs = profile.audio.sample_rate_hz
    delay_ms = sim.primary_delay_ms if kind == "primary" else sim.secondary_delay_ms
    delay = delay_ms * 1e-3 * fs
    reverb_s = sim.reverb_ms * 1e-3
    length = math.ceil(delay) + FRACTIONAL_DELAY_HALF_WIDTH + round(reverb_s * fs) + 1
    direct = fractional_delay(delay, length)
    seed = sim.seed * 1000 + channel * 10 + (0 if kind == "primary" else 1)
    tail = reflection_tail(math.ceil(delay) + 1, reverb_s, length, fs, seed)
    ir = direct + tail * math.sqrt(float(np.sum(direct**2))) * 10 ** (TAIL_LEVEL_DB[kind] / 20)
    if kind == "secondary":
        b, a = signal.butter(1, [SPEAKER_LOW_HZ, SPEAKER_HIGH_FRACTION * fs], btype="bandpass", fs=fs)
        ir = signal.lfilter(b, a, ir)
    return AcousticPath(
        ir=np.ascontiguousarray(ir, dtype=np.float64),
        delay_s=delay_ms * 1e-3,
        sample_rate_hz=fs,
        origin="built-in",
    )


def load_path(file: str | Path, sample_rate_hz: int) -> AcousticPath:
    """Load an impulse response from a WAV file (resampled to `sample_rate_hz` when its rate differs)
    or a .npy file (a 1-D float array taken to be at `sample_rate_hz`).

    Raises PathFileError naming the file and what was expected.
    """
    path = Path(file)
    if not path.is_file():
        raise PathFileError(f"{path}: no such impulse-response file")
    suffix = path.suffix.lower()
    if suffix == ".wav":
        try:
            frames = read_wav(path, sample_rate_hz)
        except AudioFileError as exc:
            raise PathFileError(str(exc)) from exc
        if frames.shape[1] != 1:
            raise PathFileError(f"{path}: expected a mono impulse response, got {frames.shape[1]} channels")
        ir = frames[:, 0]
    elif suffix == ".npy":
        try:
            raw = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise PathFileError(f"{path}: not a readable .npy array ({exc})") from exc
        if raw.ndim != 1 or not np.issubdtype(raw.dtype, np.number) or np.iscomplexobj(raw):
            raise PathFileError(
                f"{path}: expected a 1-D real array (taps,), got shape {raw.shape} dtype {raw.dtype}"
            )
        ir = raw.astype(np.float64)
    else:
        raise PathFileError(f"{path}: unsupported impulse-response format (allowed: .wav, .npy)")
    if ir.size == 0:
        raise PathFileError(f"{path}: the impulse response is empty")
    if ir.size > MAX_FILE_IR_S * sample_rate_hz:
        raise PathFileError(
            f"{path}: {ir.size} taps is longer than {MAX_FILE_IR_S:g} s at {sample_rate_hz} Hz"
        )
    if not np.all(np.isfinite(ir)):
        raise PathFileError(f"{path}: the impulse response holds NaN or Inf values")
    if not np.any(ir):
        raise PathFileError(f"{path}: the impulse response is all zeros")
    delay_s = int(np.argmax(np.abs(ir))) / sample_rate_hz
    return AcousticPath(
        ir=np.ascontiguousarray(ir), delay_s=delay_s, sample_rate_hz=sample_rate_hz, origin=str(path)
    )
