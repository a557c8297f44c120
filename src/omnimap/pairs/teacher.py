"""Teacher embeddings stored beside shards, keyed by teacher and sample id.

``<shard_dir>/teacher/<slug>/teacher.json`` records the teacher key, dimension and
dtype; each write adds a chunk ``<digest of ids>.npy``: a structured array of
(id, vector) rows, loaded with ``allow_pickle=False`` and memory-mapped. Writing the
same ids again replaces that chunk, so a trainer that caches embeddings shard by
shard can resume.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import xxhash

from omnimap.errors import DataError, InputError
from omnimap.fileio import atomic_path, write_json_atomic

ID_BYTES = 64  # ids are ASCII hex digests (32 characters); room to spare


def teacher_dir(shard_dir: str | os.PathLike, teacher_key: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", teacher_key)[:60].strip("._")
    return (
        Path(shard_dir) / "teacher" / f"{slug}-{xxhash.xxh3_64_hexdigest(teacher_key.encode())[:8]}"
    )


def _ids(ids) -> np.ndarray:
    text = np.asarray(ids, dtype=str)
    if text.ndim != 1 or (len(text) and np.char.str_len(text).max() > ID_BYTES):
        raise InputError(
            f"sample ids must be a 1-D list of strings of at most {ID_BYTES} characters"
        )
    try:
        return text.astype(f"S{ID_BYTES}")
    except UnicodeEncodeError:
        raise InputError("sample ids must be ASCII") from None


def write_teacher_embeddings(
    shard_dir: str | os.PathLike, teacher_key: str, ids, vectors: np.ndarray
) -> Path:
    """Store (N, D) float vectors for N sample ids under ``teacher_key``; returns the chunk."""
    ids = _ids(ids)
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or len(vectors) != len(ids) or vectors.dtype.kind != "f":
        raise InputError(
            f"vectors must be (len(ids), D) floats, got {vectors.shape} {vectors.dtype}"
        )
    if not np.all(np.isfinite(vectors)):
        raise InputError("teacher vectors contain NaN or infinity")
    root = teacher_dir(shard_dir, teacher_key)
    info = {"key": teacher_key, "dim": int(vectors.shape[1]), "dtype": vectors.dtype.str}
    info_path = root / "teacher.json"
    if info_path.exists():
        stored = json.loads(info_path.read_text(encoding="utf-8"))
        if stored != info:
            raise InputError(f"teacher {teacher_key!r} was stored as {stored}, now given {info}")
    else:
        write_json_atomic(info_path, info)
    rows = np.empty(
        len(ids), dtype=[("id", ids.dtype), ("vector", vectors.dtype, vectors.shape[1])]
    )
    rows["id"], rows["vector"] = ids, vectors
    path = root / f"{xxhash.xxh3_128_hexdigest(ids.tobytes())}.npy"
    with atomic_path(path) as tmp:
        np.save(tmp, rows, allow_pickle=False)
    return path


class TeacherEmbeddings:
    """All stored vectors of one teacher (none: length 0); ``lookup`` finds them by id."""

    def __init__(self, key: str, dim: int, dtype: np.dtype, chunks: list[np.ndarray]):
        self.key, self.dim, self.dtype = key, dim, dtype
        self._chunks = chunks
        ids = np.concatenate([c["id"] for c in chunks] or [np.empty(0, f"S{ID_BYTES}")])
        chunk = np.concatenate([np.full(len(c), i) for i, c in enumerate(chunks)] or [[]])
        row = np.concatenate([np.arange(len(c)) for c in chunks] or [[]])
        order = np.argsort(ids, kind="stable")
        self._ids = ids[order]
        self._chunk, self._row = chunk[order].astype(np.int64), row[order].astype(np.int64)

    def __len__(self) -> int:
        return len(self._ids)

    def lookup(self, ids) -> tuple[np.ndarray, np.ndarray]:
        """(vectors (N, D), found (N,) bool) for the ids; missing rows are zero."""
        want = _ids(ids)
        out = np.zeros((len(want), self.dim), dtype=self.dtype)
        if not len(self._ids):
            return out, np.zeros(len(want), dtype=bool)
        pos = np.minimum(np.searchsorted(self._ids, want), len(self._ids) - 1)
        found = self._ids[pos] == want
        hits = np.flatnonzero(found)
        for c in np.unique(self._chunk[pos[hits]]):
            mine = hits[self._chunk[pos[hits]] == c]
            out[mine] = self._chunks[c]["vector"][self._row[pos[mine]]]
        return out, found


def read_teacher_embeddings(shard_dir: str | os.PathLike, teacher_key: str) -> TeacherEmbeddings:
    """The stored embeddings of ``teacher_key`` (empty if none were written)."""
    root = teacher_dir(shard_dir, teacher_key)
    info_path = root / "teacher.json"
    if not info_path.exists():
        return TeacherEmbeddings(teacher_key, 0, np.dtype(np.float32), [])
    info = json.loads(info_path.read_text(encoding="utf-8"))
    chunks = []
    for path in sorted(root.glob("*.npy")):
        try:
            chunks.append(np.load(path, mmap_mode="r", allow_pickle=False))
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read teacher embeddings {path}: {exc}") from None
    return TeacherEmbeddings(info["key"], int(info["dim"]), np.dtype(info["dtype"]), chunks)
