"""A disk cache of text embeddings, so a sentence is embedded once per teacher.

One .npz per teacher (no pickles): 128-bit text digests, vectors and a digest of
both. A file that fails its check is ignored and rewritten.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
import xxhash

from omnimap.fileio import atomic_path
from omnimap.paths import cache_dir


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


class CachedTextEncoder:
    """Wraps an encoder (``.key``, ``.dim``, ``.embed``) with a persistent cache."""

    def __init__(self, encoder, path: str | Path | None = None):
        self.encoder = encoder
        if path is None:
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", encoder.key)
            path = cache_dir() / "text-embeddings" / f"{safe}.npz"
        self.path = Path(path)

    @property
    def key(self) -> str:
        return self.encoder.key

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def _load(self) -> tuple[np.ndarray, np.ndarray]:
        empty = (np.empty((0, 2), np.uint64), np.empty((0, 0), np.float32))
        if not self.path.is_file():
            return empty
        try:
            with np.load(self.path, allow_pickle=False) as data:
                keys, vectors, check = data["keys"], data["vectors"], int(data["checksum"])
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
            return empty
        if keys.ndim != 2 or len(keys) != len(vectors) or _checksum(keys, vectors) != check:
            return empty
        return keys, vectors

    def _save(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        with atomic_path(self.path, suffix=".tmp.npz") as tmp:
            np.savez(tmp, keys=keys, vectors=vectors, checksum=np.uint64(_checksum(keys, vectors)))

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        digests = text_digests(texts)
        keys, vectors = self._load()
        lookup = {(int(a), int(b)): i for i, (a, b) in enumerate(keys)}
        found = np.array([lookup.get((int(a), int(b)), -1) for a, b in digests], dtype=np.int64)
        missing = np.flatnonzero(found < 0)
        if len(missing) == 0:
            return vectors[found].astype(np.float32, copy=False)
        # Embed each missing text once, even if it appears several times.
        uniq: dict[tuple[int, int], int] = {}
        for i in missing:
            uniq.setdefault((int(digests[i, 0]), int(digests[i, 1])), int(i))
        new_vectors = self.encoder.embed([texts[i] for i in uniq.values()], progress=progress)
        new_keys = np.array(list(uniq), dtype=np.uint64).reshape(-1, 2)
        if vectors.size == 0:
            vectors = np.empty((0, new_vectors.shape[1]), np.float32)
        keys = np.concatenate([keys, new_keys])
        vectors = np.concatenate([vectors, new_vectors])
        self._save(keys, vectors)
        lookup.update({k: len(keys) - len(new_keys) + j for j, k in enumerate(uniq)})
        rows = [lookup[(int(a), int(b))] for a, b in digests]
        return vectors[rows]
