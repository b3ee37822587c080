"""Coefficient checkpoints: round trip, atomic replacement, corrupt and truncated files ignored."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from agent.service.checkpoint import (
    CURRENT_NAME,
    PREVIOUS_NAME,
    Checkpoint,
    CheckpointError,
    CheckpointStore,
    decode,
    encode,
)


def _ckpt(value: float) -> Checkpoint:
    return Checkpoint(
        coefficients={"w": np.full((2, 8), value), "counter": np.array([3], dtype=np.int64)},
        secondary={"delay_samples": np.array([5, 6], dtype=np.int64), "fir": np.full((2, 4), 0.5)},
        meta={"profile": "hvac-duct-16k", "value": value},
    )


def test_round_trip_keeps_arrays_dtypes_and_meta() -> None:
    back = decode(encode(_ckpt(1.5)))
    assert np.array_equal(back.coefficients["w"], np.full((2, 8), 1.5))
    assert back.coefficients["counter"].dtype == np.int64
    assert np.array_equal(back.secondary["delay_samples"], [5, 6])
    assert back.meta == {"profile": "hvac-duct-16k", "value": 1.5}


def test_save_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save(_ckpt(1.0))
    store.save(_ckpt(2.0))
    assert (tmp_path / CURRENT_NAME).exists() and (tmp_path / PREVIOUS_NAME).exists()
    assert decode((tmp_path / PREVIOUS_NAME).read_bytes()).meta["value"] == 1.0
    loaded = store.load()
    assert loaded is not None and loaded.meta["value"] == 2.0
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b[: len(b) // 2], "truncated"),
        (lambda b: b[:-40] + bytes(40), "checksum mismatch"),
        (lambda b: b"NOTACKPT" + b[8:], "bad magic"),
        (lambda b: b"", "bad magic"),
    ],
)
def test_a_damaged_current_checkpoint_falls_back_to_the_previous_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage, message: str
) -> None:
    store = CheckpointStore(tmp_path)
    store.save(_ckpt(1.0))
    store.save(_ckpt(2.0))
    current = tmp_path / CURRENT_NAME
    current.write_bytes(damage(current.read_bytes()))
    with caplog.at_level(logging.WARNING):
        loaded = store.load()
    assert loaded is not None and loaded.meta["value"] == 1.0
    assert message in caplog.text and CURRENT_NAME in caplog.text


def test_no_usable_checkpoint_loads_as_none(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    assert store.load() is None
    (tmp_path / CURRENT_NAME).write_bytes(b"garbage")
    (tmp_path / PREVIOUS_NAME).write_bytes(b"")
    assert store.load() is None


def test_decode_names_the_source_on_error() -> None:
    with pytest.raises(CheckpointError, match=r"^/x/c\.ckpt: "):
        decode(b"short", "/x/c.ckpt")


def test_reserved_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="reserved"):
        encode(Checkpoint(coefficients={"__meta__": np.zeros(1)}))
