"""The callback object: stage dispatch, fault containment, xrun flags, thread id."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from agent.audio.base import StreamStatus
from agent.audio.rings import C_BAD_FRAMES, C_UNEXPECTED, XRUN_INPUT_OVERFLOW, XRUN_OUTPUT_UNDERFLOW
from agent.engine import STAGE_CONTROL, STAGE_SILENCE, Engine, Stage
from agent.profiles import load_profile


class Copy:
    """Writes the reference mic to every speaker: a stage whose output is easy to check."""

    def process(self, indata: np.ndarray, outdata: np.ndarray) -> None:
        outdata[:] = indata[:, :1]


class Faulty:
    def process(self, indata: np.ndarray, outdata: np.ndarray) -> None:
        outdata[:] = 1.0
        raise RuntimeError("boom")


@pytest.fixture(scope="module")
def profile():
    return load_profile("hvac-duct-16k")


def _blocks(profile, value: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    ch = profile.channels
    indata = np.full((profile.audio.block_size, ch.input_channels), value, dtype=np.float32)
    return indata, np.zeros((profile.audio.block_size, ch.output_channels), dtype=np.float32)


def test_a_new_engine_outputs_silence(profile) -> None:
    engine = Engine(profile)
    indata, outdata = _blocks(profile)
    outdata[:] = 0.9
    engine.callback(indata, outdata, profile.audio.block_size, None, StreamStatus())
    assert np.all(outdata == 0.0)
    assert engine.stage.code == STAGE_SILENCE
    assert engine.blocks == 1


def test_the_installed_stage_runs_from_the_next_block(profile) -> None:
    engine = Engine(profile)
    indata, outdata = _blocks(profile)
    engine.install(Stage(Copy(), STAGE_CONTROL))
    engine.callback(indata, outdata, profile.audio.block_size, None, StreamStatus())
    assert np.all(outdata == 0.25)
    assert engine.rings.drain_blocks().stage.tolist() == [STAGE_CONTROL]


def test_a_raising_stage_is_silenced_and_counted_not_propagated(profile) -> None:
    engine = Engine(profile)
    engine.install(Stage(Faulty(), STAGE_CONTROL))
    indata, outdata = _blocks(profile)
    for _ in range(3):
        engine.callback(indata, outdata, profile.audio.block_size, None, StreamStatus())
    assert np.all(outdata == 0.0)
    assert engine.counter(C_UNEXPECTED) == 3
    assert engine.blocks == 3


def test_a_block_of_the_wrong_length_is_silenced_and_counted(profile) -> None:
    engine = Engine(profile)
    engine.install(Stage(Copy(), STAGE_CONTROL))
    B = profile.audio.block_size
    ch = profile.channels
    indata = np.ones((B // 2, ch.input_channels), dtype=np.float32)
    outdata = np.ones((B // 2, ch.output_channels), dtype=np.float32)
    engine.callback(indata, outdata, B // 2, None, StreamStatus())
    assert np.all(outdata == 0.0)
    assert engine.counter(C_BAD_FRAMES) == 1


def test_xrun_flags_reach_the_ring_as_bits(profile) -> None:
    engine = Engine(profile)
    indata, outdata = _blocks(profile)
    status = StreamStatus()
    status.input_overflow = True
    status.output_underflow = True
    engine.callback(indata, outdata, profile.audio.block_size, None, status)
    engine.callback(indata, outdata, profile.audio.block_size, None, StreamStatus())
    assert engine.rings.drain_blocks().xrun.tolist() == [XRUN_INPUT_OVERFLOW | XRUN_OUTPUT_UNDERFLOW, 0]


def test_the_audio_thread_id_is_recorded_by_the_first_block(profile) -> None:
    engine = Engine(profile)
    indata, outdata = _blocks(profile)
    seen = []

    def audio_thread() -> None:
        engine.callback(indata, outdata, profile.audio.block_size, None, StreamStatus())
        seen.append(threading.get_native_id())

    t = threading.Thread(target=audio_thread)
    t.start()
    t.join()
    assert engine.audio_thread_id == seen[0]


def test_a_stage_with_a_malformed_metric_index_is_refused(profile) -> None:
    engine = Engine(profile)
    with pytest.raises(ValueError, match="metric_index"):
        engine.install(Stage(Copy(), STAGE_CONTROL, np.zeros(4), np.zeros(3, dtype=np.int32)))
