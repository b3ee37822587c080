"""The simulation loop: identification, then control, compared with the same noise and a silent speaker."""

from __future__ import annotations

import numpy as np
import pytest

from agent.dsp.controller import ControllerSettings
from agent.profiles import load_profile
from agent.sim.noise import make_noise
from agent.sim.plant import AcousticPlant
from agent.sim.run import simulate


@pytest.fixture(scope="module")
def cabin_run():
    profile = load_profile("vehicle-cabin-48k")
    settings = ControllerSettings.from_profile(profile, algorithm="fxnlms")
    return profile, simulate(profile, seconds=1.0, noise_spec="tonal:300", settings=settings)


def test_every_controller_gets_its_own_path_error_and_error_signal(cabin_run):
    profile, result = cabin_run
    controllers = profile.channels.controllers
    assert len(result.secondary_path_error_db_per_channel) == controllers
    assert result.secondary_path_error_db == max(result.secondary_path_error_db_per_channel)
    blocks = profile.audio.blocks(1.0)
    assert result.error_with.shape == (blocks * profile.audio.block_size, controllers)
    assert result.error_without.shape == result.error_with.shape


def test_identification_runs_for_the_profile_probe_time_before_control(cabin_run):
    profile, result = cabin_run
    assert result.identification_s >= profile.controller.probe_s
    assert result.identification_s < profile.controller.probe_s + 0.1


def test_uncontrolled_error_is_the_noise_through_the_primary_path_alone(cabin_run):
    profile, result = cabin_run
    plant = AcousticPlant(profile, noise=make_noise("tonal:300", profile))
    block = profile.audio.block_size
    ch = profile.channels
    outdata = np.zeros((block, ch.output_channels), np.float32)
    indata = np.zeros((block, ch.input_channels), np.float32)
    skip = round(result.identification_s / profile.audio.block_period_s)
    for _ in range(skip):
        plant.step(outdata, indata)
    plant.step(outdata, indata)
    np.testing.assert_array_equal(result.error_without[:block], indata[:, list(ch.error_mics)])


def test_control_reduces_the_error_and_the_figures_agree_with_the_signals(cabin_run):
    _, result = cabin_run
    assert result.attenuation_db is not None and result.attenuation_db > 10.0
    tail = round(result.attenuation_window_s * result.sample_rate_hz)
    ratio = np.sum(result.error_without[-tail:] ** 2) / np.sum(result.error_with[-tail:] ** 2)
    assert 10 * np.log10(ratio) == pytest.approx(result.attenuation_db, abs=0.01)
    assert result.curve_attenuation_db[-1] > result.curve_attenuation_db[0]
    assert result.callback_us_p50 <= result.callback_us_p99 <= result.callback_us_max


def test_seconds_must_be_positive():
    with pytest.raises(ValueError, match="seconds"):
        simulate(load_profile("hvac-duct-16k"), seconds=0.0)
