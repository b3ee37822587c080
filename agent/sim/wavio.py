"""Reading WAV files for the simulator (impulse responses and recorded noise), at the profile's rate."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy import signal
from scipy.io import wavfile


class AudioFileError(ValueError):
    """An audio file that cannot be used; the message names the file and what was expected."""


def read_wav(path: Path, sample_rate_hz: int) -> np.ndarray:
    """Read a WAV file as (frames, channels) float64 in [-1, 1], resampled to `sample_rate_hz`.

    Integer PCM is scaled to full scale 1.0; float WAVs are taken as they are.
    Raises AudioFileError naming the file when it is missing, not a WAV file or empty.
    """
    if not path.is_file():
        raise AudioFileError(f"{path}: no such file")
    try:
        rate, data = wavfile.read(path)
    except (ValueError, EOFError, OSError) as exc:
        raise AudioFileError(f"{path}: not a readable WAV file ({exc})") from exc
    if data.ndim == 1:
        data = data[:, np.newaxis]
    if np.issubdtype(data.dtype, np.unsignedinteger):
        half = (int(np.iinfo(data.dtype).max) + 1) / 2
        samples = (data.astype(np.float64) - half) / half
    elif np.issubdtype(data.dtype, np.integer):
        samples = data.astype(np.float64) / (int(np.iinfo(data.dtype).max) + 1)
    else:
        samples = data.astype(np.float64)
    if samples.shape[0] == 0:
        raise AudioFileError(f"{path}: the WAV file holds no samples")
    if rate != sample_rate_hz:
        g = math.gcd(int(rate), sample_rate_hz)
        samples = signal.resample_poly(samples, sample_rate_hz // g, int(rate) // g, axis=0)
    return np.ascontiguousarray(samples)
