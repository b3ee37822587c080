"""The hybrid beats either component on the built-in plants, through the simulator the benchmark uses.

Every run goes through `agent.sim.run.simulate` (identification through the loop, then control with the
identified path), so these fail if the hybrid stops converging at RLS speed, stops reaching the FxNLMS
depth, or if any controller makes noise it cannot cancel louder. Short runs (about 15 s in all).
"""

from __future__ import annotations

import numpy as np
import pytest

from agent.dsp.controller import ControllerSettings
from agent.profiles import load_profile
from agent.sim.run import SimulationResult, simulate

ALGORITHMS = ("fxnlms", "fxrls", "hybrid")
STEADY_MARGIN_DB = 1.0


def run_all(profile_name: str, noise: str | None, seconds: float) -> dict[str, SimulationResult]:
    profile = load_profile(profile_name)
    return {
        alg: simulate(
            profile,
            seconds=seconds,
            noise_spec=noise,
            settings=ControllerSettings.from_profile(profile, algorithm=alg),
        )
        for alg in ALGORITHMS
    }


def time_to_reach_s(result: SimulationResult, level_db: float) -> float:
    """First time after which the smoothed attenuation curve never drops below `level_db` (inf if never)."""
    below = np.flatnonzero(~(result.curve_attenuation_db >= level_db))
    if len(below) == 0:
        return float(result.curve_time_s[0])
    if below[-1] + 1 >= len(result.curve_time_s):
        return float("inf")
    return float(result.curve_time_s[below[-1] + 1])


def attenuation(result: SimulationResult) -> float:
    assert not result.diverged, result.warnings
    assert result.attenuation_db is not None
    return result.attenuation_db


@pytest.fixture(scope="module")
def headphone_tonal() -> dict[str, SimulationResult]:
    return run_all("headphone-ff-48k", "tonal:150", 2.0)


@pytest.fixture(scope="module")
def duct_broadband() -> dict[str, SimulationResult]:
    return run_all("hvac-duct-16k", "broadband:100-500", 4.0)


@pytest.mark.parametrize("plant", ["headphone_tonal", "duct_broadband"])
def test_hybrid_is_as_deep_as_the_better_component(plant: str, request: pytest.FixtureRequest) -> None:
    runs = request.getfixturevalue(plant)
    best = max(attenuation(runs["fxnlms"]), attenuation(runs["fxrls"]))
    assert attenuation(runs["hybrid"]) >= best - STEADY_MARGIN_DB


@pytest.mark.parametrize("plant", ["headphone_tonal", "duct_broadband"])
def test_hybrid_converges_faster_than_fxnlms(plant: str, request: pytest.FixtureRequest) -> None:
    runs = request.getfixturevalue(plant)
    target_db = attenuation(runs["fxnlms"]) - 3.0
    hybrid_s = time_to_reach_s(runs["hybrid"], target_db)
    fxnlms_s = time_to_reach_s(runs["fxnlms"], target_db)
    assert hybrid_s < 0.6 * fxnlms_s, (hybrid_s, fxnlms_s)


def test_fxrls_cancels_the_headphone_harmonics(headphone_tonal: dict[str, SimulationResult]) -> None:
    # 32 adjacent taps at 48 kHz managed 3 dB here; the sparse tap grid is what makes the RLS useful
    assert attenuation(headphone_tonal["fxrls"]) >= 40.0


def test_hybrid_is_deeper_than_fxrls_on_the_duct(duct_broadband: dict[str, SimulationResult]) -> None:
    # broadband noise through a 140-sample primary path needs the long filter: the mix must leave the RLS
    assert attenuation(duct_broadband["hybrid"]) >= attenuation(duct_broadband["fxrls"]) + 6.0


def test_no_algorithm_makes_uncancellable_broadband_noise_louder() -> None:
    # the headphone's causality margin is negative: broadband noise cannot be cancelled there
    runs = run_all("headphone-ff-48k", "broadband:100-1000", 1.5)
    for alg, result in runs.items():
        assert result.causality_margin_ms < 0
        assert attenuation(result) >= -0.5, alg


def test_hybrid_cancels_the_vehicle_engine_orders_by_20_db() -> None:
    profile = load_profile("vehicle-cabin-48k")
    result = simulate(profile, seconds=3.0, settings=ControllerSettings.from_profile(profile))
    assert result.settings.algorithm == "hybrid"
    assert attenuation(result) >= 20.0
    assert result.secondary_path_error_db <= -20.0
