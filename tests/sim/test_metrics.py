"""The run figures: attenuation, its curve, convergence time and the path-model error."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.sim.metrics import (
    attenuation_curve,
    attenuation_db,
    block_powers,
    convergence_time_s,
    path_error_db,
)


def test_block_powers_are_mean_squares_summed_over_channels():
    signal = np.zeros((8, 2))
    signal[:4, 0] = 1.0  # block 0: channel 0 at full scale
    signal[4:, 1] = 0.5  # block 1: channel 1 at half scale
    signal = np.vstack([signal, np.ones((3, 2))])  # a partial block is dropped
    np.testing.assert_allclose(block_powers(signal, 4), [1.0, 0.25])


def test_attenuation_is_the_power_ratio_in_db():
    assert attenuation_db(np.full(10, 1.0), np.full(10, 1e-3)) == pytest.approx(30.0)
    assert attenuation_db(np.ones(4), np.zeros(4)) == math.inf


def test_curve_tracks_a_step_in_error_power_after_one_window():
    without = np.ones(100)
    with_control = np.where(np.arange(100) < 50, 1.0, 0.01)
    t, curve = attenuation_curve(without, with_control, window_blocks=10, block_period_s=0.01)
    assert len(t) == len(curve) == 91
    assert t[0] == pytest.approx(0.1)
    assert curve[0] == pytest.approx(0.0)
    assert curve[-1] == pytest.approx(20.0)
    # within 3 dB only once the whole window lies after the step: it ends at block 60
    assert convergence_time_s(t, curve, final_db=20.0) == pytest.approx(0.6)


def test_convergence_waits_until_the_curve_stays_near_its_final_value():
    t = np.arange(1, 11) * 0.1
    curve = np.array([0, 25, 30, 10, 28, 29, 30, 30, 30, 30], dtype=float)
    assert convergence_time_s(t, curve, 30.0) == pytest.approx(0.5)  # the dip at 0.4 s resets it
    assert convergence_time_s(t, curve, 2.0) is None  # nothing worth calling converged
    assert convergence_time_s(t, np.append(curve[:-1], np.nan), 30.0) is None  # broke at the end


def test_path_error_is_relative_misfit_of_the_full_responses():
    truth = np.concatenate([np.zeros(20), [1.0, -0.5, 0.25]])
    assert path_error_db(truth, 0.9 * truth) == pytest.approx(-20.0)
    assert path_error_db(truth, truth) == -math.inf
    # a model one sample late, or missing the bulk delay, is as wrong as no model at all (or worse)
    assert path_error_db(truth, np.concatenate([[0.0], truth])) > 0.0
    assert path_error_db(truth, np.zeros(5)) == pytest.approx(0.0)
