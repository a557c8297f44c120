"""Disk cache of downloaded tiles, keyed by URL.

An entry is ``MAGIC + xxh3_64(payload) + payload``, written to a temp file and
renamed, so a crash never leaves a half entry; a read whose digest does not match
deletes the entry and reports a miss. Past ``max_bytes`` the least recently used
entries (by mtime, refreshed on each hit) are evicted.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import xxhash

from omnimap.fileio import write_bytes_atomic

MAGIC = b"OMT1"
HEADER = len(MAGIC) + 8
EVICT_TO = 0.9  # evict down to this fraction of max_bytes, so not every put scans


class TileCache:
    def __init__(self, root: str | os.PathLike, max_bytes: int):
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._size: int | None = None  # bytes on disk, counted on first put

    def _path(self, url: str) -> Path:
        digest = xxhash.xxh3_128_hexdigest(url.encode("utf-8"))
        return self.root / digest[:2] / f"{digest}.tile"

    def get(self, url: str) -> bytes | None:
        path = self._path(url)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        payload = blob[HEADER:]
        if blob[: len(MAGIC)] != MAGIC or blob[len(MAGIC) : HEADER] != xxhash.xxh3_64_digest(
            payload
        ):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: evicted last
        return payload

    def put(self, url: str, payload: bytes) -> None:
        blob = MAGIC + xxhash.xxh3_64_digest(payload) + payload
        if len(blob) > self.max_bytes:
            return
        write_bytes_atomic(self._path(url), blob)
        with self._lock:
            if self._size is None:
                self._size = sum(size for _, size, _ in self._entries())
            else:
                self._size += len(blob)
            if self._size > self.max_bytes:
                self._evict()

    def _entries(self) -> list[tuple[Path, int, float]]:
        out = []
        for path in self.root.glob("*/*.tile"):
            with contextlib.suppress(FileNotFoundError):  # another process evicted it
                st = path.stat()
                out.append((path, st.st_size, st.st_mtime))
        return out

    def _evict(self) -> None:
        entries = sorted(self._entries(), key=lambda e: e[2])
        total = sum(size for _, size, _ in entries)
        target = self.max_bytes * EVICT_TO
        for path, size, _ in entries:
            if total <= target:
                break
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            total -= size
        self._size = total
