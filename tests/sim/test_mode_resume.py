"""Pass-through and back on the built-in headphone plant: the return to ANC is not a divergence.

In pass-through the speaker plays the ambient to the ear, so the error mic hears far more than the
disturbance alone; the divergence guard must start judging the controller again only once it cancels.
"""

from __future__ import annotations

import numpy as np
import pytest

from agent.dsp.controller import (
    M_DISTURBANCE_POWER,
    M_DIVERGENCE_COUNT,
    M_ERROR_POWER,
    MODE_ANC,
    MODE_PASSTHROUGH,
    Controller,
    ControllerSettings,
)
from agent.dsp.secondary_path import SecondaryPathIdentifier
from agent.profiles import load_profile
from agent.sim.noise import make_noise
from agent.sim.plant import AcousticPlant


@pytest.mark.parametrize("algorithm", ["fxnlms", "fxrls", "hybrid"])
def test_returning_from_passthrough_to_anc_is_not_taken_for_a_divergence(algorithm: str) -> None:
    profile = load_profile("headphone-ff-48k")
    plant = AcousticPlant(profile, noise=make_noise(profile.simulation.default_noise, profile, seed=1))
    block = profile.audio.block_size
    indata = np.zeros((block, profile.channels.input_channels), np.float32)
    outdata = np.zeros((block, profile.channels.output_channels), np.float32)
    ident = SecondaryPathIdentifier(profile)
    while not ident.done:
        plant.step(outdata, indata)
        ident.process(indata, outdata)
    settings = ControllerSettings.from_profile(profile, algorithm=algorithm)
    ctl = Controller(profile, ident.result(), settings)
    blocks_per_s = profile.audio.sample_rate_hz // block
    schedule = {2 * blocks_per_s: MODE_PASSTHROUGH, 4 * blocks_per_s: MODE_ANC}
    ratios = []
    for k in range(5 * blocks_per_s):
        if k in schedule:
            ctl.apply(ControllerSettings.from_profile(profile, algorithm=algorithm, mode=schedule[k]))
        plant.step(outdata, indata)
        ctl.process(indata, outdata)
        if k in (2 * blocks_per_s - 1, 5 * blocks_per_s - 1):
            ratios.append(ctl.metrics[M_ERROR_POWER] / ctl.metrics[M_DISTURBANCE_POWER])
    assert ctl.metrics[M_DIVERGENCE_COUNT] == 0
    # back at the converged depth a second after the return (within 10 dB of before the switch)
    assert ratios[1] <= 10.0 * ratios[0], ratios
