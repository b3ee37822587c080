"""`anc-agent detect` as a subprocess on WAV files written here with the stdlib `wave` module."""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from agent.control.scenes import Event, emergency_scene, negative_scene

REPO = Path(__file__).resolve().parents[2]


def write_wav(
    path: Path, samples: np.ndarray, sample_rate_hz: int, width: int = 2, channels: int = 1
) -> None:
    """PCM WAV of `samples` ((n,) float in [-1, 1]) in `width` bytes, copied to every channel."""
    scale = float(2 ** (8 * width - 1) - 1)
    ints = np.round(np.clip(samples, -1, 1) * scale).astype(f"<i{width}")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(sample_rate_hz)
        w.writeframes(np.repeat(ints[:, None], channels, axis=1).tobytes())


def detect(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "detect", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Event | None]]:
    """Three WAV files and the truth of their emergency (None: there is none)."""
    folder = tmp_path_factory.mktemp("wav")
    siren = emergency_scene("siren-wail", "speech", 5.0, 16000, seed=5, sound_s=4.0)
    alarm = emergency_scene("alarm-t3", "hvac", 5.0, 48000, seed=5, sound_s=4.0)
    quiet = negative_scene("speech", 16000, seed=5, duration_s=8.0)
    files = {
        "siren": (folder / "siren.wav", siren.events[0]),
        "alarm": (folder / "alarm-stereo-48k.wav", alarm.events[0]),
        "speech": (folder / "speech.wav", None),
    }
    write_wav(files["siren"][0], siren.samples, 16000)
    write_wav(files["alarm"][0], alarm.samples, 48000, width=4, channels=2)
    write_wav(files["speech"][0], quiet.samples, 16000)
    return files


def test_json_lists_each_file_with_its_detections(recordings: dict[str, tuple[Path, Event | None]]) -> None:
    paths = [str(recordings[k][0]) for k in ("siren", "alarm", "speech")]
    result = detect("--json", *paths)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [r["file"] for r in report] == paths
    for entry, key, label in zip(report, ("siren", "alarm", "speech"), ("siren", "alarm", None), strict=True):
        truth = recordings[key][1]
        if truth is None:
            assert entry["detections"] == []
            continue
        assert len(entry["detections"]) == 1, entry
        found = entry["detections"][0]
        assert set(found) == {"label", "onset_s", "end_s", "confidence"}
        assert found["label"] == label
        assert abs(found["onset_s"] - truth.onset_s) <= 0.3
        assert abs(found["end_s"] - truth.end_s) <= 0.3
        assert 0.0 < found["confidence"] <= 1.0


def test_text_output_names_label_and_times(recordings: dict[str, tuple[Path, Event | None]]) -> None:
    result = detect("--hold", "1.5", str(recordings["siren"][0]))
    assert result.returncode == 0, result.stderr
    assert "siren.wav: 1 detection(s)" in result.stdout
    assert "siren" in result.stdout.splitlines()[1] and " s " in result.stdout


def test_corrupt_files_are_reported_and_the_others_still_run(
    recordings: dict[str, tuple[Path, Event | None]], tmp_path: Path
) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all\n")
    missing = tmp_path / "missing.wav"
    good = str(recordings["siren"][0])
    result = detect("--json", str(junk), good, str(text), str(missing))
    assert result.returncode == 1
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 3, result.stderr
    for bad, line in zip((junk, text, missing), errors, strict=True):
        assert str(bad) in line and line.startswith("anc-agent detect: ")
    report = json.loads(result.stdout)
    assert [r["file"] for r in report] == [good]
    assert report[0]["detections"][0]["label"] == "siren"


def test_a_bad_hold_is_refused_with_the_allowed_range(
    recordings: dict[str, tuple[Path, Event | None]],
) -> None:
    result = detect("--hold", "-1", str(recordings["siren"][0]))
    assert result.returncode == 2
    assert "--hold -1 is outside (0, 600]" in result.stderr
