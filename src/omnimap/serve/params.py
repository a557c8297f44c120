"""Request parameters, parsed from the raw query text and checked; bad ones raise
:class:`~omnimap.core.errors.InputError`, which the app answers with a 400 and the message.

Parameters arrive as strings and are parsed here rather than by FastAPI's coercion,
so every rejection gets a message written for people (and "1.5", " 1" or "1_0" are
not silently taken for integers).
"""

from __future__ import annotations

import math
import re

from omnimap.core.errors import InputError
from omnimap.geo.grid import LatLonGrid
from omnimap.geo.place import DEFAULT_TARGET_CELLS, default_resolution, resolve_area
from omnimap.geo.regions import Region
from omnimap.geo.timefeat import When
from omnimap.maps.engine import MAX_QUERY_CHARS

MAX_ZOOM = 18  # a 0.05 deg cell is ~20 tiles wide at 18; deeper zooms show nothing new
MAX_TOP_K = 100
# A /map.tif grid: as large as a default-resolution map of any box (the world at
# 0.25 deg), a 4 MB download. Cold, it holds the model for about a minute with the
# atlas on 2 cores, during which tiles wait; a larger one would only wait longer.
MAX_TIF_CELLS = DEFAULT_TARGET_CELLS
_INTEGER = re.compile(r"[0-9]{1,10}")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def prompt(text: str | None) -> str:
    text = (text or "").strip()
    if not text:
        raise InputError("q (the prompt) is empty; describe what to map, e.g. q=sand+dunes")
    if len(text) > MAX_QUERY_CHARS:  # the CLI's and the API's limit too
        raise InputError(f"q is {len(text)} characters long; the limit is {MAX_QUERY_CHARS}")
    if _CONTROL.search(text):
        raise InputError("q contains control characters")
    return text


def when(text: str | None) -> When | None:
    """None or empty: the time-free map; otherwise ISO-8601 (naive = local solar time)."""
    if text is None or not text.strip():
        return None
    if len(text) > 64:
        raise InputError("when is too long; use ISO-8601 such as 2024-01-15T09:00")
    return When.parse(text)


def integer(name: str, text: str, low: int, high: int) -> int:
    if not _INTEGER.fullmatch(text or ""):
        raise InputError(f"{name} must be a whole number from {low} to {high}, got {text[:20]!r}")
    value = int(text)
    if not low <= value <= high:
        raise InputError(f"{name} must be from {low} to {high}, got {value}")
    return value


def tile(z: str, x: str, y: str) -> tuple[int, int, int]:
    zoom = integer("z", z, 0, MAX_ZOOM)
    last = (1 << zoom) - 1
    return zoom, integer("x", x, 0, last), integer("y", y, 0, last)


def top_k(text: str | None) -> int:
    return 10 if text is None else integer("k", text, 1, MAX_TOP_K)


def area(bbox: str | None, region: str | None) -> Region:
    """Where a request asks about: a bbox or a region, as on the command line (neither:
    the world); a country or continent brings its shape."""
    if region is not None and len(region) > 200:
        raise InputError("region is too long")
    return resolve_area(bbox=bbox, region=region)


def tif_grid(place: Region, resolution: str | None, lattice: float | None = None) -> LatLonGrid:
    """The grid of a /map.tif download of a place. On a field-backed server the
    resolution is a whole multiple of the field's."""
    box = place.bbox
    if resolution is None:
        res = default_resolution(box)
    else:
        try:
            res = float(resolution)
        except ValueError:
            raise InputError(f"resolution must be degrees, got {resolution[:20]!r}") from None
        if not math.isfinite(res):
            raise InputError(f"resolution must be a finite number, got {resolution[:20]!r}")
    if lattice is not None:
        res = lattice * max(1, round(res / lattice))
    grid = LatLonGrid.from_bbox(box, res, check_size=False)
    if grid.size > MAX_TIF_CELLS:
        raise InputError(
            f"the map would have {grid.nrows} x {grid.ncols} = {grid.size:,} cells; the "
            f"server's limit is {MAX_TIF_CELLS:,}: use a coarser resolution or a smaller bbox"
        )
    return grid


def basemap_url(text: str) -> tuple[str, str]:
    """(url template, origin) of an online basemap, e.g. https://tile.example/{z}/{x}/{y}.png."""
    from urllib.parse import urlsplit

    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(f"--basemap-url must be an http(s) URL, got {text!r}")
    if not all(f"{{{k}}}" in text for k in "zxy"):
        raise InputError(f"--basemap-url must contain {{z}}, {{x}} and {{y}}, got {text!r}")
    # Leaflet's {s} (sub-domains) becomes a CSP wildcard: https://*.tile.example
    return text, f"{parts.scheme}://{parts.netloc.replace('{s}', '*')}"
