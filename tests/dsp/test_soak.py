"""Long runs (deselected by default; `pytest -m soak tests/dsp`): the controller stays healthy for minutes."""

from __future__ import annotations

import numpy as np
import pytest

from agent.dsp.controller import (
    M_DIVERGENCE_COUNT,
    M_NONFINITE_COUNT,
    M_TRIPPED_CHANNELS,
    Controller,
    ControllerSettings,
)
from agent.dsp.secondary_path import SecondaryPath
from agent.profiles import load_profile
from tests.support.anc_plant import ProfileLoop, decaying_fir, tone

MINUTES = 30.0


@pytest.mark.soak
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("algorithm", ["hybrid", "fxrls"])
def test_controller_runs_minutes_without_divergence_and_rls_state_stays_sane(algorithm: str) -> None:
    profile = load_profile("hvac-duct-16k")
    fs = profile.audio.sample_rate_hz
    seconds = MINUTES * 60
    rng = np.random.default_rng(31)
    ref = (
        tone(120, fs, seconds)
        + tone(240, fs, seconds, 0.05)
        + 0.01 * rng.standard_normal(round(seconds * fs))
    )
    primary = [decaying_fir(rng, 140, 128, 30.0)]
    secondary = [decaying_fir(rng, 14, 64, 12.0)]
    loop_delay = 2 * profile.audio.block_size + profile.converter_delay_samples
    paths = [SecondaryPath.from_impulse_response(np.concatenate([np.zeros(loop_delay), secondary[0]]), 128)]
    ctl = Controller(profile, paths, ControllerSettings.from_profile(profile, algorithm=algorithm))
    loop = ProfileLoop(profile, ref[None, :], primary, secondary, 1e-4)
    minute_blocks = 60 * fs // profile.audio.block_size
    attenuation = []
    for _ in range(int(MINUTES)):
        errors, dist = loop.run(ctl, minute_blocks)
        attenuation.append(10 * np.log10(np.mean(dist[:, -fs:] ** 2) / np.mean(errors[:, -fs:] ** 2)))
    coeffs = ctl.coefficients()
    p = coeffs["p_fxrls"][0]
    assert all(np.all(np.isfinite(v)) for v in coeffs.values())
    assert np.array_equal(p, p.T)
    assert np.min(np.linalg.eigvalsh(p)) > 0
    assert ctl.metrics[M_DIVERGENCE_COUNT] == 0
    assert ctl.metrics[M_TRIPPED_CHANNELS] == 0
    assert ctl.metrics[M_NONFINITE_COUNT] == 0
    assert min(attenuation) >= 10.0, attenuation
    assert attenuation[-1] >= attenuation[0] - 3.0, attenuation
