"""Search: the k best cells of a grid (or of a whole field) for a query at a time, and
the k best of a set of samples (a pairs table's places, each at its own time).

A cell scores cos(q, normalize(o + m(t))): the normalisation couples the stored o with
the time part m, so no index over o alone can rank cells at a given time. Methods:

- ``exact`` (default): stream the engine's fused pieces, score them with the one
  scoring function, keep a running top-k: exactly the brute-force map's top cells;
  one pass per query, any size.
- ``flat`` / ``ivf``: a faiss index of the fused vectors at that time (maps.index),
  built by one such pass and kept in the store, so later queries at the same time
  (or time-free: the usual "where in the world") cost one scan. ``flat`` scans all
  vectors (float16: agrees with ``exact`` up to float16 ties); ``ivf`` scans some
  lists (faster, approximate). Their recall is measured, not assumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnimap.core.errors import InputError
from omnimap.geo.grid import LatLonGrid
from omnimap.geo.timefeat import When
from omnimap.maps.engine import MapEngine
from omnimap.maps.geojson import write_points
from omnimap.maps.index import index_top_k
from omnimap.maps.render import contact_sheet
from omnimap.maps.scoring import cosine_scores

METHODS = ("exact", "flat", "ivf")


@dataclass(frozen=True)
class Hit:
    rank: int
    lon: float  # cell centre or sample position
    lat: float
    score: float
    row: int = -1  # grid row and column (cells), or -1
    col: int = -1
    id: str = ""  # sample id (samples), or ""
    index: int = -1  # sample row (samples), or -1


@dataclass(frozen=True)
class SearchResult:
    query: str
    when: When | None
    method: str
    source: str  # what was searched: a field's path, a grid, a pairs set
    model: str
    hits: list[Hit]

    def table(self) -> str:
        when = self.when.describe() if self.when else "any time"
        what = "cells" if all(h.row >= 0 for h in self.hits) else "samples"
        lines = [f'top {len(self.hits)} {what} for "{self.query}" ({when}; {self.method} search '
                 f"of {self.source})", f"{'rank':>4}  {'lon':>11}  {'lat':>10}  {'score':>7}"]  # fmt: skip
        lines += [
            f"{h.rank:>4}  {h.lon:>11.5f}  {h.lat:>10.5f}  {h.score:>7.4f}" for h in self.hits
        ]
        return "\n".join(lines)

    def write_geojson(self, path: str | Path) -> Path:
        """The hits as points, best first."""
        points = [h.__dict__ for h in self.hits]
        keys = ("rank", "score", "id") if any(h.id for h in self.hits) else ("rank", "score")
        return write_points(path, points, keys, prompt=self.query, model=self.model,
                            when=self.when.dt.isoformat() if self.when else None,
                            method=self.method)  # fmt: skip


def top_k(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best, highest score first; equal scores by lower id (deterministic)."""
    order = np.lexsort((ids, -scores))[:k]
    return ids[order], scores[order]


def exact_top_k(
    engine: MapEngine, q: np.ndarray, grid: LatLonGrid, when: When | None, k: int,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(cell ids, scores) of the k best cells (of those ``mask`` marks): a running
    top-k over streamed pieces."""
    ids, scores = np.empty(0, np.int64), np.empty(0, np.float32)
    for rows, cols, _piece, fused in engine.fused_pieces(grid, when, desc="search"):
        r, c = np.mgrid[rows, cols]
        cell_scores = cosine_scores(fused, q[None])[0]
        valid = np.isfinite(cell_scores)  # cells without imagery are nodata
        if mask is not None:
            valid &= mask[rows, cols].ravel()
        ids, scores = top_k(np.concatenate([ids, (r * grid.ncols + c).ravel()[valid]]),
                            np.concatenate([scores, cell_scores[valid]]), k)  # fmt: skip
    return ids, scores


def masked_index_top_k(
    engine: MapEngine, q: np.ndarray, grid: LatLonGrid, when: When | None, k: int,
    method: str, nprobe: int | None, mask: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The index's k best cells of those ``mask`` marks: the index covers the whole
    grid, so ask it for more until k of them lie inside (or it has no more)."""
    if mask is None:
        return index_top_k(engine, q, grid, when, k, method, nprobe)
    inside = mask.ravel()
    wanted = min(grid.size, 4 * k)
    while True:
        ids, scores = index_top_k(engine, q, grid, when, wanted, method, nprobe)
        keep = inside[ids]
        if keep.sum() >= k or wanted >= grid.size or len(ids) < wanted:
            return ids[keep][:k], scores[keep][:k]
        wanted = min(grid.size, 4 * wanted)


def search_cells(
    engine: MapEngine, query: str, grid: LatLonGrid | None = None, *, when: When | None = None,
    k: int = 20, method: str = "exact", nprobe: int | None = None,
    mask: np.ndarray | None = None,
) -> SearchResult:  # fmt: skip
    """The ``k`` best cells of ``grid`` (default: the engine's whole field), of those
    ``mask`` marks (a country's or continent's cells) when given."""
    if method not in METHODS:
        raise InputError(f"search method must be one of {', '.join(METHODS)}, got {method!r}")
    if k < 1:
        raise InputError(f"--k must be at least 1, got {k}")
    if nprobe is not None and method != "ivf":
        raise InputError("--nprobe applies to --method ivf")
    if grid is None:
        if engine.field is None:
            raise InputError("search needs a grid or an engine with a field")
        grid = engine.field.grid
    k = min(k, grid.size)
    q = engine.embed_queries([query])[0]
    if method == "exact":
        ids, scores = exact_top_k(engine, q, grid, when, k, mask)
    else:
        ids, scores = masked_index_top_k(engine, q, grid, when, k, method, nprobe, mask)
    lons, lats = grid.lons(), grid.lats()
    hits = []
    for rank, (cell, score) in enumerate(zip(ids.tolist(), scores.tolist(), strict=True), 1):
        row, col = divmod(cell, grid.ncols)
        hits.append(Hit(rank, float(lons[col]), float(lats[row]), float(score), row, col))
    if not hits:
        raise InputError("the imagery covers none of the cells searched")
    source = str(engine.field.path) if engine.field is not None else f"grid {grid.key}"
    return SearchResult(query.strip(), when, method, source, engine.name, hits)


def search_samples(
    engine: MapEngine, query: str, vectors: np.ndarray, lon: np.ndarray, lat: np.ndarray,
    ids: list[str], k: int = 16, when: When | None = None, source: str = "samples",
) -> SearchResult:  # fmt: skip
    """The ``k`` best of samples whose student embeddings are ``vectors``."""
    if k < 1:
        raise InputError("k must be at least 1")
    q = engine.embed_queries([query])
    scores = cosine_scores(vectors, q)[0]
    order, best = top_k(np.arange(len(scores)), scores, k)
    hits = [Hit(r + 1, float(lon[i]), float(lat[i]), float(s), id=ids[i], index=int(i))
            for r, (i, s) in enumerate(zip(order.tolist(), best.tolist(), strict=True))]  # fmt: skip
    return SearchResult(query.strip(), when, "exact", source, engine.name, hits)


def write_contact_sheet(result: SearchResult, patches: np.ndarray, path: str | Path) -> Path:
    """A PNG of the hits' overhead patches, ranked, with score and position."""
    labels = [f"#{h.rank} {h.score:.3f}\n{h.lon:.4f}, {h.lat:.4f}" for h in result.hits]
    return contact_sheet(patches, labels, f'"{result.query}"', path)
