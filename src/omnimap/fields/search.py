""" "Where in the world": the k best cells of a whole field for a prompt at a time.

A cell scores cos(q, normalize(o + m(t))). The normalisation couples the stored o
with the time part m, so no index over o alone can rank cells at a given time (q.o
ranks them differently from the fused vectors). Every method works on the fused
vectors at the query's time:

- ``exact`` (default): stream the field chunk by chunk, fuse, score, keep a running
  top-k. The same arithmetic as a map (query.window_scores), so it returns exactly the
  brute-force map's top cells; one pass over the field per query, any field size.
- ``flat`` / ``ivf``: a faiss index of the fused vectors at that time (index.py),
  built by one such pass and cached in the field, so later prompts at the same time
  (or time-free: the usual "where in the world") cost one scan. ``flat`` scans all
  vectors (stored as float16: agrees with ``exact`` up to float16 ties); ``ivf`` scans
  some lists (faster, approximate). Their recall is measured, not assumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnimap.errors import InputError
from omnimap.fields.query import FieldLike, as_field, engine_for, window_scores
from omnimap.fields.store import Field
from omnimap.fields.window import whole_field
from omnimap.fileio import write_json_atomic
from omnimap.geo.timefeat import When
from omnimap.maps.engine import MapEngine

METHODS = ("exact", "flat", "ivf")


@dataclass(frozen=True)
class Hit:
    rank: int
    row: int  # field row and column
    col: int
    lon: float  # cell centre
    lat: float
    score: float


@dataclass(frozen=True)
class SearchResult:
    prompt: str
    when: When | None
    method: str
    field: Path
    model: str
    hits: list[Hit]

    def table(self) -> str:
        when = self.when.describe() if self.when else "any time"
        lines = [f'top {len(self.hits)} cells for "{self.prompt}" ({when}; {self.method} '
                 f"search of {self.field})",
                 f"{'rank':>4}  {'lon':>11}  {'lat':>10}  {'score':>7}"]  # fmt: skip
        lines += [
            f"{h.rank:>4}  {h.lon:>11.5f}  {h.lat:>10.5f}  {h.score:>7.4f}" for h in self.hits
        ]
        return "\n".join(lines)

    def write_geojson(self, path: str | Path) -> Path:
        """The hits as an RFC 7946 FeatureCollection of points, best first."""
        features = [
            {"type": "Feature",
             "geometry": {"type": "Point", "coordinates": [round(h.lon, 6), round(h.lat, 6)]},
             "properties": {"rank": h.rank, "score": round(h.score, 6)}}
            for h in self.hits
        ]  # fmt: skip
        write_json_atomic(path, {
            "type": "FeatureCollection", "prompt": self.prompt,
            "when": self.when.dt.isoformat() if self.when else None,
            "model": self.model, "method": self.method, "features": features,
        })  # fmt: skip
        return Path(path)


def top_k(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best, highest score first; equal scores by lower cell id (deterministic)."""
    order = np.lexsort((ids, -scores))[:k]
    return ids[order], scores[order]


def exact_top_k(
    field: Field, engine: MapEngine, q: np.ndarray, when: When | None, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """(cell ids, scores) of the k best cells: a running top-k over streamed chunks."""
    ids, scores = np.empty(0, np.int64), np.empty(0, np.float32)
    ncols = field.grid.ncols
    for rows, cols, s in window_scores(field, whole_field(field), engine, q[None], when):
        r, c = np.mgrid[rows, cols]
        ids, scores = top_k(
            np.concatenate([ids, (r * ncols + c).ravel()]),
            np.concatenate([scores, s[0].ravel()]),
            k,
        )
    return ids, scores


def search_field(
    field: FieldLike, prompt: str, *, when: str | When | None = None, k: int = 20,
    method: str = "exact", nprobe: int | None = None, model: str | None = None,
) -> SearchResult:  # fmt: skip
    """The ``k`` best cells of the whole field for ``prompt`` at ``when``."""
    from omnimap.api import parse_when

    if method not in METHODS:
        raise InputError(f"search method must be one of {', '.join(METHODS)}, got {method!r}")
    if k < 1:
        raise InputError(f"--k must be at least 1, got {k}")
    if nprobe is not None and method != "ivf":
        raise InputError("--nprobe applies to --method ivf")
    field = as_field(field)
    k = min(k, field.grid.size)
    moment = parse_when(when)
    engine = engine_for(field, model)
    q = engine.embed_prompts([prompt])[0]
    if method == "exact":
        ids, scores = exact_top_k(field, engine, q, moment, k)
    else:
        from omnimap.fields.index import index_top_k

        ids, scores = index_top_k(field, engine, q, moment, k, method, nprobe)
    lons, lats = field.grid.lons(), field.grid.lats()
    hits = []
    for rank, (cell, score) in enumerate(zip(ids.tolist(), scores.tolist(), strict=True), 1):
        row, col = divmod(cell, field.grid.ncols)
        hits.append(Hit(rank, row, col, float(lons[col]), float(lats[row]), float(score)))
    return SearchResult(prompt.strip(), moment, method, field.path, field.spec.model["name"], hits)
