"""An in-memory stand-in for the engine's on-disk :class:`~omnimap.maps.cache.ArrayCache`.

The server gives its engine this cache: the overhead part of a cell's embedding costs
~15x more than the location/time part, so keeping it means that moving the hour or
month slider recomputes only the cheap part of every tile. It lives in memory and is
bounded, because browsing touches many small tile grids that would grow a disk cache
without end, and a killed server must leave nothing to read back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

from omnimap.serve.lru import LRUCache

# Only float16 entries are kept: that is how the engine stores the overhead part,
# while its fused (float32) embeddings it already keeps in its own memory.
KEPT_DTYPE = np.dtype(np.float16)
# The largest entry is this fraction of the budget: with 1 GiB, 128 MiB, ~170k cells
# at 384 dimensions (a tile has ~17k, the 1-degree world grid 65k).
ENTRY_FRACTION = 8


class MemoryEntry:
    def __init__(self, array: np.ndarray):
        self.array = array
        self.shape = array.shape

    def read(self) -> np.ndarray:
        return self.array

    def verify(self) -> None:
        """Nothing to check: the entry never left this process's memory."""

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        return self.array[start:stop]


class _Writer:
    def __init__(self, shape: tuple[int, ...], dtype: np.dtype):
        self.array = np.empty(shape, dtype=dtype)
        self.rows_written = 0

    def write(self, rows: np.ndarray) -> None:
        stop = self.rows_written + len(rows)
        self.array[self.rows_written : stop] = rows
        self.rows_written = stop


class MemoryArrayCache:
    """The ``get``/``fits``/``writer`` interface the engine uses of ArrayCache, in an LRU."""

    def __init__(self, max_bytes: int, max_entries: int = 1024):
        self.max_entry_bytes = max_bytes // ENTRY_FRACTION
        self._entries: LRUCache[MemoryEntry] = LRUCache(
            max_entries, max_bytes, lambda e: e.array.nbytes
        )

    @property
    def nbytes(self) -> int:
        return self._entries.nbytes

    def fits(self, shape: tuple[int, ...], dtype, limit: int | None = None) -> bool:
        # A big download's grid is computed without caching, so one /map.tif never
        # flushes the tiles a person is browsing.
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        bound = self.max_entry_bytes if limit is None else min(limit, self.max_entry_bytes)
        return np.dtype(dtype) == KEPT_DTYPE and size <= bound

    def get(self, key: str) -> MemoryEntry | None:
        return self._entries.get(key)

    @contextlib.contextmanager
    def writer(self, key: str, shape: tuple[int, ...], dtype) -> Iterator[_Writer]:
        """The entry appears only if every row was written without an exception."""
        writer = _Writer(tuple(shape), np.dtype(dtype))
        yield writer
        if writer.rows_written != shape[0]:
            raise RuntimeError(f"cache entry got {writer.rows_written} of {shape[0]} rows")
        writer.array.flags.writeable = False  # shared by every later reader
        self._entries.put(key, MemoryEntry(writer.array))
