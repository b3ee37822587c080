"""Noise sources: spectra where the spec puts them, the profile's level, block-size invariance, bad specs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.io import wavfile

from agent.profiles import load_profile
from agent.sim.noise import NoiseSpecError, make_noise


def _generate(spec: str, profile, seconds: float, block: int = 32) -> np.ndarray:
    source = make_noise(spec, profile)
    total = round(seconds * profile.audio.sample_rate_hz) // block * block
    out = np.zeros(total)
    for start in range(0, total, block):
        source.fill(out[start : start + block])
    return out


def _power_spectrum(x: np.ndarray, fs: int) -> tuple[np.ndarray, np.ndarray]:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    return np.fft.rfftfreq(len(x), 1.0 / fs), spectrum


def _level_dbfs(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(x**2))


def test_tonal_noise_peaks_at_the_tone_with_decaying_harmonics_at_the_profile_level():
    profile = load_profile("headphone-ff-48k")
    x = _generate("tonal:150", profile, 2.0)
    freqs, power = _power_spectrum(x, profile.audio.sample_rate_hz)
    assert freqs[np.argmax(power)] == pytest.approx(150.0, abs=1.0)
    peaks = [power[np.argmin(np.abs(freqs - k * 150.0))] for k in (1, 2, 3, 4)]
    assert peaks[0] > peaks[1] > peaks[2] > peaks[3] > 0
    assert _level_dbfs(x) == pytest.approx(profile.simulation.noise_level_dbfs, abs=0.1)


def test_broadband_noise_keeps_its_energy_inside_the_band():
    profile = load_profile("hvac-duct-16k")
    x = _generate("broadband:100-500", profile, 4.0)
    freqs, power = _power_spectrum(x, profile.audio.sample_rate_hz)
    inside = power[(freqs >= 100) & (freqs <= 500)].sum()
    assert inside / power.sum() > 0.9
    assert _level_dbfs(x) == pytest.approx(profile.simulation.noise_level_dbfs, abs=1.0)


def test_engine_noise_uses_the_profile_orders_within_the_rpm_range():
    profile = load_profile("vehicle-cabin-48k")
    x = _generate("engine:1200-3000", profile, 3.0, block=64)
    freqs, power = _power_spectrum(x, profile.audio.sample_rate_hz)
    lo_hz = min(profile.engine_orders) * 1200 / 60
    hi_hz = max(profile.engine_orders) * 3000 / 60
    assert power[(freqs >= lo_hz - 5) & (freqs <= hi_hz + 5)].sum() / power.sum() > 0.99
    # order 2 dominates, and at the start of the sweep it sits at 2 * 1200 rpm / 60 = 40 Hz
    start_freqs, start_power = _power_spectrum(x[:4800], profile.audio.sample_rate_hz)
    assert start_freqs[np.argmax(start_power)] == pytest.approx(40.0, abs=10.0)


@pytest.mark.parametrize("spec", ["tonal:150", "broadband:100-500", "engine:1200-3000"])
def test_same_spec_and_seed_give_the_same_samples_whatever_the_block_size(spec):
    profile = load_profile("vehicle-cabin-48k")
    np.testing.assert_allclose(
        _generate(spec, profile, 0.5, 32), _generate(spec, profile, 0.5, 480), atol=1e-9
    )


def test_wav_noise_is_resampled_looped_and_scaled_to_the_profile_level(tmp_path):
    profile = load_profile("headphone-ff-48k")
    rate = 44100
    t = np.arange(rate // 10) / rate
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 1000 * t)] * 2, axis=1)
    path = tmp_path / "fan.wav"
    wavfile.write(path, rate, (stereo * 32767).astype(np.int16))
    x = _generate(str(path), profile, 1.0)  # ten times longer than the file: it loops
    freqs, power = _power_spectrum(x, profile.audio.sample_rate_hz)
    assert freqs[np.argmax(power)] == pytest.approx(1000.0, abs=2.0)
    assert _level_dbfs(x) == pytest.approx(profile.simulation.noise_level_dbfs, abs=0.2)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("tonal:abc", "tonal:HZ"),
        ("tonal:30000", "(0, 21600) Hz"),
        ("broadband:500-100", "0 < low < high"),
        ("broadband:100", "broadband:LO-HI"),
        ("engine:fast-slow", "engine:RPM0-RPM1"),
        ("pink", "accepted: tonal:HZ, broadband:LO-HI, engine:RPM0-RPM1"),
        ("missing.wav", "missing.wav: no such file"),
    ],
)
def test_bad_noise_spec_names_the_spec_and_what_is_accepted(spec, expected):
    with pytest.raises(NoiseSpecError) as info:
        make_noise(spec, load_profile("headphone-ff-48k"))
    assert repr(spec) in str(info.value)
    assert expected in str(info.value)


def test_non_wav_noise_file_is_rejected(tmp_path):
    path = tmp_path / "fan.wav"
    path.write_bytes(b"not audio at all")
    with pytest.raises(NoiseSpecError, match="not a readable WAV file"):
        make_noise(str(path), load_profile("headphone-ff-48k"))
