"""The agent config file: the example parses, every error names the file, the field and what is allowed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agent.config import ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "agent.example.yaml"


def test_the_example_config_parses_with_documented_defaults() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.profile == "headphone-ff-48k"
    assert cfg.backend == "sounddevice"
    assert str(cfg.state_dir) == "/var/lib/anc-agent"
    assert cfg.safety.hold_s == 5.0 and cfg.cloud is None
    assert cfg.controller == {"mode": "anc"}


def test_every_top_level_key_of_the_parser_is_documented_in_the_example() -> None:
    text = EXAMPLE.read_text()
    from agent.config import _TOP_KEYS

    for key in _TOP_KEYS:
        assert f"\n{key}:" in text or f"\n# {key}:" in text, key


@pytest.mark.parametrize(
    ("doc", "field", "allowed"),
    [
        ({"backend": "alsa"}, "backend", "allowed values: sounddevice, simulated, wav"),
        ({"log_level": "loud"}, "log_level", "allowed values: debug, info, warning, error"),
        ({"checkpoint_interval_s": 0}, "checkpoint_interval_s", "outside [1, 86400]"),
        ({"controller": {"mode": "quiet"}}, "controller.mode", "allowed values: anc, passthrough, off"),
        ({"controller": {"taps": "many"}}, "controller.taps", "allowed: an integer"),
        ({"controller": {"gain": 1}}, "controller.gain", "allowed keys: mode, algorithm"),
        ({"safety": {"hold_s": -1}}, "safety.hold_s", "outside [0.5, 600]"),
        ({"wat": 1}, "wat", "allowed keys: profile, controller"),
        ({"backend": "wav"}, "wav.path", "is required when backend is wav"),
        ({"simulated": {"paced": "yes"}}, "simulated.paced", "allowed values: true, false"),
    ],
)
def test_bad_values_name_file_field_and_allowed(doc: dict, field: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(doc, Path("/etc/anc-agent/agent.yaml"))
    text = str(err.value)
    assert text.startswith(f"/etc/anc-agent/agent.yaml: {field}: ")
    assert allowed in text


def test_relative_paths_resolve_against_the_config_directory(tmp_path: Path) -> None:
    cfg = parse_config(
        {"state_dir": "state", "backend": "wav", "wav": {"path": "a.wav"}}, tmp_path / "agent.yaml"
    )
    assert cfg.state_dir == tmp_path / "state"
    assert cfg.wav.path == tmp_path / "a.wav"


def _run(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", "--config", str(config)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_run_with_a_bad_config_exits_2_naming_file_and_field(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(yaml.safe_dump({"backend": "simulated", "telemetry_interval_s": 0}))
    proc = _run(config)
    assert proc.returncode == 2
    assert f"{config}: telemetry_interval_s: 0 is outside [0.1, 3600]" in proc.stderr


def test_run_with_an_out_of_bounds_override_exits_2_naming_the_profile_range(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(
        yaml.safe_dump({"backend": "simulated", "profile": "hvac-duct-16k", "state_dir": str(tmp_path),
                        "controller": {"mu": 3.0}})
    )  # fmt: skip
    proc = _run(config)
    assert proc.returncode == 2
    assert f"{config}: controller.mu" in proc.stderr and "[0.0001, 1]" in proc.stderr


def test_run_with_an_unknown_profile_exits_2_listing_the_profiles(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(
        yaml.safe_dump({"backend": "simulated", "profile": "toaster", "state_dir": str(tmp_path)})
    )
    proc = _run(config)
    assert proc.returncode == 2
    assert "profile: toaster: no such profile (available: headphone-ff-48k" in proc.stderr
