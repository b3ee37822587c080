"""Streaming log-mel features of the reference-mic audio, shared by the device and the cloud classifier.

The definition is fixed here and nowhere else, so the device and the cloud model never drift:

- Framing: frame `i` covers samples `[i * hop, i * hop + frame_length)` of the stream, counted from the
  first sample ever pushed (no padding, no centring). `frame_length = round(frame_s * sample_rate_hz)`,
  `hop = round(hop_s * sample_rate_hz)`. A frame is produced once all of its samples have arrived.
- Window: periodic Hann, `w[n] = 0.5 - 0.5 * cos(2 * pi * n / frame_length)`.
- Spectrum: `rfft` of the windowed frame with `n_fft = frame_length` (bins `k * sample_rate_hz / n_fft`,
  `k = 0 .. n_fft // 2`). Power is scaled by `(2 / sum(w)) ** 2`, so a sine of amplitude `A` centred on
  a bin reads `A ** 2` there: a full-scale sine peaks at 0 dB.
- Mel scale (HTK): `mel(f) = 2595 * log10(1 + f / 700)`. `n_mels` triangular filters whose corners are
  `n_mels + 2` points equally spaced in mel from `fmin_hz` to `fmax_hz`; each triangle peaks at 1.0 at its
  centre and is sampled at the bin frequencies (no area normalisation).
- Log: `10 * log10(max(mel_power, 1e-10))`, so silence reads -100 dB.

Everything is preallocated; `push` allocates only what numpy's FFT needs (and grows its buffers once if a
push is larger than any before).
"""

from __future__ import annotations

import numpy as np

POWER_FLOOR = 1e-10  # -100 dB: the log of anything quieter


def hz_to_mel(f_hz: np.ndarray | float) -> np.ndarray:
    """HTK mel of frequencies in Hz (any shape, float64)."""
    return 2595.0 * np.log10(1.0 + np.asarray(f_hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """Inverse of `hz_to_mel` (any shape, float64, Hz)."""
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(
    sample_rate_hz: int, n_fft: int, n_mels: int, fmin_hz: float, fmax_hz: float
) -> np.ndarray:
    """Triangular HTK mel filters, (n_mels, n_fft // 2 + 1) float64, each peaking at 1.0.

    Raises ValueError naming the parameter when a filter would cover no FFT bin (too many mels for the
    frequency resolution) or the band is empty.
    """
    if not 0.0 <= fmin_hz < fmax_hz <= sample_rate_hz / 2:
        raise ValueError(
            f"fmin_hz={fmin_hz:g}, fmax_hz={fmax_hz:g}: need 0 <= fmin_hz < fmax_hz <= {sample_rate_hz / 2:g}"
        )
    bins_hz = np.arange(n_fft // 2 + 1) * (sample_rate_hz / n_fft)
    corners_hz = mel_to_hz(np.linspace(hz_to_mel(fmin_hz), hz_to_mel(fmax_hz), n_mels + 2))
    lower, centre, upper = corners_hz[:-2, None], corners_hz[1:-1, None], corners_hz[2:, None]
    rising = (bins_hz[None, :] - lower) / (centre - lower)
    falling = (upper - bins_hz[None, :]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    empty = np.flatnonzero(weights.sum(axis=1) == 0.0)
    if empty.size:
        raise ValueError(
            f"n_mels={n_mels}: mel filter {int(empty[0])} covers no FFT bin at {sample_rate_hz} Hz with "
            f"n_fft={n_fft}; use fewer mels or a longer frame_s"
        )
    return weights


class FeatureExtractor:
    """Log-mel frames (and their linear power spectra) from a stream of mono float32 samples.

    After each `push`, `frames_db` holds the new log-mel frames `(n_new, n_mels)` float32 in dB and
    `power` the matching linear power spectra `(n_new, n_bins)` float32 (see the module docstring for the
    scaling). Both are views into preallocated buffers, overwritten by the next push: copy what you keep.
    `first_new_index` is the stream index of the first new frame; `frame_end_s(i)` the time its last
    sample was captured.
    """

    def __init__(
        self,
        sample_rate_hz: int,
        frame_s: float = 0.032,
        hop_s: float = 0.016,
        n_mels: int = 40,
        fmin_hz: float = 50.0,
        fmax_hz: float | None = None,
    ) -> None:
        if sample_rate_hz <= 0:
            raise ValueError(f"sample_rate_hz must be positive, got {sample_rate_hz}")
        self.sample_rate_hz = int(sample_rate_hz)
        self.frame_length = round(frame_s * sample_rate_hz)
        self.hop = round(hop_s * sample_rate_hz)
        if self.frame_length < 16:
            raise ValueError(f"frame_s={frame_s:g} gives {self.frame_length} samples; at least 16 needed")
        if not 0 < self.hop <= self.frame_length:
            raise ValueError(f"hop_s={hop_s:g} must be positive and at most frame_s={frame_s:g}")
        if n_mels < 1:
            raise ValueError(f"n_mels must be at least 1, got {n_mels}")
        self.n_fft = self.frame_length
        self.n_bins = self.n_fft // 2 + 1
        self.bin_hz = self.sample_rate_hz / self.n_fft
        self.n_mels = int(n_mels)
        self.fmin_hz = float(fmin_hz)
        self.fmax_hz = float(min(sample_rate_hz / 2, 8000.0) if fmax_hz is None else fmax_hz)
        n = np.arange(self.frame_length)
        self.window = (0.5 - 0.5 * np.cos(2.0 * np.pi * n / self.frame_length)).astype(np.float32)
        self.power_scale = float((2.0 / self.window.sum(dtype=np.float64)) ** 2)
        self.filters = mel_filterbank(
            self.sample_rate_hz, self.n_fft, self.n_mels, self.fmin_hz, self.fmax_hz
        ).astype(np.float32)
        self._filters_t = np.ascontiguousarray(self.filters.T)
        self._pending = np.zeros(self.frame_length, dtype=np.float32)  # samples not yet fully framed
        self._n_pending = 0
        self.frames_done = 0
        self.first_new_index = 0
        self._capacity = 0
        self._allocate(64)
        self._n_new = 0

    def _allocate(self, max_frames: int) -> None:
        self._capacity = max_frames
        self._work = np.zeros(self.frame_length + max_frames * self.hop, dtype=np.float32)
        self._windowed = np.zeros((max_frames, self.frame_length), dtype=np.float32)
        self._power = np.zeros((max_frames, self.n_bins), dtype=np.float32)
        self._mel = np.zeros((max_frames, self.n_mels), dtype=np.float32)
        self._imag_sq = np.zeros((max_frames, self.n_bins), dtype=np.float32)

    @property
    def frames_db(self) -> np.ndarray:
        """The log-mel frames of the last push, (n_new, n_mels) float32, dB."""
        return self._mel[: self._n_new]

    @property
    def power(self) -> np.ndarray:
        """The power spectra of the last push, (n_new, n_bins) float32, linear (full-scale sine = 1)."""
        return self._power[: self._n_new]

    def frame_end_s(self, index: int) -> float:
        """Stream time (s) just after the last sample of frame `index`."""
        return (index * self.hop + self.frame_length) / self.sample_rate_hz

    def frame_start_s(self, index: int) -> float:
        """Stream time (s) of the first sample of frame `index`."""
        return index * self.hop / self.sample_rate_hz

    def push(self, samples: np.ndarray) -> int:
        """Append `samples` ((n,) float32 mono, full scale 1.0) and compute every frame now complete.

        Returns the number of new frames, readable through `frames_db` and `power` until the next push.
        """
        x = np.asarray(samples)
        if x.ndim != 1:
            raise ValueError(f"samples must be one-dimensional (mono), got shape {x.shape}")
        total = self._n_pending + x.shape[0]
        n_new = 0 if total < self.frame_length else (total - self.frame_length) // self.hop + 1
        if n_new > self._capacity:
            self._allocate(max(n_new, 2 * self._capacity))
        work = self._work
        if total > work.shape[0]:  # only while too few samples for the buffered frames: grow once
            self._work = work = np.zeros(total, dtype=np.float32)
        work[: self._n_pending] = self._pending[: self._n_pending]
        work[self._n_pending : total] = x
        self.first_new_index = self.frames_done
        self._n_new = n_new
        if n_new:
            frames = np.lib.stride_tricks.sliding_window_view(work[:total], self.frame_length)[:: self.hop]
            windowed = self._windowed[:n_new]
            np.multiply(frames[:n_new], self.window, out=windowed)
            spectrum = np.fft.rfft(windowed, axis=1)
            power = self._power[:n_new]
            np.multiply(spectrum.real, spectrum.real, out=power, casting="same_kind")
            imag_sq = self._imag_sq[:n_new]
            np.multiply(spectrum.imag, spectrum.imag, out=imag_sq, casting="same_kind")
            power += imag_sq
            power *= self.power_scale
            mel = self._mel[:n_new]
            np.matmul(power, self._filters_t, out=mel)
            np.maximum(mel, POWER_FLOOR, out=mel)
            np.log10(mel, out=mel)
            mel *= 10.0
            self.frames_done += n_new
        consumed = n_new * self.hop
        keep = total - consumed
        self._pending[:keep] = work[consumed:total]
        self._n_pending = keep
        return n_new

    def reset(self) -> None:
        """Forget the stream: the next push starts at frame 0 and time 0."""
        self._n_pending = 0
        self.frames_done = 0
        self.first_new_index = 0
        self._n_new = 0
