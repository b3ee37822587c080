"""The log-mel feature extractor against a straightforward reference, and its streaming behaviour."""

from __future__ import annotations

import numpy as np
import pytest

from agent.control.features import FeatureExtractor, hz_to_mel, mel_filterbank, mel_to_hz

RATES_HZ = (16000, 48000)


def reference_log_mel(x: np.ndarray, sample_rate_hz: int, n_mels: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Frame by frame, with loops and the textbook formulas: (frames, n_mels) dB and (frames, bins) power."""
    frame = round(0.032 * sample_rate_hz)
    hop = round(0.016 * sample_rate_hz)
    window = np.array([0.5 - 0.5 * np.cos(2 * np.pi * n / frame) for n in range(frame)])
    bins_hz = np.fft.rfftfreq(frame, 1.0 / sample_rate_hz)
    fmax_hz = min(sample_rate_hz / 2, 8000.0)
    mel_lo, mel_hi = 2595 * np.log10(1 + 50.0 / 700), 2595 * np.log10(1 + fmax_hz / 700)
    corners = [
        700 * (10 ** ((mel_lo + i * (mel_hi - mel_lo) / (n_mels + 1)) / 2595) - 1) for i in range(n_mels + 2)
    ]
    filters = np.zeros((n_mels, bins_hz.size))
    for m in range(n_mels):
        lo, mid, hi = corners[m], corners[m + 1], corners[m + 2]
        for k, f in enumerate(bins_hz):
            if lo < f <= mid:
                filters[m, k] = (f - lo) / (mid - lo)
            elif mid < f < hi:
                filters[m, k] = (hi - f) / (hi - mid)
    mels, powers = [], []
    for start in range(0, x.size - frame + 1, hop):
        spectrum = np.fft.rfft(x[start : start + frame] * window)
        power = np.abs(spectrum) ** 2 * (2 / window.sum()) ** 2
        powers.append(power)
        mels.append(10 * np.log10(np.maximum(filters @ power, 1e-10)))
    return np.array(mels), np.array(powers)


def tone(f_hz: float, seconds: float, sample_rate_hz: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate_hz)) / sample_rate_hz
    return (amplitude * np.sin(2 * np.pi * f_hz * t)).astype(np.float32)


@pytest.mark.parametrize("rate", RATES_HZ)
def test_log_mel_matches_the_straightforward_reference(rate: int) -> None:
    rng = np.random.default_rng(3)
    x = (0.1 * rng.standard_normal(rate // 2) + tone(700.0, 0.5, rate)).astype(np.float32)
    expected_mel, expected_power = reference_log_mel(x.astype(np.float64), rate)
    fe = FeatureExtractor(rate)
    fe.push(x)
    assert fe.frames_db.shape == expected_mel.shape
    np.testing.assert_allclose(fe.frames_db, expected_mel, atol=0.01)
    np.testing.assert_allclose(fe.power, expected_power, rtol=1e-3, atol=1e-9)


@pytest.mark.parametrize("rate", RATES_HZ)
def test_one_khz_tone_peaks_in_the_mel_band_centred_nearest_one_khz(rate: int) -> None:
    fe = FeatureExtractor(rate)
    fe.push(tone(1000.0, 0.5, rate))
    centres_hz = mel_to_hz(np.linspace(hz_to_mel(50.0), hz_to_mel(8000.0), 42))[1:-1]
    loudest = np.argmax(fe.frames_db, axis=1)
    assert np.all(loudest == np.argmin(np.abs(centres_hz - 1000.0)))
    assert np.argmax(fe.power[3]) * fe.bin_hz == pytest.approx(1000.0, abs=fe.bin_hz / 2)
    # a sine of amplitude 0.5 on a bin centre reads 0.25 (full-scale sine = 1.0)
    assert fe.power[3].max() == pytest.approx(0.25, rel=1e-3)


@pytest.mark.parametrize("rate", RATES_HZ)
def test_frame_count_and_shapes_follow_the_framing_rule(rate: int) -> None:
    fe = FeatureExtractor(rate, n_mels=64)
    n = rate + 123
    new = fe.push(np.zeros(n, dtype=np.float32))
    assert new == (n - fe.frame_length) // fe.hop + 1
    assert fe.frames_db.shape == (new, 64)
    assert fe.power.shape == (new, fe.frame_length // 2 + 1)
    assert fe.frames_db.dtype == np.float32
    np.testing.assert_allclose(fe.frames_db, -100.0, atol=1e-3)  # silence sits on the floor
    assert fe.frame_end_s(0) == pytest.approx(0.032)
    assert fe.frame_end_s(new - 1) <= n / rate


@pytest.mark.parametrize("rate", RATES_HZ)
def test_streaming_in_odd_sized_pushes_equals_one_shot(rate: int) -> None:
    rng = np.random.default_rng(7)
    x = (0.2 * rng.standard_normal(rate) + tone(440.0, 1.0, rate)).astype(np.float32)
    whole = FeatureExtractor(rate)
    whole.push(x)
    streamed = FeatureExtractor(rate)
    mels, powers, first = [], [], []
    start = 0
    while start < x.size:
        size = int(rng.integers(1, 1500))
        if streamed.push(x[start : start + size]):
            mels.append(streamed.frames_db.copy())
            powers.append(streamed.power.copy())
            first.append(streamed.first_new_index)
        start += size
    assert first == sorted(first) and first[0] == 0
    np.testing.assert_allclose(np.concatenate(mels), whole.frames_db, atol=1e-4)
    np.testing.assert_allclose(np.concatenate(powers), whole.power, rtol=1e-4, atol=1e-10)


def test_a_push_too_short_for_a_frame_yields_none_and_keeps_the_samples() -> None:
    fe = FeatureExtractor(16000)
    assert fe.push(np.zeros(300, dtype=np.float32)) == 0
    assert fe.frames_db.shape == (0, 40)
    assert fe.push(np.zeros(300, dtype=np.float32)) == 1  # 600 samples >= one 512-sample frame


def test_bad_settings_name_the_parameter() -> None:
    with pytest.raises(ValueError, match="n_mels=200"):
        FeatureExtractor(16000, n_mels=200)
    with pytest.raises(ValueError, match="hop_s"):
        FeatureExtractor(16000, hop_s=0.064)
    with pytest.raises(ValueError, match="mono"):
        FeatureExtractor(16000).push(np.zeros((10, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="fmax_hz"):
        mel_filterbank(16000, 512, 40, 50.0, 9000.0)
