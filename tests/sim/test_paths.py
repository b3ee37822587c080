"""Acoustic paths: the built-in ones follow the profile, files load, bad files are rejected by name."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.io import wavfile

from agent.profiles import load_profile
from agent.sim.paths import PathFileError, built_in_path, fractional_delay, load_path


@pytest.mark.parametrize("name", ["headphone-ff-48k", "hvac-duct-16k", "vehicle-cabin-48k"])
@pytest.mark.parametrize("kind", ["primary", "secondary"])
def test_built_in_path_peaks_at_the_profile_delay_and_decays(name, kind):
    profile = load_profile(name)
    path = built_in_path(profile, kind)
    delay_ms = getattr(profile.simulation, f"{kind}_delay_ms")
    assert path.delay_s == pytest.approx(delay_ms * 1e-3)
    assert abs(int(np.argmax(np.abs(path.ir))) - path.delay_samples) <= 1
    assert np.all(path.ir[: max(0, int(path.delay_samples) - 16)] == 0)  # nothing before the sound arrives
    tail = path.ir[-len(path.ir) // 10 :]
    assert np.sum(tail**2) < 1e-3 * np.sum(path.ir**2)


def test_built_in_paths_differ_per_channel_and_repeat_per_seed():
    profile = load_profile("headphone-ff-48k")
    left, right = built_in_path(profile, "primary", 0), built_in_path(profile, "primary", 1)
    assert not np.allclose(left.ir, right.ir)
    np.testing.assert_array_equal(left.ir, built_in_path(profile, "primary", 0).ir)


def test_fractional_delay_interpolates_between_samples():
    h = fractional_delay(10.5, 40)
    assert h[10] == pytest.approx(h[11])
    assert np.sum(h) == pytest.approx(1.0, abs=0.02)


def test_npy_impulse_response_loads_at_the_profile_rate(tmp_path):
    ir = np.zeros(64)
    ir[9] = 0.8
    ir[20] = -0.2
    path = tmp_path / "duct.npy"
    np.save(path, ir)
    loaded = load_path(path, 16000)
    np.testing.assert_array_equal(loaded.ir, ir)
    assert loaded.delay_s == pytest.approx(9 / 16000)
    assert loaded.origin == str(path)


def test_wav_impulse_response_at_another_rate_is_resampled(tmp_path):
    ir = np.zeros(441, dtype=np.float32)
    ir[44] = 0.9  # 1 ms at 44.1 kHz
    path = tmp_path / "cabin.wav"
    wavfile.write(path, 44100, ir)
    loaded = load_path(path, 48000)
    assert len(loaded.ir) == 480
    assert loaded.delay_s == pytest.approx(1e-3, abs=1 / 48000)


def _write(tmp_path, name, writer):
    path = tmp_path / name
    writer(path)
    return path


@pytest.mark.parametrize(
    ("name", "writer", "expected"),
    [
        ("gone.npy", lambda p: None, "no such impulse-response file"),
        ("ir.txt", lambda p: p.write_text("1 0 0"), "allowed: .wav, .npy"),
        ("ir.npy", lambda p: p.write_bytes(b"garbage"), "not a readable .npy array"),
        ("ir.npy", lambda p: np.save(p, np.zeros((4, 4))), "expected a 1-D real array"),
        ("ir.npy", lambda p: np.save(p, np.zeros(0)), "empty"),
        ("ir.npy", lambda p: np.save(p, np.array([0.0, np.nan])), "NaN or Inf"),
        ("ir.npy", lambda p: np.save(p, np.zeros(8)), "all zeros"),
        ("ir.npy", lambda p: np.save(p, np.ones(40000)), "longer than 2 s"),
        ("ir.wav", lambda p: p.write_bytes(b"RIFF...."), "not a readable WAV file"),
        ("ir.wav", lambda p: wavfile.write(p, 16000, np.ones((8, 2), np.float32)), "mono impulse response"),
    ],
)
def test_bad_impulse_response_file_is_rejected_naming_the_file(tmp_path, name, writer, expected):
    path = _write(tmp_path, name, writer)
    with pytest.raises(PathFileError) as info:
        load_path(path, 16000)
    assert str(path) in str(info.value)
    assert expected in str(info.value)
