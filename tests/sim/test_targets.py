"""The acoustic targets on the standard plants (benchmark figures: long runs, deselected by default).

Run with `.venv/bin/python -m pytest -q -m soak tests/sim/test_targets.py`.
"""

from __future__ import annotations

import pytest

from agent.profiles import load_profile
from agent.sim.run import simulate

pytestmark = pytest.mark.soak


def test_tonal_noise_is_cancelled_by_30_db_within_a_second():
    result = simulate(load_profile("headphone-ff-48k"), seconds=5.0, noise_spec="tonal:150")
    assert not result.diverged
    assert result.attenuation_db is not None and result.attenuation_db >= 30.0
    assert result.convergence_s is not None and result.convergence_s <= 1.0


def test_duct_broadband_noise_is_cancelled_by_15_db():
    profile = load_profile("hvac-duct-16k")
    result = simulate(profile, seconds=10.0, noise_spec="broadband:100-500")
    assert result.causality_margin_ms > 0
    assert not result.diverged
    assert result.attenuation_db is not None and result.attenuation_db >= 15.0
