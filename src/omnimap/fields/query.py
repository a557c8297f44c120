"""Maps from a field: stored o + m(location, time) computed now, scored against prompts.

Only the chunks the region touches are read. The model (for m and the teacher) is the
one the field was built with; another model is refused, since its m would be added
to a different model's o.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from omnimap.errors import DataError, InputError
from omnimap.fields.store import Field
from omnimap.fields.window import Window, whole_field, window_for
from omnimap.geo.bbox import BBox
from omnimap.geo.grid import LatLonGrid, max_cells
from omnimap.geo.timefeat import When, local_times
from omnimap.maps.engine import MapEngine, mode_for
from omnimap.maps.result import MapResult

FieldLike = Field | str | os.PathLike


def as_field(field: FieldLike) -> Field:
    return field if isinstance(field, Field) else Field.open(field)


def engine_for(field: Field, model: str | None = None) -> MapEngine:
    """The map engine of the field's model (``model`` overrides where it is loaded from)."""
    from omnimap.api import get_engine

    engine = get_engine(model or field.spec.model["source"])
    if engine.model.config["weights_digest"] != field.spec.model["weights_digest"]:
        raise DataError(
            f"field {field.path} was built with model {field.spec.model['key']}, "
            f"not {engine.model.key}; pass the model it was built with"
        )
    return engine


def window_fused(
    field: Field, window: Window, engine: MapEngine, when: When | None
) -> Iterator[tuple[slice, slice, LatLonGrid, np.ndarray]]:
    """(grid rows, grid cols, those cells as a grid, unit embeddings (cells, D)) per
    chunk piece of a window: the stored o fused with m at ``when`` (None: time-free)."""
    mode = mode_for(when)
    for rows, cols, piece, o in window.pieces(field):
        lon, lat = piece.centers()
        local = local_times(when, lon) if when is not None else None
        yield rows, cols, piece, engine.embedder.fused(lon, lat, local, mode, overhead=o)


def window_scores(
    field: Field, window: Window, engine: MapEngine, q: np.ndarray, when: When | None
) -> Iterator[tuple[slice, slice, np.ndarray]]:
    """(grid rows, grid cols, scores (P, rows, cols)) per chunk piece of a window. The
    one place scores are computed, so maps and searches give identical numbers."""
    for rows, cols, piece, fused in window_fused(field, window, engine, when):
        yield rows, cols, (fused @ q.T).T.reshape(len(q), *piece.shape)


def score_field(
    field: FieldLike, prompts: list[str], bbox: BBox | None = None, when: When | None = None,
    model: str | None = None,
) -> tuple[np.ndarray, Window]:  # fmt: skip
    """(P, nrows, ncols) float32 cosine maps of prompts over a region of a field (the
    whole field when ``bbox`` is None), and the window they cover."""
    field = as_field(field)
    engine = engine_for(field, model)
    window = whole_field(field) if bbox is None else window_for(field, bbox)
    if window.grid.size > max_cells():
        raise InputError(
            f"field {field.path} has {window.grid.size:,} cells, more than a map may have "
            f"({max_cells():,}); map a --bbox or --region inside it"
        )
    q = engine.embed_prompts(prompts)
    out = np.empty((len(q), *window.grid.shape), dtype=np.float32)
    for rows, cols, scores in window_scores(field, window, engine, q, when):
        out[:, rows, cols] = scores
    return out, window


def map_from_field(
    field: FieldLike, prompt: str, bbox: BBox | str | tuple | None = None,
    region: str | None = None, when: str | When | None = None, model: str | None = None,
) -> MapResult:  # fmt: skip
    """Map a prompt over a region of a field (default: all of it) at the field's
    resolution; like ``omnimap.zero_shot_map`` without recomputing overhead embeddings."""
    from omnimap.api import parse_when, resolve_place

    field = as_field(field)
    if bbox is None and region is None:
        box, label = None, "field extent"
    else:
        box, label = resolve_place(bbox, region)
    moment = parse_when(when)
    scores, window = score_field(field, [prompt], box, moment, model)
    return MapResult(scores=scores[0], grid=window.grid, prompt=prompt.strip(), when=moment,
                     place=label, model=field.spec.model["name"])  # fmt: skip
