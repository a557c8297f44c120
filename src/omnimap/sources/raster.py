"""Cutting patches out of gridded rasters: read only the window under the patch's
footprint, then warp it onto the patch grid."""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
from rasterio.crs import CRS
from rasterio.transform import Affine
from rasterio.windows import Window, from_bounds
from rasterio.windows import transform as window_transform

from omnimap.sources.warp import PatchFailure, PatchGeometry, warp_patch

# Source pixels kept across the patch when reading decimated: twice the patch
# resolution leaves the final averaging step something to average.
OVERSAMPLE = 2
PAD_PIXELS = 2  # margin so interpolation at the footprint's edge has neighbours


class Raster(Protocol):
    crs: CRS
    transform: Affine
    width: int
    height: int

    def read_window(
        self, window: Window, out_shape: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(3, h, w) uint8 RGB and (h, w) bool validity for a window; h, w may be the
        window's own size or ``out_shape`` (a decimated read)."""
        ...


class ArrayRaster:
    """An in-memory RGB image (H, W, 3) with a georeferencing."""

    def __init__(self, image: np.ndarray, transform: Affine, crs: CRS | str):
        self.image = image
        self.transform = transform
        self.crs = CRS.from_user_input(crs)
        self.height, self.width = image.shape[:2]

    def read_window(self, window: Window, out_shape: tuple[int, int]):
        (r0, r1), (c0, c1) = window.toranges()
        rgb = np.ascontiguousarray(self.image[r0:r1, c0:c1].transpose(2, 0, 1))
        return rgb, np.ones(rgb.shape[1:], dtype=bool)


def patch_from_raster(
    raster: Raster, lon: float, lat: float, geometry: PatchGeometry, min_coverage: float
) -> np.ndarray:
    """(3, P, P) uint8 patch centred on (lon, lat), or PatchFailure."""
    left, bottom, right, top = geometry.footprint(lon, lat, raster.crs)
    if not all(map(math.isfinite, (left, bottom, right, top))):
        raise PatchFailure("the patch cannot be mapped into the imagery's CRS here")
    if left > right:
        raise PatchFailure("the patch crosses the antimeridian of the imagery's CRS")
    window = from_bounds(left, bottom, right, top, transform=raster.transform)
    col0 = max(math.floor(window.col_off) - PAD_PIXELS, 0)
    row0 = max(math.floor(window.row_off) - PAD_PIXELS, 0)
    col1 = min(math.ceil(window.col_off + window.width) + PAD_PIXELS, raster.width)
    row1 = min(math.ceil(window.row_off + window.height) + PAD_PIXELS, raster.height)
    if col1 <= col0 or row1 <= row0:
        raise PatchFailure("the point is outside the imagery's footprint")
    window = Window(col0, row0, col1 - col0, row1 - row0)
    # A window over twice the patch's pixels is read decimated (GDAL uses overviews).
    limit = OVERSAMPLE * (geometry.pixels + 2 * PAD_PIXELS)
    scale = max(1.0, max(window.width, window.height) / limit)
    out_shape = (max(1, round(window.height / scale)), max(1, round(window.width / scale)))
    rgb, valid = raster.read_window(window, out_shape)
    t = window_transform(window, raster.transform)
    sx, sy = window.width / rgb.shape[2], window.height / rgb.shape[1]  # decimation
    transform = Affine(t.a * sx, t.b * sy, t.c, t.d * sx, t.e * sy, t.f)
    return warp_patch(rgb, valid, transform, raster.crs, lon, lat, geometry, min_coverage)
