"""Web-mercator tiles from lon/lat score grids: tile grids, resampling, colour, PNG.

A tile is scored on a lon/lat grid of the global lattice whose cell size depends only
on the zoom, so neighbouring tiles score the very same cells; the grid has one cell of
margin around the tile, so pixels at a tile's edge interpolate with their true
neighbours and tiles meet without seams. Colours come from fixed per-prompt limits
(see :class:`~omnimap.serve.service.MapService`), never from the tile's own values.
"""

from __future__ import annotations

import io
import math
from functools import cache

import morecantile
import numpy as np
from PIL import Image

from omnimap.geo.bbox import BBox
from omnimap.geo.grid import LatLonGrid

TILE_SIZE = 256
# Cells across a tile: 128 for 256 pixels keeps a cold tile cheap; bilinear
# resampling hides the 2-pixel cells.
CELLS_PER_TILE = 128
# The atlas imagery has ~0.067 deg pixels: finer cells add cost but no detail.
FINEST_RESOLUTION = 0.05
COLORMAP = "magma"  # as the PNG maps (MapResult.write_png)
EARTH_RADIUS = 6378137.0  # EPSG:3857 is a sphere of this radius
_TMS = morecantile.tms.get("WebMercatorQuad")


def tile_resolution(z: int, lattice: float | None = None) -> float:
    """Cell size in degrees for zoom ``z``: a power-of-two fraction of 360 (exact in
    binary), or with a field's ``lattice`` the largest power-of-two multiple of it not
    coarser than that (tiles then read the field's cells, or blocks of them)."""
    wanted = 360.0 / 2**z / CELLS_PER_TILE
    if lattice is None:
        return max(FINEST_RESOLUTION, wanted)
    return lattice * 2 ** max(0, math.floor(math.log2(wanted / lattice) + 1e-9))


def tile_grid(z: int, x: int, y: int, lattice: float | None = None) -> LatLonGrid:
    """The lattice grid covering tile z/x/y plus one cell of margin on every side."""
    b = _TMS.bounds(morecantile.Tile(x, y, z))
    res = tile_resolution(z, lattice)
    box = BBox(max(b.left, -180.0), b.bottom, min(b.right, 180.0), b.top).buffered(res)
    return LatLonGrid.from_bbox(box, res)


def pixel_lonlat(z: int, x: int, y: int) -> tuple[np.ndarray, np.ndarray]:
    """Longitudes of the tile's pixel columns and latitudes of its rows (centres)."""
    b = _TMS.xy_bounds(morecantile.Tile(x, y, z))
    steps = (np.arange(TILE_SIZE) + 0.5) / TILE_SIZE
    mx = b.left + steps * (b.right - b.left)
    my = b.top - steps * (b.top - b.bottom)
    lon = np.degrees(mx / EARTH_RADIUS)
    lat = np.degrees(np.arctan(np.sinh(my / EARTH_RADIUS)))
    return lon, lat


def _axis(position: np.ndarray, n: int, wrap: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Neighbouring cell indices and the weight of the second, along one axis."""
    lower = np.floor(position)
    weight = (position - lower).astype(np.float32)
    i0, i1 = lower.astype(np.int64), lower.astype(np.int64) + 1
    if wrap:  # a whole-world grid: the last column neighbours the first
        return i0 % n, i1 % n, weight
    return np.clip(i0, 0, n - 1), np.clip(i1, 0, n - 1), weight


def resample(scores: np.ndarray, grid: LatLonGrid, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Bilinear samples of a grid's scores at the pixel centres (lat rows x lon columns).

    A NaN cell makes the pixels next to it NaN (transparent), never a blend.
    """
    res = grid.resolution
    covers_world = grid.ncols * res >= 360.0 - 1e-9
    columns = ((lon - grid.west) % 360.0) / res - 0.5
    rows = (grid.north - lat) / res - 0.5
    c0, c1, wc = _axis(columns, grid.ncols, covers_world)
    r0, r1, wr = _axis(rows, grid.nrows, False)
    top = scores[r0][:, c0] * (1 - wc) + scores[r0][:, c1] * wc
    bottom = scores[r1][:, c0] * (1 - wc) + scores[r1][:, c1] * wc
    return (top * (1 - wr)[:, None] + bottom * wr[:, None]).astype(np.float32)


@cache
def colormap_lut() -> np.ndarray:
    """(256, 4) uint8 RGBA of the colour map."""
    from matplotlib import colormaps

    return np.round(colormaps[COLORMAP](np.linspace(0.0, 1.0, 256)) * 255).astype(np.uint8)


def legend_stops(count: int = 11) -> list[list]:
    """``[[position 0..1, "#rrggbb"], ...]`` for a CSS gradient of the colour map."""
    lut = colormap_lut()
    stops = []
    for t in np.linspace(0.0, 1.0, count):
        r, g, b, _ = lut[round(t * 255)]
        stops.append([round(float(t), 3), f"#{r:02x}{g:02x}{b:02x}"])
    return stops


def colorize(values: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """(H, W, 4) uint8 RGBA; NaN is fully transparent."""
    finite = np.isfinite(values)
    scaled = (np.where(finite, values, vmin) - vmin) / (vmax - vmin)
    index = np.clip(np.rint(scaled * 255.0), 0, 255).astype(np.uint8)
    rgba = colormap_lut()[index]
    rgba[~finite] = 0
    return rgba


def encode_png(rgba: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()
