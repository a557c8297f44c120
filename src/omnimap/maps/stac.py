"""STAC Items for exported maps: ``X.stac.json`` beside ``X.tif``.

Items use STAC 1.1 core only (asset-level ``data_type``/``nodata``/``unit``/
``statistics`` are core in 1.1), so they validate against the schemas pystac ships,
offline. The footprint follows RFC 7946: a map crossing the antimeridian gets a
MultiPolygon split at 180 and a bbox whose west exceeds its east.

Time: a time-free map has no time of its own, so ``datetime`` is when it was made.
A map at a local solar time ``t`` holds, at longitude ``lon``, the instant
``t - lon/15 h`` UTC: a range of instants across the map, given as
``start_datetime``/``end_datetime``. A map at an instant has that ``datetime``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import numpy as np

from omnimap.core.fileio import write_json_atomic
from omnimap.geo.grid import LatLonGrid
from omnimap.geo.timefeat import When

if TYPE_CHECKING:  # for annotations only: result.py writes its items through here
    from omnimap.maps.result import MapResult

UNITS_NOTE = "cosine similarity; higher = more likely"
COLORBAR_LABEL = "similarity to prompt (higher = more likely)"


@dataclass(frozen=True)
class Values:
    """What a map's cell values are: their unit, the colour bar and band label, and a
    line for the metadata."""

    unit: str
    label: str
    note: str


SIMILARITY = Values("cosine similarity", COLORBAR_LABEL, UNITS_NOTE)
PROBABILITY = Values("probability", "probability of the place (the cells sum to 1)",
                     "posterior probability of each cell; the cells sum to 1")  # fmt: skip

STAC_VERSION = "1.1.0"
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
_DECIMALS = 9  # coordinates: well below a cell, and no float noise like 10.000000000000002


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ring(west: float, south: float, east: float, north: float) -> list[list[float]]:
    """Counter-clockwise, as RFC 7946 wants exterior rings."""
    return [[west, south], [east, south], [east, north], [west, north], [west, south]]


def footprint(grid: LatLonGrid) -> tuple[list[float], dict]:
    """(bbox, geometry) of a grid in RFC 7946 longitudes (within [-180, 180])."""
    west, east = round(grid.west, _DECIMALS), round(grid.east, _DECIMALS)
    south, north = round(grid.south, _DECIMALS), round(grid.north, _DECIMALS)
    if grid.ncols * grid.resolution >= 360.0 - 1e-9:
        west, east = -180.0, 180.0
    if east <= 180.0:
        return [west, south, east, north], {
            "type": "Polygon",
            "coordinates": [_ring(west, south, east, north)],
        }
    # The raster's x axis runs past 180: the part beyond is at east - 360.
    wrapped_east = round(east - 360.0, _DECIMALS)
    geometry = {
        "type": "MultiPolygon",
        "coordinates": [
            [_ring(west, south, 180.0, north)],
            [_ring(-180.0, south, wrapped_east, north)],
        ],
    }
    return [west, south, wrapped_east, north], geometry


def _time_properties(when: When | None, grid: LatLonGrid, created: datetime) -> dict:
    if when is None:
        return {"datetime": _rfc3339(created)}
    if not when.is_local_solar:
        return {"datetime": _rfc3339(when.dt)}
    lons = grid.lons()  # cell centres, wrapped: where the model saw the time
    local = when.dt.replace(tzinfo=UTC)
    return {
        "datetime": None,
        "start_datetime": _rfc3339(local - timedelta(hours=float(lons.max()) / 15.0)),
        "end_datetime": _rfc3339(local - timedelta(hours=float(lons.min()) / 15.0)),
    }


def _statistics(scores: np.ndarray) -> dict:
    finite = scores[np.isfinite(scores)].astype(np.float64)
    stats = {"valid_percent": round(100.0 * finite.size / max(scores.size, 1), 4)}
    if finite.size:
        stats.update(
            minimum=round(float(finite.min()), 6),
            maximum=round(float(finite.max()), 6),
            mean=round(float(finite.mean()), 6),
            stddev=round(float(finite.std()), 6),
        )
    return stats


def _time_mode(when: When | None) -> str:
    if when is None:
        return "none"
    return "local-solar" if when.is_local_solar else "instant"


def stac_item(
    result: MapResult,
    tif_href: str,
    *,
    png_href: str | None = None,
    geojson_href: str | None = None,
    item_id: str | None = None,
    created: datetime | None = None,
) -> dict:
    """A STAC 1.1 Item (as a dict) describing a map and its files.

    Hrefs are written as given (relative ones resolve against the item's own
    location). ``item_id`` defaults to the GeoTIFF's file name without suffix.
    """
    created = created or datetime.now(UTC)
    bbox, geometry = footprint(result.grid)
    item_id = item_id or PurePosixPath(urlsplit(tif_href).path).stem or "omnimap-map"
    properties = {
        "title": result.title,
        "description": f"Zero-shot map: {result.title}. Values: {result.values.note}.",
        **_time_properties(result.when, result.grid, created),
        "created": _rfc3339(created),
        "omnimap:prompt": result.prompt,
        "omnimap:when": result.when.dt.isoformat() if result.when else None,
        "omnimap:time_mode": _time_mode(result.when),
        "omnimap:place": result.place,
        "omnimap:model": result.model,
        "omnimap:resolution_deg": result.grid.resolution,
        "omnimap:shape": list(result.grid.shape),
    }
    assets = {
        "data": {
            "href": tif_href,
            "type": COG_MEDIA_TYPE,
            "title": f"{result.values.unit.capitalize()} (Cloud-Optimized GeoTIFF, EPSG:4326)",
            "description": result.values.label,
            "roles": ["data"],
            "data_type": "float32",
            "nodata": "nan",
            "unit": result.values.unit,
            "statistics": _statistics(result.scores),
        }
    }
    if png_href is not None:
        assets["overview"] = {
            "href": png_href,
            "type": "image/png",
            "title": "Rendered map",
            "roles": ["overview", "visual"],
        }
    if geojson_href is not None:
        assets["peaks"] = {
            "href": geojson_href,
            "type": "application/geo+json",
            "title": "Top places",
            "roles": ["metadata"],
        }
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": [],
        "id": item_id,
        "bbox": bbox,
        "geometry": geometry,
        "properties": properties,
        "links": [],
        "assets": assets,
    }


def stac_path(tif_path: str | Path) -> Path:
    """``X.tif`` -> ``X.stac.json``."""
    return Path(tif_path).with_suffix(".stac.json")


def stac_document(
    result: MapResult,
    tif_path: str | Path,
    *,
    png_path: str | Path | None = None,
    geojson_path: str | Path | None = None,
) -> dict:
    """The STAC Item of ``X.tif`` and its siblings, hrefs relative to it."""
    tif_path = Path(tif_path)

    def relative(path: str | Path | None) -> str | None:
        if path is None:
            return None
        return (
            "./" + Path(os.path.relpath(Path(path).resolve(), tif_path.resolve().parent)).as_posix()
        )

    return stac_item(
        result,
        relative(tif_path),
        png_href=relative(png_path),
        geojson_href=relative(geojson_path),
        item_id=tif_path.stem,
    )


def write_stac_item(
    result: MapResult,
    tif_path: str | Path,
    *,
    png_path: str | Path | None = None,
    geojson_path: str | Path | None = None,
) -> Path:
    """Write ``X.stac.json`` beside ``X.tif`` (atomically), hrefs relative to it."""
    item = stac_document(result, tif_path, png_path=png_path, geojson_path=geojson_path)
    out = stac_path(tif_path)
    write_json_atomic(out, item)
    return out
