"""Cached faiss indexes over a field's fused embeddings at one time (or time-free).

The fused vectors at a time cost a pass over the field (read o, run the m MLP); an
index keeps them, so later prompts at that time cost one scan. Two kinds:

- ``flat``: every vector scanned. It differs from the exact search only by storing
  the vectors as float16, so its top cells agree with the brute force up to ties
  within float16 rounding (recall measured by the tests and bench_fields.py).
- ``ivf``: inverted lists, ~sqrt(N) of them; a query scans ``nprobe`` lists, so it is
  faster on big fields and approximate (recall measured likewise).

Why faiss (over usearch): one library gives the flat, IVF and HNSW families with
float16/int8 storage and fast SIMD scans of it (NumPy has no fast float16 matmul),
trains and adds from NumPy in batches, persists to one file, and has a GPU build.
Why IVF (over HNSW): adding millions of vectors is one centroid assignment each
(HNSW insertion is far slower on 2 cores), and nprobe is chosen per query.

An index is keyed by kind, mode, time and the field's content digest, so a rebuilt or
extended field never serves a stale one, and it is verified by digest on load.
"""

from __future__ import annotations

import json
import logging
import math
from collections import OrderedDict

import numpy as np
import xxhash

from omnimap.errors import InputError
from omnimap.fields.query import window_fused
from omnimap.fields.store import Field
from omnimap.fields.window import whole_field
from omnimap.fileio import atomic_path, write_json_atomic
from omnimap.geo.timefeat import When
from omnimap.maps.engine import MapEngine, mode_for
from omnimap.models.checkpoint import file_digest

log = logging.getLogger(__name__)

# The build holds the fused vectors (float16) and the index (float16) at once.
MAX_INDEX_BYTES = 8 * 1024**3
TRAIN_PER_LIST = 64  # faiss k-means wants at least 39 training points per list
KMEANS_ITERATIONS = 10  # faiss's default 25 tripled the build for no recall gained here
MAX_CACHED = 4  # indexes kept on disk per field (one per kind and time); oldest go first
MAX_LOADED = 2  # kept in memory, so a server's repeated queries skip the disk
ADD_BATCH = 65_536
_loaded: OrderedDict[str, object] = OrderedDict()


def nlist_for(cells: int) -> int:
    """~sqrt(N) lists: training stays cheap, each list is ~sqrt(N) vectors."""
    return max(1, min(int(math.sqrt(cells)), cells // TRAIN_PER_LIST))


def default_nprobe(nlist: int) -> int:
    # A quarter of the lists. On the world at 0.5 deg with an untrained student of the
    # atlas architecture this gave recall@20 0.93-0.97 in two runs (bench_fields), at
    # ~1/7 of the flat index's query time; trained embeddings cluster more. Re-measure
    # on the atlas before relying on it; below ~10M cells prefer --method flat.
    return max(1, math.ceil(nlist / 4))


def index_top_k(
    field: Field, engine: MapEngine, q: np.ndarray, when: When | None, k: int, kind: str,
    nprobe: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(cell ids, scores) of the k best cells by the cached index of ``kind`` at ``when``."""
    import faiss

    index = load_or_build(field, engine, when, kind)
    params = None
    if kind == "ivf":
        if nprobe is not None and not 1 <= nprobe <= index.nlist:
            raise InputError(f"--nprobe must be between 1 and {index.nlist}, got {nprobe}")
        # Per call, not index.nprobe: an index in memory may serve other threads.
        params = faiss.SearchParametersIVF(nprobe=nprobe or default_nprobe(index.nlist))
    scores, ids = index.search(np.ascontiguousarray(q[None], dtype=np.float32), k, params=params)
    keep = ids[0] >= 0  # fewer than k cells in the probed lists
    return ids[0][keep], scores[0][keep]


def index_key(field: Field, when: When | None, kind: str) -> str:
    time_key = when.key if when is not None else "none"
    return f"{kind}-sqfp16|{mode_for(when)}|{time_key}|{field.content_digest()}"


def load_or_build(field: Field, engine: MapEngine, when: When | None, kind: str):
    """The index: from memory, else from the field's cache, else built (and cached)."""
    key = index_key(field, when, kind)
    if key in _loaded:
        _loaded.move_to_end(key)
        return _loaded[key]
    index = _load_or_build(field, engine, when, kind, key)
    _loaded[key] = index
    while len(_loaded) > MAX_LOADED:
        _loaded.popitem(last=False)
    return index


def _load_or_build(field: Field, engine: MapEngine, when: When | None, kind: str, key: str):
    import faiss

    name = xxhash.xxh3_64_hexdigest(key.encode())
    path, manifest = field.path / "index" / f"{name}.faiss", field.path / "index" / f"{name}.json"
    try:
        meta = json.loads(manifest.read_text(encoding="utf-8"))
        if meta["key"] == key and file_digest(path) == meta["digest"]:
            return faiss.read_index(str(path))
    except (OSError, ValueError, KeyError, RuntimeError):
        pass  # missing, stale or corrupt: rebuild
    index = build_index(field, engine, when, kind)
    try:
        with atomic_path(path, suffix=".tmp.faiss") as tmp:
            faiss.write_index(index, str(tmp))
        write_json_atomic(manifest, {"key": key, "digest": file_digest(path)})
        _evict_old(field)
    except OSError as exc:  # a read-only field still answers, just without the cache
        log.warning("could not cache the search index in %s: %s", field.path, exc)
    return index


def build_index(field: Field, engine: MapEngine, when: When | None, kind: str):
    """An index of ``kind`` over the fused vectors; vector i is cell i (row-major)."""
    import faiss

    n, d = field.grid.size, field.dim
    if 2 * n * d * 2 > MAX_INDEX_BYTES:
        raise InputError(
            f"field {field.path} ({n:,} cells) is too large for an in-memory index "
            f"(limit {MAX_INDEX_BYTES / 1024**3:g} GiB); use --method exact"
        )
    # IVF must be trained before vectors are added, so one pass buffers them all.
    fused = np.empty((n, d), dtype=np.float16)
    ncols = field.grid.ncols
    for rows, cols, _piece, f in window_fused(field, whole_field(field), engine, when):
        r, c = np.mgrid[rows, cols]
        fused[(r * ncols + c).ravel()] = f
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


def _evict_old(field: Field) -> None:
    indexes = sorted((field.path / "index").glob("*.faiss"), key=lambda p: p.stat().st_mtime)
    for old in indexes[:-MAX_CACHED]:
        old.unlink(missing_ok=True)
        old.with_suffix(".json").unlink(missing_ok=True)
