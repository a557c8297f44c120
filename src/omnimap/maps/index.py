"""faiss indexes over the fused embeddings of a grid at one time (or time-free), kept in
the store.

The fused vectors at a time cost a pass over the cells (read o, run the m MLP); an index
keeps them, so later queries at that time cost one scan. Two kinds:

- ``flat``: every vector scanned. It differs from the exact search only by faiss's
  float16 storage arithmetic, so its top cells agree with the brute force up to ties
  within float16 rounding (recall measured by the tests and bench_fields.py).
- ``ivf``: inverted lists, ~sqrt(N) of them; a query scans ``nprobe`` lists, so it is
  faster on big grids and approximate (recall measured likewise).

Why faiss (over usearch): one library gives the flat, IVF and HNSW families with
float16/int8 storage and fast SIMD scans of it, trains and adds from NumPy in batches,
serialises to bytes, and has a GPU build. Why IVF (over HNSW): adding millions of
vectors is one centroid assignment each (HNSW insertion is far slower on 2 cores), and
nprobe is chosen per query.

An index is an entry of the store (so the cache's size limit bounds indexes too),
keyed by kind, mode, time and what the cells come from (the field's content digest,
or model + imagery + grid), and verified like every entry.
"""

from __future__ import annotations

import math

import numpy as np

from omnimap.core.errors import InputError
from omnimap.core.lru import LRUCache
from omnimap.geo.grid import LatLonGrid
from omnimap.geo.timefeat import When
from omnimap.maps.engine import MapEngine
from omnimap.models.embedder import mode_for

# The build holds the fused vectors (float16) and the index (float16) at once.
MAX_INDEX_BYTES = 8 * 1024**3
TRAIN_PER_LIST = 64  # faiss k-means wants at least 39 training points per list
KMEANS_ITERATIONS = 10  # faiss's default 25 tripled the build for no recall gained here
ADD_BATCH = 65_536
_loaded = LRUCache(2, MAX_INDEX_BYTES, lambda index: index.ntotal * index.d * 2)


def nlist_for(cells: int) -> int:
    """~sqrt(N) lists: training stays cheap, each list is ~sqrt(N) vectors."""
    return max(1, min(int(math.sqrt(cells)), cells // TRAIN_PER_LIST))


def default_nprobe(nlist: int) -> int:
    # A quarter of the lists. On the world at 0.5 deg with an untrained student of the
    # atlas architecture this gave recall@20 0.93-0.97 in two runs (bench_fields), at
    # ~1/7 of the flat index's query time; trained embeddings cluster more.
    return max(1, math.ceil(nlist / 4))


def index_top_k(
    engine: MapEngine, q: np.ndarray, grid: LatLonGrid, when: When | None, k: int, kind: str,
    nprobe: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(cell ids, scores) of the k best cells by the index of ``kind`` at ``when``."""
    import faiss  # on use: faiss loads OpenMP and SIMD kernels a plain map never needs

    index = load_or_build(engine, grid, when, kind)
    params = None
    if kind == "ivf":
        if nprobe is not None and not 1 <= nprobe <= index.nlist:
            raise InputError(f"--nprobe must be between 1 and {index.nlist}, got {nprobe}")
        # Per call, not index.nprobe: an index in memory may serve other threads.
        params = faiss.SearchParametersIVF(nprobe=nprobe or default_nprobe(index.nlist))
    scores, ids = index.search(np.ascontiguousarray(q[None], dtype=np.float32), k, params=params)
    keep = ids[0] >= 0  # fewer than k cells in the probed lists
    return ids[0][keep], scores[0][keep]


def index_key(engine: MapEngine, grid: LatLonGrid, when: When | None, kind: str) -> str:
    field = engine.field
    cells = (
        f"field:{field.content_digest()}"
        if field is not None and grid == field.grid
        else f"{engine.model.key}|{engine.embedder.imagery.key}|{grid.key}"
    )
    time_key = when.key if when is not None else "none"
    return f"index|{kind}-sqfp16|{mode_for(when)}|{time_key}|{cells}"


def load_or_build(engine: MapEngine, grid: LatLonGrid, when: When | None, kind: str):
    """The index: from memory, else from the store, else built (and stored)."""
    import faiss

    key = index_key(engine, grid, when, kind)

    def load():
        stored = engine.store.read(key) if engine.use_cache else None
        if stored is not None:
            try:
                return faiss.deserialize_index(stored["data"])
            except RuntimeError:
                engine.store.remove(key)
        index = build_index(engine, grid, when, kind)
        data = faiss.serialize_index(index)
        if engine.use_cache and engine.store.fits(data.shape, np.uint8):
            engine.store.put(key, {"data": data})
        return index

    return _loaded.get_or_compute(key, load)


def build_index(engine: MapEngine, grid: LatLonGrid, when: When | None, kind: str):
    """An index of ``kind`` over the fused vectors; vector i is cell i (row-major)."""
    import faiss

    n, d = grid.size, engine.dim
    if 2 * n * d * 2 > MAX_INDEX_BYTES:
        raise InputError(
            f"{n:,} cells are too many for an in-memory index "
            f"(limit {MAX_INDEX_BYTES / 1024**3:g} GiB); use --method exact"
        )
    # IVF must be trained before vectors are added, so one pass buffers them all.
    fused = np.empty((n, d), dtype=np.float16)
    for rows, cols, _piece, f in engine.fused_pieces(grid, when, desc=f"{kind} index"):
        r, c = np.mgrid[rows, cols]
        fused[(r * grid.ncols + c).ravel()] = f
    if kind == "flat":
        index = faiss.index_factory(d, "SQfp16", faiss.METRIC_INNER_PRODUCT)
    else:
        nlist = nlist_for(n)
        index = faiss.index_factory(d, f"IVF{nlist},SQfp16", faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = KMEANS_ITERATIONS
        sample = np.random.default_rng(0).choice(
            n, size=min(n, TRAIN_PER_LIST * nlist), replace=False
        )
        index.train(fused[np.sort(sample)].astype(np.float32))
    for s in range(0, n, ADD_BATCH):
        index.add(fused[s : s + ADD_BATCH].astype(np.float32))
    return index
