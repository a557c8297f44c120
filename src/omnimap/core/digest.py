"""Content digests (xxh3): of files, byte strings, arrays and texts.

Every cache key, stored-entry check and model/imagery key in omnimap comes from here.
128 bits is the default; 64-bit digests remain only where older configs recorded them
(imagery keys), so those models still load.
"""

from __future__ import annotations

import os
from functools import cache

import numpy as np
import xxhash

_BLOCK = 1 << 20


def hasher(bits: int = 128):
    """A streaming xxh3 hasher (``update`` then ``hexdigest``)."""
    return xxhash.xxh3_128() if bits == 128 else xxhash.xxh3_64()


def bytes_digest(data: bytes | memoryview, bits: int = 128) -> str:
    h = hasher(bits)
    h.update(data)
    return h.hexdigest()


def text_digest(text: str, bits: int = 128) -> str:
    return bytes_digest(text.encode("utf-8"), bits)


def array_digest(*arrays: np.ndarray) -> str:
    """Digest of the arrays' raw bytes, in order (dtype and shape are the caller's)."""
    h = hasher()
    for a in arrays:
        h.update(memoryview(np.ascontiguousarray(a)).cast("B"))
    return h.hexdigest()


@cache
def _file_digest(path: str, size: int, mtime_ns: int, bits: int) -> str:
    h = hasher(bits)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def file_digest(path: str | os.PathLike, bits: int = 128) -> str:
    """Digest of a file's bytes, memoised per (path, size, mtime): a big raster is
    hashed once per process, a rewritten file again."""
    st = os.stat(path)
    return _file_digest(os.fspath(path), st.st_size, st.st_mtime_ns, bits)


def item_keys(digests: list[str]) -> np.ndarray:
    """(N, 2) uint64 from 128-bit hex digests: compact keys for embedding stores."""
    out = np.empty((len(digests), 2), dtype=np.uint64)
    for i, d in enumerate(digests):
        value = int(d, 16)
        out[i] = (value >> 64, value & 0xFFFFFFFFFFFFFFFF)
    return out


def text_keys(texts: list[str]) -> np.ndarray:
    """(N, 2) uint64: the 128-bit digest of each UTF-8 text."""
    out = np.empty((len(texts), 2), dtype=np.uint64)
    for i, t in enumerate(texts):
        d = xxhash.xxh3_128_intdigest(t.encode("utf-8"))
        out[i] = (d >> 64, d & 0xFFFFFFFFFFFFFFFF)
    return out
