"""Patch geometry and warping: any georeferenced array -> a north-up patch on the ground.

Each patch lives on its own azimuthal equidistant grid centred on its point, so the
patch is north-up at the point, exactly ``ground_size_m`` across and free of the
scale distortion of a global projection, whatever CRS the source is in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from rasterio.crs import CRS
from rasterio.transform import Affine
from rasterio.warp import Resampling, reproject, transform_bounds

from omnimap.core.errors import InputError


class PatchFailure(Exception):
    """One point's patch cannot be made; the message is the reason, in words."""


@dataclass(frozen=True)
class PatchGeometry:
    """A square patch: ``ground_size_m`` metres across, ``pixels`` pixels across."""

    ground_size_m: float
    pixels: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.ground_size_m) and self.ground_size_m > 0):
            raise InputError(
                f"ground size must be a positive number of metres, got {self.ground_size_m}"
            )
        if not (1 <= self.pixels <= 8192):
            raise InputError(f"patch pixels must be 1..8192, got {self.pixels}")

    @property
    def key(self) -> str:
        return f"g{self.ground_size_m:g}m-p{self.pixels}"

    @property
    def metres_per_pixel(self) -> float:
        return self.ground_size_m / self.pixels

    def resized(self, size: int | None) -> PatchGeometry:
        """The same ground footprint at another pixel count (``size=None``: unchanged)."""
        return self if size is None else PatchGeometry(self.ground_size_m, int(size))

    def local_crs(self, lon: float, lat: float) -> CRS:
        return CRS.from_proj4(
            f"+proj=aeqd +lat_0={lat:.10f} +lon_0={lon:.10f} +x_0=0 +y_0=0 "
            "+datum=WGS84 +units=m +no_defs"
        )

    @property
    def transform(self) -> Affine:
        half = self.ground_size_m / 2.0
        return Affine(self.metres_per_pixel, 0.0, -half, 0.0, -self.metres_per_pixel, half)

    def footprint(
        self, lon: float, lat: float, crs: CRS | str
    ) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of the patch in ``crs``; edges densified so a
        curved outline in the target CRS is still enclosed."""
        half = self.ground_size_m / 2.0
        return transform_bounds(
            self.local_crs(lon, lat), crs, -half, -half, half, half, densify_pts=21
        )


def check_point(lon: float, lat: float) -> None:
    if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90):
        raise PatchFailure(f"invalid coordinates lon={lon}, lat={lat}")


def warp_patch(
    rgb: np.ndarray,
    valid: np.ndarray,
    transform: Affine,
    crs: CRS | str,
    lon: float,
    lat: float,
    geometry: PatchGeometry,
    min_coverage: float,
) -> np.ndarray:
    """(3, P, P) uint8 patch from a (3, h, w) uint8 source array and its validity mask.

    Invalid source pixels are excluded from interpolation (GDAL alpha band); a patch
    whose covered fraction is below ``min_coverage`` raises PatchFailure.
    """
    src = np.empty((4, *rgb.shape[1:]), dtype=np.uint8)
    src[:3] = rgb
    src[3] = np.where(valid, 255, 0)
    p = geometry.pixels
    dst = np.zeros((4, p, p), dtype=np.uint8)
    # Averaging when shrinking avoids aliasing; bilinear when enlarging avoids blocks.
    shrinking = max(rgb.shape[1:]) > p
    reproject(
        src,
        dst,
        src_transform=transform,
        src_crs=crs,
        dst_transform=geometry.transform,
        dst_crs=geometry.local_crs(lon, lat),
        resampling=Resampling.average if shrinking else Resampling.bilinear,
        src_alpha=4,
        dst_alpha=4,
    )
    coverage = float(np.count_nonzero(dst[3])) / (p * p)
    if coverage < min_coverage:
        raise PatchFailure(
            f"imagery covers {coverage:.0%} of the patch (need {min_coverage:.0%}): "
            "the point is outside or at the edge of the imagery, or on nodata"
        )
    rgb_out = dst[:3]
    rgb_out[:, dst[3] == 0] = 0
    return rgb_out
