"""The multi-channel Controller on a simulated loop: convergence, modes, safety, settings, coefficients."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from agent.dsp.controller import (
    M_BLOCKS,
    M_DIVERGENCE_COUNT,
    M_LIMITER_COUNT,
    M_NONFINITE_COUNT,
    M_REJECTED_BLOCKS,
    M_TRIPPED_CHANNELS,
    MODE_ANC,
    MODE_OFF,
    MODE_PASSTHROUGH,
    Controller,
    ControllerSettings,
)
from agent.dsp.guard import TRIP_AFTER_QUICK_RESTORES
from agent.dsp.limiter import limit_amplitude
from agent.dsp.secondary_path import SecondaryPath, SecondaryPathIdentifier
from agent.profiles import Profile, load_profile
from tests.support.anc_plant import ProfileLoop, decaying_fir, tone

SECONDS = 2.5


@dataclass
class Scene:
    """A headphone profile, its tonal noise and acoustic paths, and the secondary paths it measured."""

    profile: Profile
    references: np.ndarray
    primaries: list[np.ndarray]
    secondaries: list[np.ndarray]
    paths: list[SecondaryPath]

    def loop(self) -> ProfileLoop:
        return ProfileLoop(self.profile, self.references, self.primaries, self.secondaries, 1e-4)

    def controller(self, **overrides: object) -> Controller:
        settings = ControllerSettings.from_profile(self.profile, **overrides)
        return Controller(self.profile, self.paths, settings)


@pytest.fixture(scope="module")
def scene() -> Scene:
    profile = load_profile("headphone-ff-48k")
    fs = profile.audio.sample_rate_hz
    rng = np.random.default_rng(11)
    n_ch = profile.channels.controllers
    references = np.array([tone(150, fs, SECONDS) + tone(410, fs, SECONDS, 0.05) for _ in range(n_ch)])
    primaries = [decaying_fir(rng, 12, 64, 10.0) for _ in range(n_ch)]
    secondaries = [decaying_fir(rng, 2, 48, 8.0) for _ in range(n_ch)]
    loop = ProfileLoop(profile, references, primaries, secondaries, 1e-4)
    ident = SecondaryPathIdentifier(profile)
    while not ident.done:
        loop.step(ident)
    return Scene(profile, references, primaries, secondaries, ident.result())


def attenuation_db(
    errors: np.ndarray, disturbances: np.ndarray, start_s: float, stop_s: float, fs: int
) -> float:
    sl = slice(round(start_s * fs), round(stop_s * fs))
    return float(10 * np.log10(np.mean(disturbances[:, sl] ** 2) / np.mean(errors[:, sl] ** 2)))


@pytest.fixture(scope="module")
def converged(scene: Scene) -> dict[str, tuple[float, float, Controller]]:
    """Per algorithm: attenuation over 0.1-0.35 s, over the last 0.5 s, and the controller."""
    fs = scene.profile.audio.sample_rate_hz
    out = {}
    for algorithm in ("fxnlms", "fxrls", "hybrid"):
        loop = scene.loop()
        ctl = scene.controller(algorithm=algorithm)
        errors, dist = loop.run(ctl, loop.blocks)
        early = attenuation_db(errors, dist, 0.1, 0.35, fs)
        late = attenuation_db(errors, dist, SECONDS - 0.5, SECONDS, fs)
        out[algorithm] = (early, late, ctl)
    return out


@pytest.mark.parametrize("algorithm", ["fxnlms", "fxrls", "hybrid"])
def test_each_algorithm_attenuates_the_tones_by_20_db_within_seconds(
    converged: dict[str, tuple[float, float, Controller]], algorithm: str
) -> None:
    early, late, ctl = converged[algorithm]
    assert late >= 20.0, (algorithm, early, late)
    assert ctl.metrics[M_DIVERGENCE_COUNT] == 0
    assert ctl.attenuation_db() >= 20.0


def test_hybrid_is_never_much_worse_than_the_better_component(
    converged: dict[str, tuple[float, float, Controller]],
) -> None:
    best_late = max(converged["fxnlms"][1], converged["fxrls"][1])
    best_early = max(converged["fxnlms"][0], converged["fxrls"][0])
    hybrid_early, hybrid_late, _ = converged["hybrid"]
    assert hybrid_late >= best_late - 1.0, {k: v[:2] for k, v in converged.items()}
    assert hybrid_early >= best_early - 6.0, {k: v[:2] for k, v in converged.items()}


def test_secondary_path_identified_in_the_loop_matches_the_true_one(scene: Scene) -> None:
    p = scene.profile
    loop_delay = 2 * p.audio.block_size + p.converter_delay_samples
    for c, path in enumerate(scene.paths):
        true = np.concatenate([np.zeros(loop_delay), scene.secondaries[c]])
        assert loop_delay - 8 <= path.delay_samples <= loop_delay + 2
        est = path.impulse_response()
        n = max(true.shape[0], est.shape[0])
        t = np.pad(true, (0, n - true.shape[0]))
        e = np.pad(est, (0, n - est.shape[0]))
        rel_err_db = 10 * np.log10(np.sum((t - e) ** 2) / np.sum(t**2))
        assert rel_err_db < -20.0, (c, rel_err_db)


def run_with_modes(scene: Scene, schedule: dict[int, int]) -> tuple[np.ndarray, np.ndarray, Controller]:
    """Run the loop switching mode at the given block indices; returns speaker 0 output, reference 0."""
    loop = scene.loop()
    ctl = scene.controller(algorithm="fxnlms")
    outs, refs = [], []
    for k in range(loop.blocks):
        if k in schedule:
            ctl.apply(ControllerSettings.from_profile(scene.profile, algorithm="fxnlms", mode=schedule[k]))
        loop.step(ctl)
        outs.append(loop.outdata[:, scene.profile.channels.speakers[0]].copy())
        refs.append(loop.indata[:, scene.profile.channels.reference_mics[0]].copy())
    return np.concatenate(outs), np.concatenate(refs), ctl


def test_mode_switches_crossfade_without_clicks_and_passthrough_copies_the_reference(scene: Scene) -> None:
    b = scene.profile.audio.block_size
    fs = scene.profile.audio.sample_rate_hz
    k1, k2, k3 = fs // b // 2, fs // b, 3 * fs // b // 2  # switches at 0.5 s, 1 s, 1.5 s
    out, ref, _ = run_with_modes(scene, {k1: MODE_PASSTHROUGH, k2: MODE_OFF, k3: MODE_ANC})
    jumps = np.abs(np.diff(out.astype(np.float64)))
    steady = jumps[round(0.3 * fs) : k1 * b - 1].max()  # converged ANC, no switch
    switch_bound = 3.0 * max(steady, np.abs(np.diff(ref[: k1 * b])).max())
    for k in (k1, k2, k3):
        window = jumps[k * b - 2 : k * b + round(0.02 * fs)]
        assert window.max() <= switch_bound, (k, window.max(), switch_bound)
    # passthrough: after the fade the speaker carries the reference sample for sample
    sl = slice(k1 * b + round(0.01 * fs), k2 * b)
    np.testing.assert_array_equal(out[sl], ref[sl])
    # off: silence after the fade
    assert np.all(out[k2 * b + round(0.01 * fs) : k3 * b] == 0.0)


def test_a_mode_change_in_the_middle_of_a_crossfade_does_not_click(scene: Scene) -> None:
    b = scene.profile.audio.block_size
    fs = scene.profile.audio.sample_rate_hz
    k1 = fs // b // 2
    # passthrough, then off two blocks later (mid-fade), then ANC again one block after that
    out, ref, _ = run_with_modes(scene, {k1: MODE_PASSTHROUGH, k1 + 2: MODE_OFF, k1 + 3: MODE_ANC})
    jumps = np.abs(np.diff(out.astype(np.float64)))
    steady = max(jumps[round(0.3 * fs) : k1 * b - 1].max(), np.abs(np.diff(ref[: k1 * b])).max())
    assert jumps[k1 * b - 2 : (k1 + 3) * b + round(0.02 * fs)].max() <= 3.0 * steady


def test_non_finite_input_is_zeroed_counted_and_never_reaches_output_or_coefficients(scene: Scene) -> None:
    loop = scene.loop()
    ctl = scene.controller()
    ch = scene.profile.channels
    injected = 0

    def corrupt(k: int, indata: np.ndarray) -> None:
        if k % 10 == 5:
            indata[3, ch.reference_mics[0]] = np.nan
            indata[7, ch.error_mics[1]] = np.inf
            indata[8, ch.error_mics[1]] = -np.inf

    for k in range(400):
        injected += 3 if k % 10 == 5 else 0
        loop.step(ctl, corrupt)
        assert np.all(np.isfinite(loop.outdata))
    assert ctl.metrics[M_NONFINITE_COUNT] == injected
    assert ctl.metrics[M_BLOCKS] == 400
    assert all(np.all(np.isfinite(v)) for v in ctl.coefficients().values())
    assert ch.controllers == 2


def test_divergence_guard_restores_good_coefficients_after_a_coefficient_blow_up(scene: Scene) -> None:
    loop = scene.loop()
    ctl = scene.controller(algorithm="fxnlms")
    fs = scene.profile.audio.sample_rate_hz
    blocks_1s = fs // scene.profile.audio.block_size
    loop.run(ctl, blocks_1s)
    good = ctl.coefficients()["w_fxnlms"]
    ctl.load_coefficients({"w_fxnlms": good + 1e3 * np.random.default_rng(0).standard_normal(good.shape)})
    errors, dist = loop.run(ctl, blocks_1s)
    assert ctl.metrics[M_DIVERGENCE_COUNT] >= 1
    restored = ctl.coefficients()["w_fxnlms"]
    assert np.linalg.norm(restored) < 2 * np.linalg.norm(good)
    assert attenuation_db(errors, dist, 0.5, 1.0, fs) >= 20.0


def test_divergence_guard_catches_a_controller_that_makes_the_noise_louder(scene: Scene) -> None:
    # A secondary-path estimate of the wrong sign makes every update push the wrong way.
    flipped = [SecondaryPath(p.delay_samples, -p.fir) for p in scene.paths]
    ctl = Controller(
        scene.profile, flipped, ControllerSettings.from_profile(scene.profile, algorithm="fxnlms")
    )
    loop = scene.loop()
    fs = scene.profile.audio.sample_rate_hz
    errors, dist = loop.run(ctl, fs // scene.profile.audio.block_size)
    assert ctl.metrics[M_DIVERGENCE_COUNT] >= TRIP_AFTER_QUICK_RESTORES
    # after a few restores in quick succession the channels trip: anti-noise muted, no louder than no ANC
    assert ctl.metrics[M_TRIPPED_CHANNELS] == scene.profile.channels.controllers
    assert abs(attenuation_db(errors, dist, 0.5, 1.0, fs)) < 0.1
    assert attenuation_db(errors, dist, 0.0, 1.0, fs) > -10.0
    ctl.reset()
    loop.step(ctl)
    assert ctl.metrics[M_TRIPPED_CHANNELS] == 0


def test_output_never_exceeds_the_limit_and_limiting_is_counted(scene: Scene) -> None:
    p = scene.profile
    ctl = scene.controller(mode="passthrough")
    limit = limit_amplitude(p.output_limit_dbfs)
    rng = np.random.default_rng(3)
    outdata = np.zeros((p.audio.block_size, p.channels.output_channels), dtype=np.float32)
    peak = 0.0
    for _ in range(300):
        indata = (3.0 * rng.standard_normal((p.audio.block_size, p.channels.input_channels))).astype(
            np.float32
        )
        ctl.process(indata, outdata)
        peak = max(peak, float(np.abs(outdata).max()))
    assert peak <= limit
    assert peak > 0.9 * limit
    assert ctl.metrics[M_LIMITER_COUNT] > 0


def test_any_block_length_is_processed_without_error(scene: Scene) -> None:
    p = scene.profile
    ctl = scene.controller()
    rng = np.random.default_rng(4)
    for b in (1, 7, p.audio.block_size, 3 * p.audio.block_size + 5, 0):
        indata = (0.1 * rng.standard_normal((b, p.channels.input_channels))).astype(np.float32)
        outdata = np.full((b, p.channels.output_channels), 9.0, dtype=np.float32)
        ctl.process(indata, outdata)
        assert np.all(np.abs(outdata) <= limit_amplitude(p.output_limit_dbfs))


def test_coefficients_round_trip_and_bad_loads_name_the_key(scene: Scene) -> None:
    _, _, trained = scene.loop(), None, scene.controller(algorithm="hybrid")
    loop = scene.loop()
    for _ in range(200):
        loop.step(trained)
    coeffs = trained.coefficients()
    fresh = scene.controller(algorithm="hybrid")
    fresh.load_coefficients(coeffs)
    fresh.process(loop.indata, loop.outdata)  # takes effect at the next block boundary
    for key, value in coeffs.items():
        got = fresh.coefficients()[key]
        if key == "w_fxnlms" or key == "w_fxrls" or key == "mix":
            assert got.shape == value.shape
    np.testing.assert_allclose(fresh.coefficients()["p_fxrls"].shape, coeffs["p_fxrls"].shape)
    with pytest.raises(ValueError, match="w_fxnlms"):
        fresh.load_coefficients({"w_fxnlms": np.zeros((2, 3))})
    with pytest.raises(ValueError, match="bogus"):
        fresh.load_coefficients({"bogus": np.zeros(3)})
    with pytest.raises(ValueError, match="w_fxrls"):
        fresh.load_coefficients({"w_fxrls": np.full(coeffs["w_fxrls"].shape, np.nan)})


def test_load_coefficients_installs_exactly_what_was_given(scene: Scene) -> None:
    ctl = scene.controller(algorithm="fxnlms", mode="off")
    w = np.random.default_rng(5).standard_normal(ctl.coefficients()["w_fxnlms"].shape) * 0.01
    ctl.load_coefficients({"w_fxnlms": w})
    p = scene.profile
    ctl.process(
        np.zeros((p.audio.block_size, p.channels.input_channels), dtype=np.float32),
        np.zeros((p.audio.block_size, p.channels.output_channels), dtype=np.float32),
    )
    np.testing.assert_array_equal(ctl.coefficients()["w_fxnlms"], w)


def test_settings_out_of_bounds_are_rejected_naming_field_and_range(scene: Scene) -> None:
    p = scene.profile
    with pytest.raises(ValueError, match=r"controller\.mu: 3\.0 is outside \[0\.0001, 1\]"):
        ControllerSettings.from_profile(p, mu=3.0)
    with pytest.raises(ValueError, match=r"controller\.algorithm: 'lms' is not one of fxnlms, fxrls, hybrid"):
        ControllerSettings.from_profile(p, algorithm="lms")
    with pytest.raises(ValueError, match=r"controller\.taps"):
        ControllerSettings.from_profile(p, taps=10_000)
    with pytest.raises(ValueError, match=r"controller\.taps: 100\.5 must be a whole number"):
        ControllerSettings.from_profile(p, taps=100.5)
    with pytest.raises(ValueError, match=r"controller\.mode"):
        ControllerSettings.from_profile(p, mode="loud")
    with pytest.raises(ValueError, match=r"controller\.speed: unknown setting"):
        ControllerSettings.from_profile(p, speed=1)
    assert ControllerSettings.from_profile(p, mode="passthrough").mode == MODE_PASSTHROUGH


def test_apply_changes_filter_lengths_between_blocks_and_keeps_running(scene: Scene) -> None:
    loop = scene.loop()
    ctl = scene.controller(algorithm="hybrid")
    for _ in range(300):
        loop.step(ctl)
    ctl.apply(ControllerSettings.from_profile(scene.profile, algorithm="hybrid", taps=128, rls_taps=16))
    coeffs = ctl.coefficients()
    assert coeffs["w_fxnlms"].shape == (2, 128)
    assert coeffs["w_fxrls"].shape == (2, 16)
    errors, dist = loop.run(ctl, 1500)
    assert np.all(np.isfinite(errors))
    assert attenuation_db(errors, dist, 0.5, 1.0, scene.profile.audio.sample_rate_hz) >= 20.0
    assert ctl.settings.taps == 128


def test_controller_rejects_a_wrong_number_of_secondary_paths(scene: Scene) -> None:
    with pytest.raises(ValueError, match="secondary"):
        Controller(scene.profile, scene.paths[:1], ControllerSettings.from_profile(scene.profile))


def test_buffers_that_do_not_match_the_profile_get_silence_and_are_counted(scene: Scene) -> None:
    p = scene.profile
    ctl = scene.controller()
    b = p.audio.block_size
    too_few_inputs = np.ones((b, p.channels.input_channels - 1), dtype=np.float32)
    outdata = np.full((b, p.channels.output_channels), 0.3, dtype=np.float32)
    ctl.process(too_few_inputs, outdata)
    assert np.all(outdata == 0.0)
    ctl.process(np.ones((b, p.channels.input_channels), dtype=np.float32), np.zeros((b + 1, 2), np.float32))
    assert ctl.metrics[M_REJECTED_BLOCKS] == 2
    assert ctl.metrics[M_BLOCKS] == 0


def test_vehicle_cabin_controllers_sharing_one_reference_mic_both_cancel() -> None:
    profile = load_profile("vehicle-cabin-48k")
    fs = profile.audio.sample_rate_hz
    rng = np.random.default_rng(12)
    engine = tone(100, fs, 1.5) + tone(200, fs, 1.5, 0.05)  # order 2 and 4 at 3000 rpm
    refs = np.array([engine, engine])  # both seats hear the one firewall mic
    primaries = [decaying_fir(rng, 192, 128, 40.0) for _ in range(2)]
    secondaries = [decaying_fir(rng, 72, 96, 30.0) for _ in range(2)]
    loop_delay = 2 * profile.audio.block_size + profile.converter_delay_samples
    paths = [
        SecondaryPath.from_impulse_response(np.concatenate([np.zeros(loop_delay), s]), 128)
        for s in secondaries
    ]
    ctl = Controller(profile, paths, ControllerSettings.from_profile(profile))
    loop = ProfileLoop(profile, refs, primaries, secondaries, 1e-4)
    errors, dist = loop.run(ctl, loop.blocks)
    for c in range(2):
        sl = slice(round(1.0 * fs), round(1.5 * fs))
        assert 10 * np.log10(np.mean(dist[c, sl] ** 2) / np.mean(errors[c, sl] ** 2)) >= 20.0


def test_noise_onset_after_silence_causes_no_blast(scene: Scene) -> None:
    # Through a silence the filters hold still (the RLS inverse correlation must not grow), so the
    # first blocks of a sudden noise do not throw the weights about and drive the output to the limiter.
    fs = scene.profile.audio.sample_rate_hz
    refs = scene.references.copy()
    refs[:, : round(1.5 * fs)] = 0.0
    loop = ProfileLoop(scene.profile, refs, scene.primaries, scene.secondaries)  # digital silence
    ctl = scene.controller(algorithm="hybrid")
    p_before = ctl.coefficients()["p_fxrls"]
    loop.run(ctl, round(1.5 * fs) // scene.profile.audio.block_size)
    np.testing.assert_array_equal(ctl.coefficients()["p_fxrls"], p_before)
    errors, dist = loop.run(ctl, loop.blocks - loop.k)
    assert ctl.metrics[M_LIMITER_COUNT] == 0
    assert ctl.metrics[M_DIVERGENCE_COUNT] == 0
    assert attenuation_db(errors, dist, 0.6, 0.95, fs) >= 20.0


def test_noise_onset_after_a_quiet_room_causes_no_blast(scene: Scene) -> None:
    # The same onset after 1.5 s of nothing but the mics' own noise (-90 dBFS), which the filters do
    # adapt on: the first blocks of noise still do not reach the limiter.
    fs = scene.profile.audio.sample_rate_hz
    refs = scene.references.copy()
    refs[:, : round(1.5 * fs)] = 0.0
    loop = ProfileLoop(scene.profile, refs, scene.primaries, scene.secondaries, 10 ** (-90 / 20))
    ctl = scene.controller(algorithm="hybrid")
    loop.run(ctl, round(1.5 * fs) // scene.profile.audio.block_size)
    errors, dist = loop.run(ctl, loop.blocks - loop.k)
    assert ctl.metrics[M_LIMITER_COUNT] == 0
    assert ctl.metrics[M_DIVERGENCE_COUNT] == 0
    assert attenuation_db(errors, dist, 0.6, 0.95, fs) >= 20.0
