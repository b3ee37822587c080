"""Firmware profiles load, and a bad one names the file, the field and the allowed values."""

from pathlib import Path

import pytest
import yaml

from agent.profiles import PROFILE_DIR, ProfileError, available_profiles, load_profile


def test_shipped_profiles_cover_the_three_hardware_models():
    names = available_profiles()
    assert {"headphone-ff-48k", "hvac-duct-16k", "vehicle-cabin-48k"} <= set(names)
    head = load_profile("headphone-ff-48k")
    assert head.audio.sample_rate_hz == 48000 and head.audio.block_size <= 64
    duct = load_profile("hvac-duct-16k")
    assert duct.audio.sample_rate_hz == 16000 and duct.controller.taps.default >= 512
    cabin = load_profile("vehicle-cabin-48k")
    assert cabin.engine_orders and cabin.rpm_range is not None


def _write_variant(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load((PROFILE_DIR / "headphone-ff-48k.yaml").read_text())
    edit(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("edit", "field", "allowed"),
    [
        (lambda d: d["audio"].update(sample_rate_hz=44000), "audio.sample_rate_hz", "48000"),
        (lambda d: d["controller"].update(algorithm="lms"), "controller.algorithm", "hybrid"),
        (lambda d: d["controller"]["mu"].update(default=5.0), "mu.default", "[0.0001, 1]"),
        (lambda d: d["channels"].update(speakers=[0, 7]), "channels.speakers", "0..1"),
        (lambda d: d.update(colour="red"), "(top level)", "allowed keys"),
        (lambda d: d.update(output_limit_dbfs=3), "output_limit_dbfs", "<= 0"),
    ],
)
def test_bad_profile_names_file_field_and_allowed_values(tmp_path, edit, field, allowed):
    path = _write_variant(tmp_path, edit)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    message = str(info.value)
    assert str(path) in message
    assert field in message
    assert allowed in message


def test_unknown_profile_name_lists_the_available_ones():
    with pytest.raises(ProfileError, match="headphone-ff-48k"):
        load_profile("no-such-device")
