"""The control thread against the real engine, Controller, simulated plant and safety detector."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.audio.simulated import SimulatedBackend
from agent.control.scenes import siren
from agent.dsp.controller import MODE_ANC, MODE_PASSTHROUGH
from agent.engine import STAGE_CONTROL, STAGE_IDENTIFY, Engine
from agent.profiles import load_profile
from agent.service.checkpoint import CheckpointStore
from agent.service.control import ControlService
from agent.service.settings import default_settings
from agent.sim.noise import make_noise
from agent.sim.plant import AcousticPlant


class Collect:
    """An Uplink that keeps every record (the sync layer's place)."""

    def __init__(self) -> None:
        self.telemetry_records: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.feature_records: list[dict[str, Any]] = []

    def telemetry(self, record: dict[str, Any]) -> None:
        self.telemetry_records.append(record)

    def event(self, record: dict[str, Any]) -> None:
        self.events.append(record)

    def features(self, record: dict[str, Any]) -> None:
        self.feature_records.append(record)


class SirenOver:
    """A NoiseSource: the profile's broadband noise, plus a hi-lo siren from `onset_s` to `end_s`."""

    def __init__(self, profile, onset_s: float, end_s: float, level_dbfs: float = -20.0) -> None:
        self.base = make_noise("broadband:100-500", profile)
        self.spec = "broadband+siren"
        self.sample_rate_hz = profile.audio.sample_rate_hz
        n = round((end_s - onset_s) * self.sample_rate_hz)
        s = siren("hilo", n, self.sample_rate_hz, np.random.default_rng(6))
        self.siren = s * (10 ** (level_dbfs / 20) / np.sqrt(np.mean(s**2)))
        self.onset = round(onset_s * self.sample_rate_hz)
        self.pos = 0

    def fill(self, out: np.ndarray) -> None:
        self.base.fill(out)
        k = np.arange(self.pos, self.pos + out.shape[0]) - self.onset
        inside = (k >= 0) & (k < self.siren.shape[0])
        out[inside] += self.siren[k[inside]]
        self.pos += out.shape[0]


def _wait(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.fixture(scope="module")
def hvac():
    return load_profile("hvac-duct-16k")


def _service(profile, tmp_path: Path | None = None, paced: bool = False, plant=None, **kw):
    engine = Engine(profile)
    uplink = Collect()
    control = ControlService(
        profile, engine, default_settings(profile, telemetry_interval_s=kw.pop("telemetry_interval_s", 1.0)),
        uplink=uplink, store=CheckpointStore(tmp_path) if tmp_path else None, **kw,
    )  # fmt: skip
    backend = SimulatedBackend(profile, plant=plant, paced=paced)
    return engine, control, backend, uplink


def test_identification_then_controller_then_telemetry_and_a_warm_restart(hvac, tmp_path: Path) -> None:
    engine, control, backend, uplink = _service(hvac, tmp_path, telemetry_interval_s=0.2)
    assert control.prepare() == "identify"
    assert engine.stage.code == STAGE_IDENTIFY
    backend.start(engine.callback)
    control.start()
    try:
        assert _wait(lambda: engine.stage.code == STAGE_CONTROL, 60)
        assert control.ready.is_set()
        assert any(e["type"] == "identified" for e in uplink.events)
        blocks_now = engine.blocks
        assert _wait(lambda: engine.blocks > blocks_now + 20 * hvac.audio.blocks(1.0), 60)  # 20 s of audio
        assert _wait(lambda: len(uplink.telemetry_records) >= 3, 10)
    finally:
        control.stop()
        backend.stop()
    rec = uplink.telemetry_records[-1]
    keys = ("seq", "ts", "mode", "attenuation_db", "error_power_dbfs", "callback_us_p50", "callback_us_p99",
            "callback_load_p99", "xruns", "cpu_pct", "blocks", "stage")  # fmt: skip
    for key in keys:
        assert key in rec, key
    seqs = [r["seq"] for r in uplink.telemetry_records]
    assert seqs == list(range(len(seqs)))
    assert rec["mode"] == "anc" and rec["stage"] == "control"
    assert rec["attenuation_db"] is not None and rec["attenuation_db"] > 3.0
    assert rec["callback_faults"] == 0

    assert control.checkpoint() is not None
    coeffs = control.coefficients()
    engine2, control2, _, _ = _service(hvac, tmp_path)
    assert control2.prepare() == "warm"
    assert engine2.stage.code == STAGE_CONTROL
    # The load is posted to the kernel; it lands at the next block.
    from agent.audio.base import StreamStatus

    ind = np.zeros((hvac.audio.block_size, hvac.channels.input_channels), dtype=np.float32)
    out = np.zeros((hvac.audio.block_size, hvac.channels.output_channels), dtype=np.float32)
    engine2.callback(ind, out, hvac.audio.block_size, None, StreamStatus())
    warm = control2.coefficients()
    for key in ("w_fxnlms", "w_fxrls"):  # the filters (running power estimates move with the block)
        assert np.abs(coeffs[key]).max() > 0, key
        assert np.allclose(warm[key], coeffs[key], rtol=1e-3, atol=1e-9), key


def test_a_siren_switches_to_passthrough_within_300_ms_and_back_after_the_hold(hvac) -> None:
    onset_s, end_s, hold_s = 3.5, 5.0, 1.0
    plant = AcousticPlant(hvac, noise=SirenOver(hvac, onset_s, end_s))
    engine, control, backend, uplink = _service(hvac, paced=True, plant=plant, hold_s=hold_s)
    control.prepare()
    backend.start(engine.callback)
    control.start()
    try:
        assert _wait(lambda: any(e["type"] == "emergency" for e in uplink.events), 30)
        assert control.controller is not None
        assert control.controller.settings.mode == MODE_PASSTHROUGH
        assert control.effective_mode == "passthrough" and control.settings.mode_name == "anc"
        assert _wait(lambda: any(e["type"] == "emergency_end" for e in uplink.events), 30)
        assert control.controller.settings.mode == MODE_ANC
    finally:
        control.stop()
        backend.stop()
    start = next(e for e in uplink.events if e["type"] == "emergency")
    end = next(e for e in uplink.events if e["type"] == "emergency_end")
    # The first mic block the callback sees is silence: noise sample n is stream sample n + B.
    true_onset_s = onset_s + hvac.audio.block_period_s
    assert start["label"] == "siren" and start["action"] == "passthrough"
    assert 0.0 <= start["switched_at_s"] - true_onset_s <= 0.300, start
    # What the daemon adds to the detector's decision: one control tick and a block or two.
    assert start["switched_at_s"] - start["detected_s"] <= 0.060, start
    assert end["switched_at_s"] >= end_s + hold_s - 0.1, end


def test_apply_settings_validates_against_the_profile_and_keeps_the_running_values(hvac) -> None:
    _, control, _, _ = _service(hvac)
    control.prepare()
    before = control.current_settings()
    with pytest.raises(ValueError, match=r"^mu: 3\.0 is outside \[0\.0001, 1\] for profile hvac-duct-16k"):
        control.apply_settings({"mu": 3.0, "mode": "off"})
    with pytest.raises(
        ValueError, match=r"^mode: 'loud' is not allowed \(allowed values: anc, passthrough, off\)"
    ):
        control.apply_settings({"mode": "loud"})
    with pytest.raises(ValueError, match=r"^volume: unknown setting"):
        control.apply_settings({"volume": 3})
    assert control.current_settings() == before
    applied = control.apply_settings(
        {"mode": "off", "mu": 0.01, "telemetry_interval_s": 2.0, "offload": True}
    )
    assert applied["mode"] == "off" and applied["mu"] == 0.01 and applied["offload"] is True
    assert control.current_settings() == applied


def test_commands_drive_the_override_and_bad_commands_name_the_field(hvac, tmp_path: Path) -> None:
    engine, control, backend, uplink = _service(hvac, tmp_path)
    control.prepare()
    backend.start(engine.callback)
    control.start()
    try:
        assert _wait(lambda: control.controller is not None, 60)
        control.command({"type": "passthrough", "hold_s": 600, "label": "siren"})
        assert control.controller.settings.mode == MODE_PASSTHROUGH
        assert control.status()["effective_mode"] == "passthrough"
        control.command({"type": "resume"})
        assert control.controller.settings.mode == MODE_ANC
        with pytest.raises(ValueError, match=r"^type: 'reboot' is not allowed \(allowed values: passthrough"):
            control.command({"type": "reboot"})
        with pytest.raises(ValueError, match=r"^hold_s: -1 is outside \[0, 3600\]"):
            control.command({"type": "passthrough", "hold_s": -1})
        control.command({"type": "capture", "seconds": 0.2})
        assert _wait(lambda: any(e["type"] == "capture" for e in uplink.events), 10)
    finally:
        control.stop()
        backend.stop()
    types = [e["type"] for e in uplink.events]
    assert types.count("emergency") == 1 and types.count("emergency_end") == 1
    capture = next(e for e in uplink.events if e["type"] == "capture")
    data = np.fromfile(capture["path"], dtype="<f4")
    assert data.shape[0] == hvac.audio.samples(0.2) and np.any(data != 0)


def test_coefficients_with_the_wrong_shape_are_refused_naming_the_key(hvac, tmp_path: Path) -> None:
    _, control, _, _ = _service(hvac, tmp_path)
    control.prepare()
    control._build_controller(_true_paths(hvac))
    coeffs = control.coefficients()
    bad = {"w_fxnlms": np.zeros((coeffs["w_fxnlms"].shape[0], 3))}
    with pytest.raises(ValueError, match=r"^w_fxnlms: shape"):
        control.load_coefficients(bad)


def _true_paths(profile):
    from agent.dsp.secondary_path import SecondaryPath

    plant = AcousticPlant(profile)
    return [
        SecondaryPath.from_impulse_response(h, profile.controller.secondary_path_taps)
        for h in plant.true_secondary_responses()
    ]


def test_a_speaker_the_mics_cannot_hear_fails_identification_and_never_cancels(hvac, tmp_path: Path) -> None:
    import wave

    from agent.audio.wavfile import WavBackend

    rng = np.random.default_rng(0)
    pcm = (rng.standard_normal((hvac.audio.samples(3.0), 2)) * 3000).astype("<i2")
    path = tmp_path / "field.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(hvac.audio.sample_rate_hz)
        w.writeframes(pcm.tobytes())
    engine = Engine(hvac)
    uplink = Collect()
    control = ControlService(hvac, engine, default_settings(hvac), uplink=uplink)
    control.prepare()
    backend = WavBackend(hvac, path, loop=True, paced=False)  # a recording: the speaker is never heard
    backend.start(engine.callback)
    control.start()
    try:
        assert _wait(lambda: any(e["type"] == "identification_failed" for e in uplink.events), 60)
        assert control.controller is None
        assert engine.stage.code == STAGE_IDENTIFY  # silence until the retry
        assert _wait(lambda: control.identifier is not None, 10)  # probing again after the back-off
    finally:
        control.stop()
        backend.stop()
    assert control.status()["last_error"].startswith("identification:")
