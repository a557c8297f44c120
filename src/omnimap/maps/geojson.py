"""The one GeoJSON writer: ranked points (map peaks, search hits, locations) as an
RFC 7946 FeatureCollection, coordinates rounded to 1e-6 deg (~0.1 m)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from omnimap.core.fileio import write_json_atomic

DECIMALS = 6


def points_collection(points: Iterable[dict], properties: Iterable[str], **meta) -> dict:
    """A FeatureCollection of dicts with ``lon``/``lat``; ``properties`` names the keys
    each feature carries (floats rounded); ``meta`` goes on the collection."""
    keys = list(properties)
    features = [
        {
            "type": "Feature",
            "geometry": {"type": "Point",
                         "coordinates": [round(p["lon"], DECIMALS), round(p["lat"], DECIMALS)]},
            "properties": {k: round(p[k], DECIMALS) if isinstance(p[k], float) else p[k]
                           for k in keys if k in p},
        }
        for p in points
    ]  # fmt: skip
    return {"type": "FeatureCollection", **meta, "features": features}


def write_points(
    path: str | Path, points: Iterable[dict], properties: Iterable[str], **meta
) -> Path:
    write_json_atomic(path, points_collection(points, properties, **meta))
    return Path(path)
