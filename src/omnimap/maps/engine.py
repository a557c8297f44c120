"""The query engine: the one path from a query to scores over a grid.

    query --teacher--> q
    grid --pieces--> o (from a field, the cell store, or the student) --+ m(lon, lat, t)--> s
    scores = cosine_scores(s, q)

A cell's embedding is normalize(o + m): o from the overhead patch (time-free, costly:
read from an embedding field when the engine has one, else cached per model and grid
in the store), m from location and time (a small MLP, cheap). Maps at a new time
reuse o; a second query at the same time reuses the fused embeddings (float16, kept
in memory and, when small, in the store), so it costs one matrix-vector product.
Direct maps, field maps, searches and server tiles all run through here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import nullcontext

import numpy as np
import torch

from omnimap.core.errors import DataError, InputError
from omnimap.core.lru import LRUCache
from omnimap.core.progress import progress
from omnimap.core.store import ArrayStore, CorruptEntry, MemoryStore
from omnimap.fields.store import Field
from omnimap.fields.window import window_for
from omnimap.geo.grid import LatLonGrid
from omnimap.geo.timefeat import When, local_times
from omnimap.maps.scoring import cosine_scores
from omnimap.models.checkpoint import LoadedModel, load_checkpoint
from omnimap.models.embedder import MODES, Embedder, mode_for
from omnimap.teachers.registry import teacher_from_config

log = logging.getLogger(__name__)

CHUNK_CELLS = 262_144  # cells per streamed piece (~400 MB of float32 at D=384)
MEMORY_BUDGET_BYTES = 2 * 1024**3  # fused embeddings kept in RAM up to this size
# Fused (per-time) embeddings go to disk only up to this size: a new time on a cached
# world at 0.25 deg is rebuilt from the overhead part in ~1-1.3 s (benchmarks/
# bench_maps.py), not worth 800 MB of disk per time.
FUSED_DISK_LIMIT_BYTES = 512 * 1024**2
MAX_QUERY_CHARS = 1000

Piece = tuple[slice, slice, LatLonGrid, np.ndarray | None]


def clean_prompt(prompt: str | None) -> str:
    """The prompt, trimmed; InputError if it is empty, too long or has control codes."""
    prompt = (prompt or "").strip()
    if not prompt:
        raise InputError("prompt is empty; describe what to map, e.g. 'snow-covered mountains'")
    if len(prompt) > MAX_QUERY_CHARS:
        raise InputError(f"prompt is {len(prompt)} characters long; the limit is {MAX_QUERY_CHARS}")
    if any(ord(c) < 32 and c not in "\t\n" or ord(c) == 127 for c in prompt):
        raise InputError("prompt contains control characters")
    return prompt


class MapEngine:
    """Scores queries over grids with a model (and optionally its embedding field);
    one instance serves many queries."""

    def __init__(
        self, model: str | LoadedModel | None = "atlas", *, field: Field | str | None = None,
        store: ArrayStore | MemoryStore | None = None, use_cache: bool = True,
        fused_cache_bytes: int = MEMORY_BUDGET_BYTES,
    ):  # fmt: skip
        self.field = field if field is None or isinstance(field, Field) else Field.open(field)
        if model is None:
            if self.field is None:
                raise InputError("a map engine needs a model or a field")
            model = self.field.spec.model["source"]
        self.model = model if isinstance(model, LoadedModel) else load_checkpoint(model)
        if self.field is not None and (
            self.model.config["weights_digest"] != self.field.spec.model["weights_digest"]
        ):
            raise DataError(
                f"field {self.field.path} was built with model {self.field.spec.model['key']}, "
                f"not {self.model.key}; pass the model it was built with"
            )
        self.embedder = Embedder(self.model)
        self.teacher = teacher_from_config(self.model.config["teacher"])
        self.store = store if store is not None else ArrayStore("cells")
        self.use_cache = use_cache
        self._fused: LRUCache[np.ndarray] = LRUCache(64, fused_cache_bytes, lambda a: a.nbytes)

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def dim(self) -> int:
        return self.embedder.dim

    # -- queries ---------------------------------------------------------------

    def embed_queries(self, queries: Sequence, modality: str = "text") -> np.ndarray:
        """(Q, D) teacher embeddings of queries of one modality (text: prompts)."""
        items = [clean_prompt(q) for q in queries] if modality == "text" else list(queries)
        vectors = self.teacher.embed(modality, items)
        if vectors.shape[1] != self.dim:
            raise DataError(
                f"teacher gives {vectors.shape[1]}-d vectors but the model predicts {self.dim}-d"
            )
        return vectors

    def embed_prompts(self, prompts: Sequence[str]) -> np.ndarray:
        return self.embed_queries(prompts, "text")

    # -- cells -----------------------------------------------------------------

    def _keys(self, grid: LatLonGrid, when: When | None, mode: str) -> tuple[str, str]:
        source = f"field:{self.field.content_digest()}" if self._from_field(grid) else "cells"
        base = f"{self.model.key}|{self.embedder.imagery.key}|{grid.key}|{source}"
        time_key = when.key if (when is not None and MODES[mode][2]) else "none"
        return f"overhead|{base}", f"fused16|{base}|{mode}|{time_key}"

    def _from_field(self, grid: LatLonGrid) -> bool:
        return self.field is not None and window_for(self.field, grid) is not None

    def pieces(self, grid: LatLonGrid, overhead: bool = True) -> Iterator[Piece]:
        """(grid rows, grid cols, those cells as a grid, o (cells, D) or None) covering
        the grid: from the field when the grid is on its lattice, else from the cell
        store (checked before anything is yielded) or computed and stored."""
        if not overhead:
            for r0, r1 in grid.row_chunks(CHUNK_CELLS):
                yield slice(r0, r1), slice(0, grid.ncols), _rows(grid, r0, r1), None
            return
        if self.field is not None:
            window = window_for(self.field, grid)
            if window is not None:
                yield from window.pieces(self.field)
                return
        yield from self._stored_pieces(grid)

    def _stored_pieces(self, grid: LatLonGrid) -> Iterator[Piece]:
        key, _ = self._keys(grid, None, "no_time")
        shape = (grid.size, self.dim)
        chunks = list(grid.row_chunks(CHUNK_CELLS))
        cached = self.store.get(key) if self.use_cache else None
        if cached is not None and cached.shape == shape:
            try:
                if grid.size * self.dim * 2 <= MEMORY_BUDGET_BYTES:
                    whole = cached.read()
                    parts = [whole[r0 * grid.ncols : r1 * grid.ncols] for r0, r1 in chunks]
                else:
                    cached.verify()
                    parts = None
                for i, (r0, r1) in enumerate(chunks):
                    o = (
                        parts[i]
                        if parts is not None
                        else cached.read_rows(r0 * grid.ncols, r1 * grid.ncols)
                    )
                    yield slice(r0, r1), slice(0, grid.ncols), _rows(grid, r0, r1), o
                return
            except CorruptEntry:
                log.warning("cache entry for %s failed its check; recomputing", grid.key)
                self.store.remove(key)
        # Cold or cached, a map gets the same float16-rounded o.
        stored = self.use_cache and self.store.fits(shape, np.float16)
        writing = self.store.writer(key, shape, np.float16) if stored else nullcontext(_Discard())
        with writing as writer:
            for r0, r1 in chunks:
                piece = _rows(grid, r0, r1)
                o = self.embedder.overhead(*piece.centers()).astype(np.float16)
                writer.write(o)
                yield slice(r0, r1), slice(0, grid.ncols), piece, o

    def fused_pieces(
        self, grid: LatLonGrid, when: When | None, mode: str | None = None, desc: str = "map",
        into: np.ndarray | None = None,
    ) -> Iterator[tuple[slice, slice, LatLonGrid, np.ndarray]]:  # fmt: skip
        """(grid rows, grid cols, piece grid, unit embeddings (cells, D) float16). Every
        path (maps in memory or streamed, searches, indexes) scores these same
        float16-rounded vectors, so they all give identical numbers. ``desc`` names the
        pass on the progress bar a big grid gets (on a terminal). With ``into`` (a
        (nrows, ncols, D) float16 array) each piece is written there and yielded as a view.
        """
        mode = mode or mode_for(when)
        big = grid.size > 2 * CHUNK_CELLS
        work = None  # one float32 buffer for every piece: fresh ones cost page faults
        with progress(grid.size, desc, unit_scale=True, show=big) as bar:
            for rows, cols, piece, o in self.pieces(grid, overhead=MODES[mode][0]):
                lon, lat = piece.centers()
                local = local_times(when, lon) if when is not None else None
                if work is None or len(work) < piece.size:
                    work = np.empty((piece.size, self.dim), dtype=np.float32)
                fused = self.embedder.fused(lon, lat, local, mode, overhead=o,
                                            out=work[: piece.size])  # fmt: skip
                if into is not None:
                    half = into[rows, cols]  # a view; torch rounds to float16 on all cores
                    torch.from_numpy(half).copy_(torch.from_numpy(fused).view(half.shape))
                    half = half.reshape(piece.size, self.dim)
                else:
                    half = np.empty((piece.size, self.dim), dtype=np.float16)
                    torch.from_numpy(half).copy_(torch.from_numpy(fused))
                yield rows, cols, piece, half
                bar.update(piece.size)

    def fits_memory(self, grid: LatLonGrid) -> bool:
        return grid.size * self.dim * 2 <= MEMORY_BUDGET_BYTES

    def cell_embeddings(
        self, grid: LatLonGrid, when: When | None = None, mode: str | None = None
    ) -> np.ndarray:
        """(cells, D) float16 fused embeddings of a grid that fits in memory (cached)."""
        mode = mode or mode_for(when)
        _, key = self._keys(grid, when, mode)
        found = self._fused.get(key)
        if found is not None:
            return found
        if not self.fits_memory(grid):
            raise InputError(
                f"{grid.size:,} cells do not fit the in-memory budget; use score(), which streams"
            )
        shape = (grid.size, self.dim)
        cached = self.store.read(key) if self.use_cache else None
        emb = cached["data"] if cached is not None and cached["data"].shape == shape else None
        if emb is None:
            emb = np.empty(shape, dtype=np.float16)
            cube = emb.reshape(grid.nrows, grid.ncols, self.dim)
            for _ in self.fused_pieces(grid, when, mode, into=cube):
                pass
            # Kept in this engine's memory anyway; on disk too when small enough.
            persist = self.use_cache and self.store.persistent
            if persist and self.store.fits(shape, np.float16, FUSED_DISK_LIMIT_BYTES):
                self.store.put(key, {"data": emb})
        self._fused.put(key, emb)
        return emb

    # -- scores ----------------------------------------------------------------

    def score_vectors(
        self, q: np.ndarray, grid: LatLonGrid, when: When | None = None, mode: str | None = None
    ) -> np.ndarray:
        """(Q, nrows, ncols) float32 cosine maps of query vectors."""
        mode = mode or mode_for(when)
        if self.fits_memory(grid):
            flat = cosine_scores(self.cell_embeddings(grid, when, mode), q)
            return flat.reshape(len(q), grid.nrows, grid.ncols)
        out = np.empty((len(q), grid.nrows, grid.ncols), dtype=np.float32)
        for rows, cols, piece, fused in self.fused_pieces(grid, when, mode):
            out[:, rows, cols] = cosine_scores(fused, q).reshape(len(q), *piece.shape)
        return out

    def uncertainty(self, grid: LatLonGrid, when: When | None = None, mode: str | None = None) -> np.ndarray:
        """(nrows, ncols) float32 predicted variance of each cell's embedding, for a
        probabilistic model (PSM); InputError for any other model."""
        mode = mode or mode_for(when)
        out = np.empty(grid.shape, dtype=np.float32)
        for rows, cols, piece, o in self.pieces(grid, overhead=MODES[mode][0]):
            lon, lat = piece.centers()
            local = local_times(when, lon) if when is not None else None
            out[rows, cols] = self.embedder.variance(lon, lat, local, mode, overhead=o).reshape(piece.shape)
        return out

    def score(
        self, queries: Sequence | str, grid: LatLonGrid, when: When | None = None,
        mode: str | None = None, modality: str = "text",
    ) -> np.ndarray:  # fmt: skip
        """Cosine maps (Q, nrows, ncols) float32, or (nrows, ncols) for one text prompt."""
        single = isinstance(queries, str)
        q = self.embed_queries([queries] if single else list(queries), modality)
        out = self.score_vectors(q, grid, when, mode)
        return out[0] if single else out


def _rows(grid: LatLonGrid, r0: int, r1: int) -> LatLonGrid:
    return LatLonGrid(grid.resolution, grid.col0, grid.row0 + r0, grid.ncols, r1 - r0)


class _Discard:
    """A writer that keeps nothing (the grid is too big to store)."""

    def write(self, rows: np.ndarray) -> None:
        pass
