"""Secondary-path identification through the real loop, with the primary noise still playing."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import butter, lfilter

from agent.dsp.secondary_path import (
    IdentificationError,
    SecondaryPath,
    SecondaryPathIdentifier,
    secondary_paths_from_dict,
    secondary_paths_to_dict,
)
from agent.profiles import Profile, load_profile
from tests.support.anc_plant import ProfileLoop, decaying_fir


def identify(profile: Profile, references: np.ndarray, primaries, secondaries) -> SecondaryPathIdentifier:
    loop = ProfileLoop(profile, references, primaries, secondaries, 1e-4)
    ident = SecondaryPathIdentifier(profile)
    probe_rms = []
    while not ident.done:
        loop.step(ident)
        probe_rms.append(np.sqrt(np.mean(loop.outdata.astype(np.float64) ** 2, axis=0)))
    ident.probe_rms = np.mean(probe_rms, axis=0)  # for the level check
    return ident


def relative_error_db(true: np.ndarray, est: np.ndarray) -> float:
    n = max(true.shape[0], est.shape[0])
    t, e = np.pad(true, (0, n - true.shape[0])), np.pad(est, (0, n - est.shape[0]))
    return float(10 * np.log10(np.sum((t - e) ** 2) / np.sum(t**2)))


def test_identifies_duct_paths_under_broadband_primary_noise_20_db_above_the_probe() -> None:
    profile = load_profile("hvac-duct-16k")
    fs = profile.audio.sample_rate_hz
    seconds = profile.controller.probe_s + 0.2
    rng = np.random.default_rng(21)
    b, a = butter(2, [100 / (fs / 2), 500 / (fs / 2)], "band")
    noise = lfilter(b, a, rng.standard_normal(round(seconds * fs)))
    noise *= 0.1 / np.std(noise)  # -20 dBFS against a -35 dBFS probe
    primary = [decaying_fir(rng, 140, 128, 30.0)]
    secondary = [decaying_fir(rng, 14, 64, 12.0)]
    ident = identify(profile, noise[None, :], primary, secondary)
    (path,) = ident.result()
    loop_delay = 2 * profile.audio.block_size + profile.converter_delay_samples
    true = np.concatenate([np.zeros(loop_delay), secondary[0]])
    assert relative_error_db(true, path.impulse_response()) < -20.0
    assert loop_delay + 14 - 8 <= path.delay_samples <= loop_delay + 14
    assert path.taps == profile.controller.secondary_path_taps
    expected_rms = 10 ** (profile.controller.probe_level_dbfs / 20)
    assert ident.probe_rms[profile.channels.speakers[0]] == pytest.approx(expected_rms, rel=0.1)


def test_identifies_headphone_paths_under_tones_plus_noise_on_the_reference() -> None:
    # Tones in the reference make the online NLMS reference branch notch out the probe response at the
    # tone frequencies; the least-squares refinement has no such bias.
    profile = load_profile("headphone-ff-48k")
    fs = profile.audio.sample_rate_hz
    rng = np.random.default_rng(23)
    n = round(1.5 * fs)
    t = np.arange(n) / fs
    refs = np.array(
        [
            np.sin(2 * np.pi * 150 * t) * 0.1
            + 0.05 * np.sin(2 * np.pi * 410 * t)
            + 0.03 * rng.standard_normal(n)
        ]
        * 2
    )
    primaries = [decaying_fir(rng, 12, 64, 10.0) for _ in range(2)]
    secondaries = [decaying_fir(rng, 2, 48, 8.0) for _ in range(2)]
    ident = identify(profile, refs, primaries, secondaries)
    loop_delay = 2 * profile.audio.block_size + profile.converter_delay_samples
    for c, path in enumerate(ident.result()):
        true = np.concatenate([np.zeros(loop_delay), secondaries[c]])
        assert relative_error_db(true, path.impulse_response()) < -20.0, c


def test_a_silent_speaker_is_reported_not_returned_as_a_path() -> None:
    profile = load_profile("headphone-ff-48k")
    fs = profile.audio.sample_rate_hz
    rng = np.random.default_rng(22)
    refs = 0.1 * rng.standard_normal(round(1.5 * fs))
    primaries = [decaying_fir(rng, 12, 64, 10.0) for _ in range(2)]
    secondaries = [decaying_fir(rng, 2, 48, 8.0), np.zeros(50)]  # speaker 1 is dead
    ident = identify(profile, refs, primaries, secondaries)
    with pytest.raises(IdentificationError, match=r"channel 1 \(speaker 1"):
        ident.result()


def test_result_before_the_probe_ends_raises() -> None:
    ident = SecondaryPathIdentifier(load_profile("headphone-ff-48k"))
    with pytest.raises(IdentificationError, match="still running"):
        ident.result()


def test_non_finite_input_is_counted_and_does_not_reach_the_fit() -> None:
    profile = load_profile("headphone-ff-48k")
    ident = SecondaryPathIdentifier(profile)
    indata = np.zeros((profile.audio.block_size, profile.channels.input_channels), dtype=np.float32)
    indata[0, 1] = np.nan
    indata[1, 0] = np.inf
    outdata = np.zeros((profile.audio.block_size, profile.channels.output_channels), dtype=np.float32)
    for _ in range(10):
        ident.process(indata, outdata)
    assert ident.nonfinite_count == 20
    assert np.all(np.isfinite(ident.impulse_responses()))
    assert np.all(np.isfinite(outdata))


def test_after_the_probe_the_identifier_outputs_silence() -> None:
    profile = load_profile("headphone-ff-48k")
    ident = SecondaryPathIdentifier(profile)
    indata = np.zeros((profile.audio.block_size, profile.channels.input_channels), dtype=np.float32)
    outdata = np.zeros((profile.audio.block_size, profile.channels.output_channels), dtype=np.float32)
    while not ident.done:
        ident.process(indata, outdata)
    ident.process(indata, outdata)
    assert np.all(outdata == 0.0)


def test_impulse_response_is_split_at_the_onset_minus_the_margin() -> None:
    h = np.zeros(300)
    h[100] = 0.05  # below 20 % of the peak: not the onset
    h[120:130] = np.linspace(1.0, 0.1, 10)
    path = SecondaryPath.from_impulse_response(h, taps=64, onset_fraction=0.2, onset_margin_samples=4)
    assert path.delay_samples == 116
    expected = h[: 116 + 64].copy()
    expected[:116] = 0.0  # the early, sub-threshold tap is dropped with the bulk delay
    np.testing.assert_array_equal(path.impulse_response(), expected)
    with pytest.raises(ValueError, match="all zero"):
        SecondaryPath.from_impulse_response(np.zeros(10), taps=4)


def test_paths_round_trip_through_arrays() -> None:
    paths = [SecondaryPath(5, np.arange(4.0)), SecondaryPath(7, np.ones(4))]
    back = secondary_paths_from_dict(secondary_paths_to_dict(paths))
    assert [p.delay_samples for p in back] == [5, 7]
    np.testing.assert_array_equal(back[0].fir, paths[0].fir)
    with pytest.raises(ValueError, match="fir"):
        secondary_paths_from_dict({"delay_samples": np.array([1])})
