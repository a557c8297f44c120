"""The one verified embedding store: teacher vectors by item key, so nothing is embedded
twice by the same teacher.

Keys are 128-bit content digests (of a text, of a photo file's bytes, of a waveform).
Vectors live in segments, entries of an :class:`~omnimap.core.store.ArrayStore`
(verified, atomic, bounded when in the cache): each call that embeds new items adds
one small segment, so a new prompt never rewrites the 100k training descriptions;
segments are read once per process, and the small ones are merged into one when they
pile up (also while a server runs). Teacher
embeddings of a training set live beside the data (an unbounded store there); text
queries and descriptions live in the cache.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from omnimap.core.digest import array_digest, bytes_digest, item_keys, text_keys
from omnimap.core.store import ArrayStore, MemoryStore
from omnimap.teachers.base import Teacher

MAX_SEGMENTS = 32  # merged into one beyond this many


def space_slug(space: str) -> str:
    """A directory-safe name for an embedding space (teacher modality key)."""
    return (
        re.sub(r"[^A-Za-z0-9_.-]+", "_", space)[:80].strip("._")
        + "-"
        + bytes_digest(space.encode(), 64)[:8]
    )


class EmbeddingStore:
    """Vectors of one embedding space (a teacher's modality) by (N, 2) uint64 keys."""

    def __init__(self, space: str, store: ArrayStore | MemoryStore | None = None):
        self.space = space
        self.store = store if store is not None else ArrayStore(f"embeddings/{space_slug(space)}")
        self._rows: dict[tuple[int, int], int] | None = None
        self._blocks: list[np.ndarray] = []
        self._ends: list[int] = []  # one past each block's last row
        self._segments: dict[str, int] = {}  # stored segment -> its rows

    def _segment_keys(self) -> list[str]:
        return sorted(k for k in self.store.keys() if k.startswith(self.space + "|seg|"))

    def _load(self) -> dict[tuple[int, int], int]:
        """Read every valid segment once (damaged ones are removed by the store)."""
        if self._rows is not None:
            return self._rows
        self._rows, self._blocks, self._ends, self._segments = {}, [], [], {}
        for key in self._segment_keys():
            arrays = self.store.read(key)
            if arrays is None or "keys" not in arrays or "vectors" not in arrays:
                continue
            self._segments[key] = len(arrays["keys"])
            self._add(arrays["keys"], arrays["vectors"])
        self._compact_if_many()
        return self._rows

    def _add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        # Rows are numbered across the blocks, which are never concatenated: a new
        # prompt must not copy the 100k training descriptions' vectors again.
        start = self._ends[-1] if self._ends else 0
        self._blocks.append(np.asarray(vectors, dtype=np.float32))
        self._ends.append(start + len(vectors))
        for j, (a, b) in enumerate(np.asarray(keys)):
            self._rows.setdefault((int(a), int(b)), start + j)

    def _dim(self) -> int:
        return self._blocks[0].shape[1] if self._blocks else 0

    def _gather(self, rows: np.ndarray, out: np.ndarray) -> None:
        """``out[i] = vector of row rows[i]``, block by block."""
        block = np.searchsorted(self._ends, rows, side="right")
        for b in np.unique(block):
            pick = block == b
            out[pick] = self._blocks[b][rows[pick] - (self._ends[b - 1] if b else 0)]

    def _write_segment(self, keys: np.ndarray, vectors: np.ndarray) -> str:
        key = f"{self.space}|seg|{array_digest(keys, vectors)}"
        if self.store.put(key, {"keys": keys, "vectors": vectors}):
            self._segments[key] = len(keys)
        return key

    def _compact_if_many(self) -> None:
        """Merge every segment but the largest into one when there are more than
        MAX_SEGMENTS (one per new prompt of a server would pile up): the largest (say
        100k training descriptions) is never rewritten for a few new prompts."""
        if len(self._segments) <= MAX_SEGMENTS:
            return
        largest = max(self._segments, key=self._segments.get)
        small = [k for k in self._segments if k != largest]
        parts = [self.store.read(k) for k in small]
        parts = [p for p in parts if p is not None and "keys" in p and "vectors" in p]
        if not parts:
            return
        keys = np.concatenate([p["keys"] for p in parts]).reshape(-1, 2)
        vectors = np.concatenate([p["vectors"] for p in parts])
        keys, first = np.unique(keys, axis=0, return_index=True)
        merged = self._write_segment(keys, vectors[first])
        if merged not in self._segments:  # not written (cache off): keep the old ones
            return
        for key in small:
            if key != merged:
                self.store.remove(key)
                self._segments.pop(key, None)

    def __len__(self) -> int:
        return len(self._load())

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(vectors (N, D) float32, found (N,) bool); missing rows are zero."""
        rows = self._load()
        wanted = [(int(a), int(b)) for a, b in np.asarray(keys)]
        found = np.array([k in rows for k in wanted], dtype=bool)
        out = np.zeros((len(wanted), self._dim()), np.float32)
        if found.any():
            hits = np.array([rows[k] for k, f in zip(wanted, found, strict=True) if f], np.int64)
            picked = np.empty((len(hits), out.shape[1]), np.float32)
            self._gather(hits, picked)
            out[found] = picked
        return out, found

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Store vectors for keys not stored yet (one new segment)."""
        rows = self._load()
        keys = np.asarray(keys, dtype=np.uint64).reshape(-1, 2)
        vectors = np.asarray(vectors, dtype=np.float32)
        new = [i for i, (a, b) in enumerate(keys) if (int(a), int(b)) not in rows]
        if not new:
            return
        keys, vectors = keys[new], vectors[new]
        if self._blocks and self._dim() != vectors.shape[1]:
            raise ValueError(f"vectors of dim {vectors.shape[1]} in a store of {self.space}")
        self._write_segment(keys, vectors)
        self._add(keys, vectors)
        self._compact_if_many()


def item_digests(modality: str, items: Sequence) -> list[str]:
    """128-bit content digests of items: texts by their UTF-8 bytes, images by mode,
    size and pixels, waveforms by rate and samples."""
    if modality in ("text", "species"):
        return [bytes_digest(str(t).encode("utf-8")) for t in items]
    out = []
    for item in items:
        if hasattr(item, "samples"):  # an audio Waveform
            samples = np.ascontiguousarray(item.samples, dtype=np.float32)
            out.append(array_digest(np.array([item.sample_rate], np.int64), samples))
        else:
            pixels = (
                np.asarray(item.convert("RGB")) if hasattr(item, "convert") else np.asarray(item)
            )
            out.append(array_digest(np.array(pixels.shape, np.int64), pixels))
    return out


class CachedTeacher(Teacher):
    """A teacher whose embeddings go through an :class:`EmbeddingStore` per modality."""

    def __init__(self, teacher: Teacher, store: ArrayStore | MemoryStore | None = None):
        super().__init__(teacher.name)
        self.teacher = teacher
        self.kind, self.modalities, self.licence = teacher.kind, teacher.modalities, teacher.licence
        self._root_store = store
        self._stores: dict[str, EmbeddingStore] = {}

    @property
    def key(self) -> str:
        return self.teacher.key

    @property
    def dim(self) -> int:
        return self.teacher.dim

    def modality_key(self, modality: str) -> str:
        return self.teacher.modality_key(modality)

    def to_config(self) -> dict:
        return self.teacher.to_config()

    def store(self, modality: str) -> EmbeddingStore:
        if modality not in self._stores:
            self._stores[modality] = EmbeddingStore(self.modality_key(modality), self._root_store)
        return self._stores[modality]

    def _embed(self, modality: str, items: Sequence, progress: bool) -> np.ndarray:
        keys = (
            text_keys([str(t) for t in items])
            if modality in ("text", "species", "taxon")
            else item_keys(item_digests(modality, items))
        )
        store = self.store(modality)
        vectors, found = store.lookup(keys)
        if vectors.shape[1] != self.dim:
            vectors = np.zeros((len(items), self.dim), np.float32)
        missing: dict[tuple[int, int], int] = {}
        for i in np.flatnonzero(~found):
            missing.setdefault((int(keys[i, 0]), int(keys[i, 1])), int(i))
        if missing:
            first = list(missing.values())
            new = self.teacher.embed(modality, [items[i] for i in first], progress=progress)
            store.add(keys[first], new)
            slot = {k: j for j, k in enumerate(missing)}
            for i in np.flatnonzero(~found):
                vectors[i] = new[slot[(int(keys[i, 0]), int(keys[i, 1]))]]
        return vectors
