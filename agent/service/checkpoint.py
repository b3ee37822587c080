"""Coefficient checkpoints in the state directory: written atomically, checked on load, two kept.

A checkpoint holds what a warm restart needs: the controller's adaptive state
(`Controller.coefficients()`), the identified secondary paths (so identification can be skipped) and a
small JSON header (profile, algorithm, taps, time written, attenuation baseline).

File format (`coefficients.ckpt`): the 8-byte magic `ANCCKPT1`, the payload length as 8 bytes little
endian, the SHA-256 of the payload (32 bytes), then the payload: an uncompressed `.npz` archive (loaded
with `allow_pickle=False`). Writing goes to a temporary file in the same directory, fsync, then the
current file becomes `coefficients.prev.ckpt` and the temporary one is renamed over the current one, and
the directory is fsynced. A truncated or corrupt file (wrong magic, length or checksum, unreadable
archive) is reported with a warning and skipped; loading falls back to the previous checkpoint, and
start-up never fails because of a checkpoint.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MAGIC = b"ANCCKPT1"
CURRENT_NAME = "coefficients.ckpt"
PREVIOUS_NAME = "coefficients.prev.ckpt"
_HEADER_BYTES = len(MAGIC) + 8 + 32
_META_KEY = "__meta__"
_SECONDARY_PREFIX = "__secondary__/"

log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint file that cannot be trusted; the message names the file and the defect."""


@dataclass
class Checkpoint:
    """coefficients: controller state by key; secondary: the identified secondary paths as arrays
    (`agent.dsp.secondary_path.secondary_paths_to_dict`); meta: JSON-serialisable facts (profile,
    settings, written_at, ...)."""

    coefficients: dict[str, np.ndarray]
    secondary: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def encode(ckpt: Checkpoint) -> bytes:
    """The checkpoint as file bytes (header + checksummed npz payload)."""
    arrays: dict[str, np.ndarray] = {}
    for key, value in ckpt.coefficients.items():
        if key.startswith("__"):
            raise ValueError(f"coefficient key {key!r}: keys starting with '__' are reserved")
        arrays[key] = np.asarray(value)
    for key, value in ckpt.secondary.items():
        arrays[_SECONDARY_PREFIX + key] = np.asarray(value)
    arrays[_META_KEY] = np.frombuffer(json.dumps(ckpt.meta, sort_keys=True).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    payload = buf.getvalue()
    return MAGIC + len(payload).to_bytes(8, "little") + hashlib.sha256(payload).digest() + payload


def decode(data: bytes, source: str = "checkpoint") -> Checkpoint:
    """Parse file bytes; CheckpointError naming `source` and the defect when anything is off."""
    if len(data) < _HEADER_BYTES or data[: len(MAGIC)] != MAGIC:
        raise CheckpointError(f"{source}: not a checkpoint (bad magic or shorter than the header)")
    length = int.from_bytes(data[len(MAGIC) : len(MAGIC) + 8], "little")
    digest = data[len(MAGIC) + 8 : _HEADER_BYTES]
    payload = data[_HEADER_BYTES:]
    if len(payload) != length:
        raise CheckpointError(f"{source}: truncated ({len(payload)} of {length} payload bytes)")
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError(f"{source}: checksum mismatch (the file is corrupt)")
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        meta = json.loads(arrays.pop(_META_KEY).tobytes().decode()) if _META_KEY in arrays else {}
    except (ValueError, OSError, KeyError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{source}: unreadable archive ({exc})") from exc
    secondary: dict[str, np.ndarray] = {}
    coefficients: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        if key.startswith(_SECONDARY_PREFIX):
            secondary[key[len(_SECONDARY_PREFIX) :]] = value
        else:
            coefficients[key] = value
    return Checkpoint(coefficients=coefficients, secondary=secondary, meta=meta)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CheckpointStore:
    """The current and previous checkpoint of one state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.current = self.state_dir / CURRENT_NAME
        self.previous = self.state_dir / PREVIOUS_NAME

    def save(self, ckpt: Checkpoint) -> Path:
        """Write `ckpt` atomically as the current checkpoint; the old current one becomes the previous."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ckpt.meta.setdefault("written_at", time.time())
        data = encode(ckpt)
        tmp = self.state_dir / f".{CURRENT_NAME}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if self.current.exists():
            os.replace(self.current, self.previous)
        os.replace(tmp, self.current)
        _fsync_dir(self.state_dir)
        return self.current

    def load(self) -> Checkpoint | None:
        """The newest good checkpoint (current, else previous), or None; bad files are logged, skipped."""
        for path in (self.current, self.previous):
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("checkpoint %s: cannot read (%s); ignored", path, exc.strerror)
                continue
            try:
                return decode(data, str(path))
            except CheckpointError as exc:
                log.warning("%s; ignored", exc)
        return None
