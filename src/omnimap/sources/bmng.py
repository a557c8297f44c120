"""The built-in NASA Blue Marble NG image as a source, natively or resampled to a
ground geometry."""

from __future__ import annotations

from typing import Any

import numpy as np
from rasterio.transform import Affine

from omnimap.data.imagery import EquirectangularImage, blue_marble
from omnimap.sources.base import GroundPatchSource, PatchBatch, PatchSource, file_digest
from omnimap.sources.raster import ArrayRaster, patch_from_raster

ATTRIBUTION = "NASA Blue Marble: Next Generation (NASA Earth Observatory, public domain)"


class BlueMarbleNative(PatchSource):
    """The built-in atlas imagery: native-pixel patches (~7.4 km per pixel) from
    ``data.imagery.blue_marble``; same key, so existing caches stay valid."""

    kind = "bmng"
    attribution = ATTRIBUTION

    def __init__(self, patch_size: int = 16):
        self._image: EquirectangularImage = blue_marble(patch_size)

    @property
    def key(self) -> str:
        return self._image.key

    @property
    def patch_size(self) -> int:
        return self._image.patch_size

    def to_config(self) -> dict[str, Any]:
        return {"type": self.kind, "patch_size": self.patch_size, "key": self.key}

    def read(self, lon, lat, size: int | None = None) -> PatchBatch:
        # Global and wrapping: every valid coordinate has a patch.
        lon = np.asarray(lon, dtype=np.float64).ravel()
        lat = np.asarray(lat, dtype=np.float64).ravel()
        size = self.patch_size if size is None else int(size)
        ok = np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180) & (np.abs(lat) <= 90)
        if ok.all():  # the map engine's case: no second copy of a big batch
            return PatchBatch(self._image.patches(lon, lat, size), ok)
        patches = np.zeros((len(lon), 3, size, size), dtype=np.uint8)
        patches[ok] = self._image.patches(lon[ok], lat[ok], size)
        errors = {
            int(i): f"invalid coordinates lon={lon[i]}, lat={lat[i]}" for i in np.flatnonzero(~ok)
        }
        return PatchBatch(patches, ok, errors)


class BlueMarbleResampled(GroundPatchSource):
    """Blue Marble warped to a ground geometry like any other raster (so it can stand
    in for real imagery in small experiments). Patches crossing the antimeridian or
    reaching past a pole fail, as for any raster edge."""

    kind = "bmng"
    attribution = ATTRIBUTION

    def __init__(self, ground_size_m: float, pixels: int):
        super().__init__(ground_size_m, pixels)
        self._path = blue_marble().path
        self._raster: ArrayRaster | None = None

    @property
    def raster(self) -> ArrayRaster:
        if self._raster is None:  # the 44 MB image loads on first use
            image = blue_marble().image
            height, width = image.shape[:2]
            transform = Affine(360.0 / width, 0.0, -180.0, 0.0, -180.0 / height, 90.0)
            self._raster = ArrayRaster(image, transform, "EPSG:4326")
        return self._raster

    @property
    def key(self) -> str:
        return f"bmng-{file_digest(self._path)}-{self.geometry.key}"

    def to_config(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "ground_size_m": self.ground_size_m,
            "pixels": self.pixels,
            "key": self.key,
        }

    def _patch(self, lon: float, lat: float, size: int) -> np.ndarray:
        return patch_from_raster(
            self.raster, lon, lat, self.geometry.resized(size), self.min_coverage
        )
