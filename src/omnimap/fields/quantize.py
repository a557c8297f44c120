"""Storage encodings of overhead embeddings: float32, float16, or int8 with a scale.

int8 is symmetric per cell: scale = max|o| / 127 and o ~= q * scale, so every cell
keeps its own dynamic range (a per-chunk scale would let one bright cell flatten its
neighbours) at 4 bytes a cell, ~1% of a 384-d int8 vector.
"""

from __future__ import annotations

import numpy as np

from omnimap.core.errors import InputError

DTYPES = ("float32", "float16", "int8")
INT8_LEVELS = 127  # symmetric: -127..127, so -o encodes exactly as -q


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise InputError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return dtype


def scheme(dtype: str) -> dict:
    """The quantisation parameters recorded in a field's metadata."""
    if dtype == "int8":
        return {"scheme": "symmetric-per-cell", "levels": INT8_LEVELS, "scale": "scale",
                "decode": "o = q * scale[..., None]"}  # fmt: skip
    return {"scheme": "cast", "decode": "o = float32(stored)"}


def encode(o: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(stored values, per-cell scale or None) for float32 embeddings (..., D)."""
    if dtype != "int8":
        return np.ascontiguousarray(o, dtype=dtype), None
    peak = np.abs(o).max(axis=-1)
    scale = (peak / INT8_LEVELS).astype(np.float32)
    # An all-zero cell gets scale 0 and codes 0; dividing by 1 there avoids 0/0.
    q = np.rint(o / np.where(scale > 0, scale, 1.0)[..., None])
    return np.clip(q, -INT8_LEVELS, INT8_LEVELS).astype(np.int8), scale


def decode(stored: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
    """float32 embeddings from stored values (and the int8 scale)."""
    out = stored.astype(np.float32)
    if scale is not None:
        out *= scale[..., None]
    return out
