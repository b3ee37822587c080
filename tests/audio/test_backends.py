"""The audio backends: simulated plant (paced, unpaced, stalled), WAV replay, open_backend errors."""

from __future__ import annotations

import time
import wave
from pathlib import Path

import numpy as np
import pytest

from agent.audio import AudioBackendError, open_backend
from agent.audio.simulated import SimulatedBackend
from agent.audio.wavfile import WavBackend
from agent.profiles import load_profile
from tests.sync.waiting import wait_until


class Recorder:
    """A callback that keeps a copy of every mic block and plays a constant on the speakers."""

    def __init__(self, level: float = 0.0) -> None:
        self.blocks: list[np.ndarray] = []
        self.flags: list[bool] = []
        self.level = level

    def __call__(self, indata, outdata, frames, time_info, status) -> None:
        self.blocks.append(indata.copy())
        self.flags.append(bool(status))
        outdata[:] = self.level


def _wait_for(predicate) -> bool:
    return wait_until(predicate, timeout_s=5.0, step_s=0.005)


@pytest.fixture(scope="module")
def hvac():
    return load_profile("hvac-duct-16k")


def test_simulated_backend_feeds_the_plants_mic_blocks(hvac) -> None:
    backend = SimulatedBackend(hvac, paced=False)
    rec = Recorder()
    backend.start(rec)
    assert _wait_for(lambda: len(rec.blocks) >= 200)
    backend.stop()
    assert not backend.running
    blocks = np.concatenate(rec.blocks[1:])
    assert blocks.shape[1] == hvac.channels.input_channels
    ref = blocks[:, hvac.channels.reference_mics[0]]
    assert np.sqrt(np.mean(ref.astype(np.float64) ** 2)) > 1e-3  # the plant's noise reaches the mic


def test_paced_simulated_backend_runs_at_the_block_rate(hvac) -> None:
    backend = SimulatedBackend(hvac, paced=True)
    rec = Recorder()
    backend.start(rec)
    time.sleep(1.0)
    backend.stop()
    expected = hvac.audio.sample_rate_hz / hvac.audio.block_size  # 500 blocks/s
    assert 0.6 * expected <= len(rec.blocks) <= 1.2 * expected


def test_a_stalled_backend_delivers_no_blocks_until_resumed(hvac) -> None:
    backend = SimulatedBackend(hvac, paced=True)
    rec = Recorder()
    backend.start(rec)
    assert _wait_for(lambda: len(rec.blocks) > 10)
    assert backend.stall(True)
    time.sleep(0.05)
    n = len(rec.blocks)
    time.sleep(0.3)
    assert len(rec.blocks) == n
    backend.stall(False)
    assert _wait_for(lambda: len(rec.blocks) > n + 10)
    backend.stop()


def _write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    pcm = np.round(np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(samples.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def test_wav_backend_replays_the_file_as_mic_input_in_order(hvac, tmp_path: Path) -> None:
    n = 10 * hvac.audio.block_size + 5
    samples = np.zeros((n, 3))
    samples[:, 0] = np.arange(n) / 40000.0
    samples[:, 1] = -0.5
    path = tmp_path / "rec.wav"
    _write_wav(path, samples, hvac.audio.sample_rate_hz)
    backend = WavBackend(hvac, path, loop=False, paced=False)
    rec = Recorder()
    backend.start(rec)
    assert backend.pump.finished.wait(5.0)
    backend.stop()
    got = np.concatenate(rec.blocks)
    assert got.shape == (11 * hvac.audio.block_size, 2)  # extra channels dropped, last block padded
    assert np.allclose(got[:n, 0], np.round(samples[:, 0] * 32767) / 32768, atol=1e-6)
    assert np.allclose(got[:n, 1], -0.5, atol=1e-4)
    assert np.all(got[n:] == 0.0)


def test_wav_backend_rejects_a_file_with_too_few_channels(hvac, tmp_path: Path) -> None:
    path = tmp_path / "mono.wav"
    _write_wav(path, np.zeros((1000, 1)), hvac.audio.sample_rate_hz)
    with pytest.raises(
        AudioBackendError, match=r"mono\.wav: 1 channels; profile hvac-duct-16k needs at least 2"
    ):
        WavBackend(hvac, path)


def test_wav_backend_rejects_a_file_that_is_not_a_wav(hvac, tmp_path: Path) -> None:
    path = tmp_path / "junk.wav"
    path.write_bytes(b"RIFF\x00\x00garbage")
    with pytest.raises(AudioBackendError, match=r"junk\.wav"):
        WavBackend(hvac, path)


def test_open_backend_names_the_allowed_backends(hvac) -> None:
    with pytest.raises(AudioBackendError, match="allowed values: sounddevice, simulated, wav"):
        open_backend("alsa", hvac)
