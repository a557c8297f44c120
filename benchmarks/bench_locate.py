"""Where-was-this speed: knn over a 1M-observation gallery and the field posterior of the
world at 0.25 deg.

    python benchmarks/bench_locate.py [--observations 1000000] [--skip-field]

- knn: the gallery's own index (IVF over 1M vectors; flat below 200k) vs exact search
  (faiss flat inner product) on the same vectors: ms per single query (best of 5 per
  query, median over queries) and recall@10. The vectors are 384-d unit vectors around
  20k centres (what many phrasings of few facts look like; real atlas galleries of a
  million would take hours to embed on 2 cores).
- field: ``locate_field`` on the world at 0.25 deg with the atlas, after one warm-up call
  (the overhead part cached in the store, fused embeddings in memory): seconds per
  posterior (scores, softmax, hypotheses).

The GeoCLIP query vs the ``geoclip`` package's ``predict()`` is ``bench_geoclip.py``
(the ``geoclip`` method runs exactly that query after its linear head).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from common import best_of, machine, save
from omnimap.datasets.gallery import Gallery, build_index, default_nprobe


def clustered(n: int, d: int = 384, centres: int = 20_000, noise: float = 0.35, seed: int = 0):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, d)).astype(np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    x = c[rng.integers(0, centres, n)] + noise / np.sqrt(d) * rng.normal(size=(n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = c[rng.integers(0, centres, 200)] + noise / np.sqrt(d) * rng.normal(size=(200, d)).astype(np.float32)
    return x.astype(np.float16), q / np.linalg.norm(q, axis=1, keepdims=True)


def bench_knn(n: int) -> dict:
    import faiss

    x, queries = clustered(n)
    t = time.perf_counter()
    index, kind = build_index(x)
    build_s = time.perf_counter() - t
    g = Gallery(path=Path("bench"), lon=np.zeros(n), lat=np.zeros(n), time=None, sources=[],
                embeddings=x, teacher={}, modality="text", index=index, index_kind=kind)  # fmt: skip
    exact = faiss.IndexFlatIP(x.shape[1])
    exact.add(x.astype(np.float32))
    _, truth = exact.search(queries, 10)
    _, got = g.search(queries, 10)
    recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth, strict=True)]))
    per_query = [best_of(lambda q=q: g.search(q[None], 10), 5) for q in queries[:50]]
    exact_query = [best_of(lambda q=q: exact.search(q[None], 10), 3) for q in queries[:10]]
    return {"observations": n, "index": kind, "nlist": getattr(index, "nlist", None),
            "nprobe": default_nprobe(index.nlist) if kind == "ivf" else None, "build_s": build_s,
            "query_ms": 1000 * statistics.median(per_query),
            "exact_query_ms": 1000 * statistics.median(exact_query), "recall_at_10": recall}  # fmt: skip


def bench_field() -> dict:
    from omnimap.geo.bbox import BBox
    from omnimap.geo.grid import LatLonGrid
    from omnimap.maps.engine import MapEngine
    from omnimap.maps.locate import locate_field

    engine = MapEngine("atlas")
    grid = LatLonGrid.from_bbox(BBox.world(), 0.25)
    q = engine.embed_queries(["sand dunes under a hot midday sun"])[0]
    t = time.perf_counter()
    locate_field(engine, q, grid, None, "warm-up")
    warm_s = time.perf_counter() - t
    seconds = best_of(lambda: locate_field(engine, q, grid, None, "bench"), 3)
    return {"cells": grid.size, "first_call_s": warm_s, "posterior_s": seconds}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--observations", type=int, default=1_000_000)
    parser.add_argument("--skip-field", action="store_true")
    parser.add_argument("--skip-knn", action="store_true")
    args = parser.parse_args()
    result = {"machine": machine()}
    if not args.skip_knn:
        result["knn"] = bench_knn(args.observations)
    if not args.skip_field:
        result["field"] = bench_field()
    for part in ("knn", "field"):
        for key, v in result.get(part, {}).items():
            print(f"{part:6s}{key:22s} {v:,.6g}" if isinstance(v, float) else f"{part:6s}{key:22s} {v}")
    print("saved", save("locate-" + "-".join(k for k in ("knn", "field") if k in result), result))


if __name__ == "__main__":
    with tempfile.TemporaryDirectory():
        main()
