"""The plant's loop-delay model, its causality margin and what each microphone hears."""

from __future__ import annotations

import dataclasses
import tracemalloc

import numpy as np
import pytest

from agent.profiles import available_profiles, load_profile
from agent.sim.noise import make_noise
from agent.sim.paths import AcousticPath
from agent.sim.plant import AcousticPlant
from agent.timing import AudioFormat
from tests.support.silence import Silence

PROFILES = ("headphone-ff-48k", "hvac-duct-16k", "vehicle-cabin-48k")


def _blocks(profile, count):
    ch = profile.channels
    b = profile.audio.block_size
    return np.zeros((b, ch.output_channels), np.float32), np.zeros((b, ch.input_channels), np.float32), count


def _record_impulse_response(plant: AcousticPlant, speaker: int, offset: int, blocks: int) -> np.ndarray:
    """Plays a unit impulse at `offset` of output block 0; returns the mic blocks: (blocks*B, n_in)."""
    out, ind, _ = _blocks(plant.profile, blocks)
    recorded = []
    for k in range(blocks):
        plant.step(out, ind)
        recorded.append(ind.copy())
        out[:] = 0.0
        if k == 0:
            out[offset, speaker] = 1.0
    return np.concatenate(recorded)


@pytest.mark.parametrize("name", PROFILES)
def test_speaker_impulse_reaches_error_mic_after_two_blocks_converter_and_acoustic_delay(name):
    profile = load_profile(name)
    fs = profile.audio.sample_rate_hz
    acoustic_delay = 7
    ir = np.zeros(16)
    ir[acoustic_delay] = 1.0
    secondary = AcousticPath(ir=ir, delay_s=acoustic_delay / fs, sample_rate_hz=fs, origin="test")
    offset = 3
    expected = 2 * profile.audio.block_size + profile.converter_delay_samples + acoustic_delay + offset
    ch = profile.channels
    for c in range(ch.controllers):
        plant = AcousticPlant(profile, secondary=secondary, noise=Silence(fs), sensor_noise_dbfs=None)
        mics = _record_impulse_response(plant, ch.speakers[c], offset, blocks=12)
        error = mics[:, ch.error_mics[c]]
        assert np.flatnonzero(error).tolist() == [expected]
        assert error[expected] == pytest.approx(1.0)
        # cross paths are not modelled: the reference mic and the other error mics hear nothing
        others = [i for i in range(ch.input_channels) if i != ch.error_mics[c]]
        assert not np.any(mics[:, others])
    assert plant.electronic_delay_samples == 2 * profile.audio.block_size + profile.converter_delay_samples


@pytest.mark.parametrize("name", PROFILES)
def test_built_in_secondary_path_peaks_at_loop_plus_acoustic_delay(name):
    profile = load_profile(name)
    plant = AcousticPlant(profile, noise=Silence(profile.audio.sample_rate_hz), sensor_noise_dbfs=None)
    mics = _record_impulse_response(plant, profile.channels.speakers[0], 0, blocks=12)
    error = mics[:, profile.channels.error_mics[0]]
    acoustic = profile.simulation.secondary_delay_ms * 1e-3 * profile.audio.sample_rate_hz
    assert abs(int(np.argmax(np.abs(error))) - (plant.electronic_delay_samples + acoustic)) <= 1
    truth = plant.true_secondary_responses()[0]
    n = min(len(truth), len(error))
    np.testing.assert_allclose(error[:n], truth[:n], atol=1e-6)


@pytest.mark.parametrize("name", PROFILES)
def test_causality_margin_is_primary_minus_electronic_and_secondary_delay(name):
    profile = load_profile(name)
    plant = AcousticPlant(profile)
    sim = profile.simulation
    electronic_ms = (
        1e3
        * (2 * profile.audio.block_size + profile.converter_delay_samples)
        / (profile.audio.sample_rate_hz)
    )
    expected_ms = sim.primary_delay_ms - (electronic_ms + sim.secondary_delay_ms)
    assert plant.causality_margin_s * 1e3 == pytest.approx(expected_ms)
    assert plant.electronic_delay_s * 1e3 == pytest.approx(electronic_ms)


def test_only_the_duct_profile_leaves_time_for_broadband_cancellation():
    margins = {name: AcousticPlant(load_profile(name)).causality_margin_s for name in PROFILES}
    assert margins["hvac-duct-16k"] > 0
    assert margins["headphone-ff-48k"] < 0
    assert margins["vehicle-cabin-48k"] < 0
    assert set(PROFILES) <= set(available_profiles())


def test_reference_mic_hears_the_noise_and_error_mic_hears_it_through_the_primary_path():
    profile = load_profile("vehicle-cabin-48k")
    plant = AcousticPlant(profile, noise=make_noise("broadband:100-2000", profile), sensor_noise_dbfs=None)
    out, ind, blocks = _blocks(profile, 40)
    recorded = []
    for _ in range(blocks):
        plant.step(out, ind)
        recorded.append(ind.copy())
    mics = np.concatenate(recorded).astype(np.float64)
    noise = np.zeros(len(mics))
    make_noise("broadband:100-2000", profile).fill(noise)
    ch = profile.channels
    for ref in set(ch.reference_mics):
        np.testing.assert_allclose(mics[:, ref], noise, atol=1e-6)
    for c, err in enumerate(ch.error_mics):
        expected = np.convolve(noise, plant.primary[c].ir)[: len(noise)]
        np.testing.assert_allclose(mics[:, err], expected, atol=1e-5)
    # each seat has its own reflections
    assert not np.allclose(mics[:, ch.error_mics[0]], mics[:, ch.error_mics[1]])


def test_sensor_noise_floor_sits_at_its_level():
    profile = load_profile("hvac-duct-16k")
    fs = profile.audio.sample_rate_hz
    plant = AcousticPlant(profile, noise=Silence(fs), sensor_noise_dbfs=-60.0)
    out, ind, blocks = _blocks(profile, 500)
    power = 0.0
    for _ in range(blocks):
        plant.step(out, ind)
        power += float(np.mean(ind.astype(np.float64) ** 2))
    assert 10 * np.log10(power / blocks) == pytest.approx(-60.0, abs=0.3)


def test_speaker_output_is_clipped_at_full_scale_and_non_finite_output_is_silenced():
    profile = load_profile("hvac-duct-16k")
    fs = profile.audio.sample_rate_hz
    ir = np.zeros(4)
    ir[0] = 1.0
    plant = AcousticPlant(
        profile,
        secondary=AcousticPath(ir=ir, delay_s=0.0, sample_rate_hz=fs, origin="test"),
        noise=Silence(fs),
        sensor_noise_dbfs=None,
    )
    out, ind, _ = _blocks(profile, 0)
    out[:, 0] = 5.0
    out[::2, 0] = np.nan
    plant.step(out, ind)
    out[:] = 0.0
    heard = []
    for _ in range(6):
        plant.step(out, ind)
        heard.append(ind[:, profile.channels.error_mics[0]].copy())
    values = np.concatenate(heard)
    assert set(np.unique(values).tolist()) == {0.0, 1.0}


def test_step_rejects_blocks_of_the_wrong_shape_naming_both_shapes():
    profile = load_profile("headphone-ff-48k")
    plant = AcousticPlant(profile)
    with pytest.raises(ValueError, match=r"expected \(32, 2\) / \(32, 4\)"):
        plant.step(np.zeros((32, 1), np.float32), np.zeros((32, 4), np.float32))


def test_paths_at_another_sample_rate_are_rejected():
    profile = load_profile("headphone-ff-48k")
    wrong = AcousticPath(ir=np.ones(4), delay_s=0.0, sample_rate_hz=16000, origin="duct.wav")
    with pytest.raises(ValueError, match=r"duct\.wav is at 16000 Hz"):
        AcousticPlant(profile, primary=wrong)


def test_step_allocates_no_sample_buffers():
    # a large block makes any per-block sample buffer stand out from Python's call overhead
    base = load_profile("vehicle-cabin-48k")
    profile = dataclasses.replace(base, audio=AudioFormat(base.audio.sample_rate_hz, 1024))
    plant = AcousticPlant(profile)
    out, ind, _ = _blocks(profile, 0)
    for _ in range(5):
        plant.step(out, ind)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for _ in range(200):
            plant.step(out, ind)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    block_bytes = profile.audio.block_size * 8
    assert peak - before < block_bytes / 2
    assert current - before < 256
