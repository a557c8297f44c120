"""A disk cache of text embeddings, so a sentence is embedded once per teacher.

One directory per teacher holding immutable segment files (.npz, no pickles): 128-bit
text digests, vectors and a checksum of both. Each call that embeds new texts adds
one small segment, so a new prompt never rewrites the 100k training descriptions;
segments are read once per process and merged when they pile up. A segment that
fails its check is deleted and its texts are embedded again when next asked for.
"""

from __future__ import annotations

import contextlib
import re
import zipfile
from pathlib import Path

import numpy as np
import xxhash

from omnimap.fileio import atomic_path
from omnimap.paths import cache_dir

MAX_SEGMENTS = 32  # merge into one beyond this many files


def text_digests(texts: list[str]) -> np.ndarray:
    """(N, 2) uint64: the xxh3-128 digest of each UTF-8 text."""
    out = np.empty((len(texts), 2), dtype=np.uint64)
    for i, t in enumerate(texts):
        d = xxhash.xxh3_128_intdigest(t.encode("utf-8"))
        out[i] = (d >> 64, d & 0xFFFFFFFFFFFFFFFF)
    return out


def _checksum(keys: np.ndarray, vectors: np.ndarray) -> int:
    h = xxhash.xxh3_64()
    h.update(np.ascontiguousarray(keys).tobytes())
    h.update(np.ascontiguousarray(vectors).tobytes())
    return h.intdigest()


def _read_segment(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            keys, vectors, check = data["keys"], data["vectors"], int(data["checksum"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None
    if (
        keys.ndim != 2
        or vectors.ndim != 2
        or len(keys) != len(vectors)
        or _checksum(keys, vectors) != check
    ):
        return None
    return keys, vectors


def _write_segment(directory: Path, keys: np.ndarray, vectors: np.ndarray) -> Path:
    check = _checksum(keys, vectors)
    path = directory / f"{check:016x}.npz"
    with atomic_path(path, suffix=".tmp.npz") as tmp:
        np.savez(tmp, keys=keys, vectors=vectors, checksum=np.uint64(check))
    return path


class CachedTextEncoder:
    """Wraps an encoder (``.key``, ``.dim``, ``.embed``) with a persistent cache."""

    def __init__(self, encoder, directory: str | Path | None = None):
        self.encoder = encoder
        if directory is None:
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", encoder.key)
            directory = cache_dir() / "text-embeddings" / safe
        self.directory = Path(directory)
        self._rows: dict[tuple[int, int], int] | None = None
        self._vectors: list[np.ndarray] = []  # blocks; row i of the cache is in one

    @property
    def key(self) -> str:
        return self.encoder.key

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def _load(self) -> dict[tuple[int, int], int]:
        """Read every valid segment once; delete the corrupt ones."""
        if self._rows is not None:
            return self._rows
        self._rows, self._vectors = {}, []
        segments = sorted(self.directory.glob("*.npz")) if self.directory.is_dir() else []
        for path in segments:
            seg = _read_segment(path)
            if seg is None:
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            self._add(*seg)
        if len(segments) > MAX_SEGMENTS:
            self._compact(segments)
        return self._rows

    def _add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        start = sum(len(v) for v in self._vectors)
        self._vectors.append(vectors.astype(np.float32, copy=False))
        for j, (a, b) in enumerate(keys):
            self._rows.setdefault((int(a), int(b)), start + j)

    def _all_vectors(self) -> np.ndarray:
        if len(self._vectors) > 1:
            self._vectors = [np.concatenate(self._vectors)]
        return self._vectors[0] if self._vectors else np.empty((0, self.dim), np.float32)

    def _compact(self, old: list[Path]) -> None:
        keys = np.array(list(self._rows), dtype=np.uint64).reshape(-1, 2)
        vectors = self._all_vectors()[list(self._rows.values())]
        merged = _write_segment(self.directory, keys, vectors)
        for path in old:
            if path != merged:
                with contextlib.suppress(OSError):
                    path.unlink()

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        digests = text_digests(texts)
        rows = self._load()
        wanted = [(int(a), int(b)) for a, b in digests]
        missing: dict[tuple[int, int], int] = {}
        for i, k in enumerate(wanted):
            if k not in rows:
                missing.setdefault(k, i)
        if missing:
            new = self.encoder.embed([texts[i] for i in missing.values()], progress=progress)
            new_keys = np.array(list(missing), dtype=np.uint64).reshape(-1, 2)
            self.directory.mkdir(parents=True, exist_ok=True)
            _write_segment(self.directory, new_keys, new)
            self._add(new_keys, new)
        return self._all_vectors()[[rows[k] for k in wanted]]
