"""On-disk cache of cell-embedding arrays, keyed by content and verified on read.

An entry is a raw little-endian array file plus a JSON manifest holding its shape,
dtype and xxh3 digest. Entries are written to temp files and renamed, manifest last,
so a crash leaves nothing that reads as valid. Reading an entry checks its digest
(``CorruptEntry`` on a mismatch); the caller removes it and recomputes.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xxhash

from omnimap.fileio import atomic_path, write_json_atomic
from omnimap.paths import cache_dir

# Entries larger than this are not cached (streamed instead): the float16 overhead
# part of the whole world at 0.1 deg would be 5 GB. Override with
# OMNIMAP_CACHE_MAX_ENTRY_BYTES.
DEFAULT_MAX_ENTRY_BYTES = 4 * 1024**3
_READ_BLOCK = 64 * 1024**2


def _max_entry_bytes() -> int:
    return int(os.environ.get("OMNIMAP_CACHE_MAX_ENTRY_BYTES", DEFAULT_MAX_ENTRY_BYTES))


class CorruptEntry(Exception):
    """A cache entry whose bytes do not match its recorded digest."""


@dataclass(frozen=True)
class CachedArray:
    path: Path
    shape: tuple[int, ...]
    dtype: np.dtype
    digest: str

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def read(self) -> np.ndarray:
        """The whole array, checked against its digest in the same pass."""
        data = np.fromfile(self.path, dtype=self.dtype)
        if (
            data.size != int(np.prod(self.shape))
            or xxhash.xxh3_128_hexdigest(memoryview(data)) != self.digest
        ):
            raise CorruptEntry(str(self.path))
        return data.reshape(self.shape)

    def verify(self) -> None:
        """Check the digest by streaming the file (for entries too big to read whole)."""
        h = xxhash.xxh3_128()
        with open(self.path, "rb") as fh:
            for block in iter(lambda: fh.read(_READ_BLOCK), b""):
                h.update(block)
        if h.hexdigest() != self.digest:
            raise CorruptEntry(str(self.path))

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) read with plain file reads (no memory map, so a huge
        entry never counts against the process's resident memory). Unchecked: call
        ``verify`` first."""
        count = (stop - start) * self.row_bytes // self.dtype.itemsize
        with open(self.path, "rb") as fh:
            fh.seek(start * self.row_bytes)
            flat = np.fromfile(fh, dtype=self.dtype, count=count)
        return flat.reshape((stop - start, *self.shape[1:]))


class ArrayWriter:
    """Appends row blocks to a temp file while hashing them."""

    def __init__(self, fh, shape: tuple[int, ...], dtype: np.dtype):
        self._fh, self.shape, self.dtype = fh, shape, dtype
        self._hash = xxhash.xxh3_128()
        self.rows_written = 0

    def write(self, rows: np.ndarray) -> None:
        data = np.ascontiguousarray(rows, dtype=self.dtype)
        if data.shape[1:] != self.shape[1:]:
            raise ValueError(f"rows of shape {data.shape[1:]} do not fit cache entry {self.shape}")
        buf = data.tobytes()
        self._hash.update(buf)
        self._fh.write(buf)
        self.rows_written += len(data)

    @property
    def digest(self) -> str:
        return self._hash.hexdigest()


class ArrayCache:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else cache_dir() / "cells"

    def _paths(self, key: str) -> tuple[Path, Path]:
        name = xxhash.xxh3_128_hexdigest(key.encode("utf-8"))
        return self.root / f"{name}.bin", self.root / f"{name}.json"

    def fits(self, shape: tuple[int, ...], dtype, limit: int | None = None) -> bool:
        limit = _max_entry_bytes() if limit is None else min(limit, _max_entry_bytes())
        return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize <= limit

    def get(self, key: str) -> CachedArray | None:
        """The entry, or None when missing or malformed (malformed ones are removed).
        Its digest is checked when it is read (``read`` / ``verify``), not here, so a
        hit costs one pass over the data."""
        data_path, meta_path = self._paths(key)
        if not meta_path.is_file() or not data_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            shape, dtype = tuple(int(v) for v in meta["shape"]), np.dtype(meta["dtype"])
            ok = (
                meta["key"] == key
                and data_path.stat().st_size == int(np.prod(shape)) * dtype.itemsize
            )
            digest = str(meta["digest"])
        except (OSError, ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            self.remove(key)
            return None
        return CachedArray(data_path, shape, dtype, digest)

    @contextlib.contextmanager
    def writer(self, key: str, shape: tuple[int, ...], dtype) -> Iterator[ArrayWriter]:
        """Write an entry row block by row block; it becomes visible only if every
        row was written and the block exits without an exception."""
        data_path, meta_path = self._paths(key)
        dtype = np.dtype(dtype)
        with atomic_path(data_path) as tmp, open(tmp, "wb") as fh:
            w = ArrayWriter(fh, tuple(shape), dtype)
            yield w
            if w.rows_written != shape[0]:
                raise RuntimeError(f"cache entry got {w.rows_written} of {shape[0]} rows")
        write_json_atomic(
            meta_path, {"key": key, "shape": list(shape), "dtype": dtype.str, "digest": w.digest}
        )

    def remove(self, key: str) -> None:
        for p in self._paths(key):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
