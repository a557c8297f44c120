"""Where and when a query asks about: a bbox or named region (or the world), a default
resolution for it, and the ``--when`` date-time. Shared by the API, the CLI, field
builds and the server, so every entry point takes the same place parameters."""

from __future__ import annotations

import math

import numpy as np

from omnimap.core.errors import InputError
from omnimap.geo.bbox import BBox
from omnimap.geo.grid import LatLonGrid
from omnimap.geo.regions import Region, resolve_region
from omnimap.geo.timefeat import When

# Default resolutions, finest first; the first giving at most ~1M cells is used.
RESOLUTION_LADDER = (0.05, 0.1, 0.25, 0.5, 1.0)
DEFAULT_TARGET_CELLS = 1_100_000


def default_resolution(bbox: BBox) -> float:
    """The finest ladder step that keeps the map near a megapixel (the whole world:
    0.25 deg; the Alps: 0.05 deg). The atlas imagery is ~0.067 deg per pixel, so finer
    than 0.05 deg adds cells but no detail."""
    for res in RESOLUTION_LADDER:
        if math.ceil(bbox.width / res) * math.ceil(bbox.height / res) <= DEFAULT_TARGET_CELLS:
            return res
    return RESOLUTION_LADDER[-1]


def parse_bbox(bbox: BBox | str | tuple) -> BBox:
    if isinstance(bbox, BBox):
        return bbox
    if isinstance(bbox, str):
        return BBox.parse(bbox)
    try:
        return BBox(*(float(v) for v in bbox))
    except (TypeError, ValueError):
        raise InputError(f"bbox must be W,S,E,N, got {bbox!r}") from None


def resolve_area(bbox: BBox | str | tuple | None = None, region: str | None = None) -> Region:
    """The region asked for: a named region, a bbox, or neither (the whole world)."""
    if bbox is not None and region is not None:
        raise InputError("give either a bbox or a region, not both")
    if region is not None:
        return resolve_region(region)
    if bbox is None:
        return Region("World", "world", BBox.world())
    box = parse_bbox(bbox)
    return Region(str(box), "bbox", box)


def area_mask(area: Region, grid: LatLonGrid) -> np.ndarray | None:
    """(nrows, ncols) bool of the cells of any grid (a tile's, say) inside an area: a
    shape's polygons, else its box by cell centre; None for the world (all cells)."""
    if area.kind == "world":
        return None
    if area.shape is not None:
        return area.mask(grid)
    lon, lat = np.meshgrid(grid.lons(), grid.lats())
    return area.bbox.contains(lon, lat)


def resolve_place(
    bbox: BBox | str | tuple | None = None, region: str | None = None
) -> tuple[BBox, str]:
    """(bbox, label) from a bbox, a region name, or neither (the whole world)."""
    area = resolve_area(bbox, region)
    return area.bbox, area.name


def parse_when(when: str | When | None) -> When | None:
    if when is None or isinstance(when, When):
        return when
    return When.parse(when)
