"""The query engine: region -> grid -> cell embeddings (cached) -> scores.

A cell's embedding is normalize(o + m): o from the overhead patch (time-free, costly,
cached per model and grid), m from location and time (a small MLP, cheap). Maps at a
new time reuse o; a second prompt at the same time reuses the fused embeddings, kept
in memory and on disk, so it costs one matrix-vector product.

Modes (which inputs the student sees): "full" (imagery, location, time), "no_time"
(imagery, location: the time-free map), "imagery_only", "no_imagery" (location and
time), "location_only".
"""

from __future__ import annotations

import logging
import sys
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np
import torch

from omnimap.data.imagery import ImagerySource
from omnimap.encoders import query_encoder
from omnimap.errors import DataError, InputError
from omnimap.geo.grid import LatLonGrid
from omnimap.geo.timefeat import LocalTime, When, local_times, metadata_features
from omnimap.maps.cache import ArrayCache, CorruptEntry
from omnimap.models.checkpoint import LoadedModel, load_checkpoint

log = logging.getLogger(__name__)

MODES = {  # mode -> (uses imagery, uses location, uses time)
    "full": (True, True, True),
    "no_time": (True, True, False),
    "imagery_only": (True, False, False),
    "no_imagery": (False, True, True),
    "location_only": (False, True, False),
}
BATCH = 4096  # cells per forward pass: big enough for fast GEMMs, small enough for cache
DYNAMIC_BATCH = 16_384  # the location/time MLP is ~20x cheaper per cell
CHUNK_CELLS = 262_144  # cells per streamed chunk (~400 MB of float32 at D=384)
MEMORY_BUDGET_BYTES = 2 * 1024**3  # fused embeddings kept in RAM up to this size
# Fused (per-time) embeddings go to disk only up to this size: a new time on a cached
# world at 0.25 deg is rebuilt from the overhead part in ~1-1.3 s (benchmarks/
# bench_maps.py), not worth 1.6 GB of disk per time.
FUSED_DISK_LIMIT_BYTES = 512 * 1024**2


def clean_prompt(prompt: str | None) -> str:
    """The prompt, trimmed; InputError if it is empty or too long."""
    prompt = (prompt or "").strip()
    if not prompt:
        raise InputError("prompt is empty; describe what to map, e.g. 'snow-covered mountains'")
    if len(prompt) > 1000:
        raise InputError(f"prompt is {len(prompt)} characters long; the limit is 1000")
    return prompt


def mode_for(when: When | None) -> str:
    return "full" if when is not None else "no_time"


class Embedder:
    """Runs a student over cells: overhead, dynamic and fused embeddings."""

    def __init__(self, model: LoadedModel, imagery: ImagerySource | None = None):
        from omnimap.sources import source_from_config

        self.model = model
        # The imagery the model was trained on, checked against its recorded key.
        self.imagery = (
            imagery if imagery is not None else source_from_config(model.config["imagery"])
        )
        self.dim = int(model.config["dim"])

    @torch.inference_mode()
    def overhead(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        out = np.empty((len(lon), self.dim), dtype=np.float32)
        for s in range(0, len(lon), BATCH):
            patches = torch.from_numpy(self.imagery.patches(lon[s : s + BATCH], lat[s : s + BATCH]))
            out[s : s + BATCH] = self.model.student.encode_overhead(patches).numpy()
        return out

    @torch.inference_mode()
    def dynamic(self, meta: torch.Tensor) -> torch.Tensor:
        """(n, D) location/time embeddings of (n, 12) metadata values (one batch)."""
        return self.model.student.encode_dynamic(meta)

    @torch.inference_mode()
    def fused(
        self, lon, lat, local: LocalTime | None, mode: str, overhead: np.ndarray | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:  # fmt: skip
        """(N, D) unit vectors for cells, under a mode, written into ``out`` if given.

        ``overhead`` (float16 or float32) may be given, e.g. from a cache; it is never
        modified. The arithmetic runs in torch, in place, batch by batch: full-size
        temporaries cost more in page faults than the maths itself."""
        use_img, use_loc, use_time = MODES[mode]
        out = np.empty((len(lon), self.dim), dtype=np.float32) if out is None else out
        total = torch.from_numpy(out)
        if use_img:
            o = np.ascontiguousarray(self.overhead(lon, lat) if overhead is None else overhead)
            if o.flags.writeable:  # torch converts float16 -> float32 on all cores
                total.copy_(torch.from_numpy(o))
            else:  # torch cannot wrap read-only arrays (shared cache entries)
                np.copyto(out, o)
        else:
            total.zero_()
        if use_loc:
            meta = torch.from_numpy(metadata_features(lon, lat, local if use_time else None))
            for s in range(0, len(meta), DYNAMIC_BATCH):
                total[s : s + DYNAMIC_BATCH] += self.dynamic(meta[s : s + DYNAMIC_BATCH])
        total.div_(torch.linalg.vector_norm(total, dim=1, keepdim=True).clamp_min_(1e-12))
        return out


class MapEngine:
    """Scores prompts over grids with a model; one instance serves many queries."""

    def __init__(
        self,
        model: str | LoadedModel = "atlas",
        cache: ArrayCache | None = None,
        use_cache: bool = True,
    ):
        self.model = model if isinstance(model, LoadedModel) else load_checkpoint(model)
        self.embedder = Embedder(self.model)
        self.teacher = query_encoder(self.model.config["teacher"])
        self.cache = cache if cache is not None else ArrayCache()
        self.use_cache = use_cache
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()

    # -- prompts ---------------------------------------------------------------

    def embed_prompts(self, prompts: list[str]) -> np.ndarray:
        clean = [clean_prompt(p) for p in prompts]
        vectors = self.teacher.embed(clean)
        if vectors.shape[1] != self.embedder.dim:
            raise DataError(
                f"teacher gives {vectors.shape[1]}-d vectors but the model predicts {self.embedder.dim}-d"
            )
        return vectors

    # -- cell embeddings -------------------------------------------------------

    def _keys(self, grid: LatLonGrid, when: When | None, mode: str) -> tuple[str, str]:
        base = f"{self.model.key}|{self.embedder.imagery.key}|{grid.key}"
        time_key = when.key if (when is not None and MODES[mode][2]) else "none"
        return f"overhead|{base}", f"fused|{base}|{mode}|{time_key}"

    def _overhead_chunks(self, grid: LatLonGrid) -> Iterator[tuple[int, int, np.ndarray | None]]:
        """(row_start, row_stop, float16 overhead) per chunk, from the cache (checked
        before anything is yielded) or computed and cached when small enough. Cold or
        cached, a map gets the same float16-rounded numbers."""
        key, _ = self._keys(grid, None, "no_time")
        shape = (grid.size, self.embedder.dim)
        chunks = list(grid.row_chunks(CHUNK_CELLS))
        cached = self.cache.get(key) if self.use_cache else None
        if cached is not None and cached.shape == shape:
            try:
                if grid.size * self.embedder.dim * 2 <= MEMORY_BUDGET_BYTES:
                    whole = cached.read()
                    for r0, r1 in chunks:
                        yield r0, r1, whole[r0 * grid.ncols : r1 * grid.ncols]
                else:
                    cached.verify()
                    for r0, r1 in chunks:
                        yield r0, r1, cached.read_rows(r0 * grid.ncols, r1 * grid.ncols)
                return
            except CorruptEntry:
                log.warning("cache entry for %s failed its check; recomputing", grid.key)
                self.cache.remove(key)

        def computed():
            for r0, r1 in chunks:
                yield r0, r1, self.embedder.overhead(*grid.centers(r0, r1)).astype(np.float16)

        if not (self.use_cache and self.cache.fits(shape, np.float16)):
            yield from computed()
            return
        with self.cache.writer(key, shape, np.float16) as writer:
            for r0, r1, o in computed():
                writer.write(o)
                yield r0, r1, o

    def _fused_chunks(
        self, grid: LatLonGrid, when: When | None, mode: str, out: np.ndarray | None = None
    ) -> Iterator[tuple[int, int, np.ndarray]]:
        """(row_start, row_stop, fused embeddings) per chunk; written into the matching
        rows of ``out`` when given."""
        from tqdm.auto import tqdm

        use_img = MODES[mode][0]
        source = (
            self._overhead_chunks(grid)
            if use_img
            else ((a, b, None) for a, b in grid.row_chunks(CHUNK_CELLS))
        )
        n_chunks = len(list(grid.row_chunks(CHUNK_CELLS)))
        # A bar only for big maps, and only on a terminal (disable=None).
        bar = tqdm(
            total=grid.size,
            unit="cell",
            unit_scale=True,
            desc="map",
            leave=False,
            disable=None if n_chunks > 2 else True,
        )
        with bar:
            for r0, r1, o in source:
                lon, lat = grid.centers(r0, r1)
                local = local_times(when, lon) if when is not None else None
                rows = None if out is None else out[r0 * grid.ncols : r1 * grid.ncols]
                yield r0, r1, self.embedder.fused(lon, lat, local, mode, overhead=o, out=rows)
                bar.update(len(lon))

    def cell_embeddings(
        self, grid: LatLonGrid, when: When | None = None, mode: str | None = None
    ) -> np.ndarray:
        """(cells, D) fused embeddings of a grid that fits in memory (cached)."""
        mode = mode or mode_for(when)
        _, key = self._keys(grid, when, mode)
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        shape = (grid.size, self.embedder.dim)
        if shape[0] * shape[1] * 4 > MEMORY_BUDGET_BYTES:
            raise InputError(
                f"{grid.size:,} cells do not fit the in-memory budget; use score() which streams"
            )
        emb = self._read_cached(key, shape)
        if emb is None:
            emb = self._buffer(shape)
            for _ in self._fused_chunks(grid, when, mode, out=emb):
                pass
            if self.use_cache and self.cache.fits(shape, np.float32, FUSED_DISK_LIMIT_BYTES):
                with self.cache.writer(key, shape, np.float32) as writer:
                    writer.write(emb)
        self._remember(key, emb)
        return emb

    def _read_cached(self, key: str, shape: tuple[int, int]) -> np.ndarray | None:
        cached = self.cache.get(key) if self.use_cache else None
        if cached is None or cached.shape != shape:
            return None
        try:
            return cached.read()
        except CorruptEntry:
            log.warning("cache entry %s failed its check; recomputing", key)
            self.cache.remove(key)
            return None

    def _buffer(self, shape: tuple[int, int]) -> np.ndarray:
        """An output array: makes room in the memory budget first, and recycles an
        evicted array of the same shape that nobody else holds (a fresh 1.6 GB array
        costs ~0.5 s of page faults, as much as the rest of a new-time map)."""
        nbytes = shape[0] * shape[1] * 4
        spare = None
        while (
            self._memory
            and sum(a.nbytes for a in self._memory.values()) + nbytes > MEMORY_BUDGET_BYTES
        ):
            _, old = self._memory.popitem(last=False)
            # 2 references: `old` and getrefcount's argument; any other (a caller's
            # variable, a view's base) means the array is still in use.
            if spare is None and old.shape == shape and sys.getrefcount(old) == 2:
                spare = old
            del old
        return spare if spare is not None else np.empty(shape, dtype=np.float32)

    def _remember(self, key: str, emb: np.ndarray) -> None:
        self._memory[key] = emb
        while (
            sum(a.nbytes for a in self._memory.values()) > MEMORY_BUDGET_BYTES
            and len(self._memory) > 1
        ):
            self._memory.popitem(last=False)

    # -- scores ----------------------------------------------------------------

    def score(
        self,
        prompts: list[str] | str,
        grid: LatLonGrid,
        when: When | None = None,
        mode: str | None = None,
    ) -> np.ndarray:
        """Cosine similarity maps, (P, nrows, ncols) float32 (or (nrows, ncols) for one prompt)."""
        single = isinstance(prompts, str)
        q = self.embed_prompts([prompts] if single else list(prompts))
        mode = mode or mode_for(when)
        if grid.size * self.embedder.dim * 4 <= MEMORY_BUDGET_BYTES:
            flat = (
                q @ self.cell_embeddings(grid, when, mode).T
                if len(q) > 1
                else (self.cell_embeddings(grid, when, mode) @ q[0])[None]
            )
        else:  # stream: never holds more than one chunk of embeddings
            flat = np.empty((len(q), grid.size), dtype=np.float32)
            for r0, r1, f in self._fused_chunks(grid, when, mode):
                flat[:, r0 * grid.ncols : r1 * grid.ncols] = (f @ q.T).T
        out = flat.reshape(len(q), grid.nrows, grid.ncols)
        return out[0] if single else out
