"""Coefficient sets as they travel in the `coefficients` shadow: encoded, checksummed, validated.

Encoding `f16-zlib-b64` (or `f32-zlib-b64` when a value does not fit float16): the arrays, in sorted
key order, as little-endian float16 (float32) bytes one after another, zlib-compressed, base64 text.
`shapes` maps each key to its shape, so the receiver can split the blob. `checksum` is the SHA-256 (hex)
of the uncompressed blob: the receiver checks exactly the bytes it is about to install.

    {"version": 7, "encoding": "f16-zlib-b64", "checksum": "9f2c...", "shapes": {"w": [2, 256]},
     "data": "eJz..."}

When that does not fit the shadow budget the data stays on the device and the document carries a pointer
instead of `data`: `{"s3_key": "coefficients/<thing>/<version>-<checksum16>.npz"}` (uploading it is the
cloud side's concern).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

ENCODINGS: dict[str, np.dtype[Any]] = {"f16-zlib-b64": np.dtype("<f2"), "f32-zlib-b64": np.dtype("<f4")}
MAX_VALUES = 1 << 20  # no coefficient set is larger; refuse anything that claims more
MAX_DATA_CHARS = 1 << 20
_KEY = re.compile(r"^[A-Za-z0-9_./-]{1,64}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_F16_MAX = float(np.finfo(np.float16).max)


@dataclass(frozen=True, slots=True)
class EncodedSet:
    """One encoded coefficient set; `document()` is its shadow form (inline)."""

    version: int
    encoding: str
    checksum: str
    shapes: dict[str, list[int]]
    data: str

    def document(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "encoding": self.encoding,
            "checksum": self.checksum,
            "shapes": self.shapes,
            "data": self.data,
        }

    def pointer(self, thing_name: str) -> dict[str, Any]:
        """The document without data, pointing where the cloud will find the set."""
        key = f"coefficients/{thing_name}/{self.version}-{self.checksum[:16]}.npz"
        return {k: v for k, v in self.document().items() if k != "data"} | {"s3_key": key}


def encode(coefficients: dict[str, np.ndarray], version: int) -> EncodedSet:
    """Encode float arrays (any shape, any float dtype) as float16 when every value fits, else float32."""
    keys = sorted(coefficients)
    arrays = [np.asarray(coefficients[k], dtype=np.float64) for k in keys]
    fits_f16 = all(a.size == 0 or float(np.max(np.abs(a))) <= _F16_MAX for a in arrays)
    encoding = "f16-zlib-b64" if fits_f16 else "f32-zlib-b64"
    dtype = ENCODINGS[encoding]
    blob = b"".join(a.astype(dtype).tobytes() for a in arrays)
    return EncodedSet(
        version=int(version),
        encoding=encoding,
        checksum=hashlib.sha256(blob).hexdigest(),
        shapes={k: [int(n) for n in a.shape] for k, a in zip(keys, arrays, strict=True)},
        data=base64.b64encode(zlib.compress(blob, 9)).decode("ascii"),
    )


def decode(doc: Any, expected_shapes: dict[str, tuple[int, ...]] | None = None) -> dict[str, np.ndarray]:
    """Validate a shadow coefficient document and return float32 arrays keyed as in `shapes`.

    Checks, each failing with ValueError naming the field: the encoding, the shapes (and, when
    `expected_shapes` is given, that keys and shapes match the running engine), the size, the base64
    and zlib framing, the checksum and that every value is finite.
    """
    if not isinstance(doc, dict):
        raise ValueError("coefficients: expected an object with version, encoding, checksum, shapes, data")
    if "data" not in doc:
        if "s3_key" in doc:
            raise ValueError(
                "coefficients.s3_key: fetching a set by pointer is not supported; send it inline"
            )
        raise ValueError(
            "coefficients.data: missing (required keys: version, encoding, checksum, shapes, data)"
        )
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version < 2**53:
        raise ValueError(f"coefficients.version: {version!r} is not allowed (allowed: an integer >= 0)")
    encoding = doc.get("encoding")
    if encoding not in ENCODINGS:
        raise ValueError(
            f"coefficients.encoding: {encoding!r} is not allowed (allowed values: {', '.join(ENCODINGS)})"
        )
    checksum = doc.get("checksum")
    if not isinstance(checksum, str) or not _SHA256.match(checksum):
        raise ValueError("coefficients.checksum: expected 64 lowercase hex digits (SHA-256)")
    shapes = _shapes(doc.get("shapes"))
    if expected_shapes is not None:
        if set(shapes) != set(expected_shapes):
            raise ValueError(
                f"coefficients.shapes: keys {sorted(shapes)} do not match "
                f"the engine's {sorted(expected_shapes)}"
            )
        for key, shape in shapes.items():
            if tuple(shape) != tuple(expected_shapes[key]):
                raise ValueError(
                    f"coefficients.shapes.{key}: {list(shape)} does not match the engine's "
                    f"{list(expected_shapes[key])}"
                )
    data = doc.get("data")
    if not isinstance(data, str) or len(data) > MAX_DATA_CHARS:
        raise ValueError(f"coefficients.data: expected base64 text of at most {MAX_DATA_CHARS} characters")
    dtype = ENCODINGS[encoding]
    total = sum(math.prod(s) for s in shapes.values())
    try:
        packed = base64.b64decode(data.encode("ascii"), validate=True)
        inflater = zlib.decompressobj()
        blob = inflater.decompress(packed, total * dtype.itemsize + 1)
    except (binascii.Error, UnicodeEncodeError, zlib.error, ValueError) as exc:
        raise ValueError(f"coefficients.data: not valid base64 zlib data ({exc})") from exc
    if len(blob) != total * dtype.itemsize or not inflater.eof:
        raise ValueError(f"coefficients.data: holds a different number of values than shapes ({total})")
    if hashlib.sha256(blob).hexdigest() != checksum:
        raise ValueError("coefficients.checksum: does not match the data")
    values = np.frombuffer(blob, dtype=dtype).astype(np.float32)
    if not np.all(np.isfinite(values)):
        raise ValueError("coefficients.data: holds values that are not finite")
    out: dict[str, np.ndarray] = {}
    offset = 0
    for key in sorted(shapes):
        n = math.prod(shapes[key])
        out[key] = values[offset : offset + n].reshape(shapes[key])
        offset += n
    return out


def _shapes(raw: Any) -> dict[str, list[int]]:
    if not isinstance(raw, dict) or not raw:
        raise ValueError("coefficients.shapes: expected an object mapping each key to its shape")
    shapes: dict[str, list[int]] = {}
    total = 0
    for key, shape in raw.items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise ValueError(f"coefficients.shapes: key {key!r} is not allowed (1-64 of A-Z a-z 0-9 _ . / -)")
        if (
            not isinstance(shape, list)
            or len(shape) > 4
            or not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= MAX_VALUES for n in shape)
        ):
            raise ValueError(
                f"coefficients.shapes.{key}: expected a list of at most 4 sizes in [0, {MAX_VALUES}]"
            )
        total += math.prod(shape)
        if total > MAX_VALUES:
            raise ValueError(f"coefficients.shapes: more than {MAX_VALUES} values in all")
        shapes[key] = list(shape)
    return shapes
