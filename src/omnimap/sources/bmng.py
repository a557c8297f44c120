"""The built-in NASA Blue Marble NG image as a source, natively or resampled to a
ground geometry."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from rasterio.transform import Affine

from omnimap.core.digest import file_digest
from omnimap.core.errors import DataError
from omnimap.resources import packages
from omnimap.sources.base import GroundPatchSource, PatchBatch, PatchSource
from omnimap.sources.raster import ArrayRaster, patch_from_raster

ATTRIBUTION = "NASA Blue Marble: Next Generation (NASA Earth Observatory, public domain)"


@cache
def _load_rgb(path: str) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.ascontiguousarray(np.asarray(im.convert("RGB")))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read imagery {path}: {exc}") from None


class EquirectangularImage:
    """A global plate carree image (-180..180, 90..-90); patches of native pixels.

    Patches use nearest-pixel sampling on the image's own grid: longitude wraps
    around the antimeridian, latitude is clamped at the poles.
    """

    def __init__(self, path: str | Path, patch_size: int = 16, name: str = "image"):
        self.path = str(path)
        self.patch_size = int(patch_size)
        self.name = name

    @property
    def image(self) -> np.ndarray:
        return _load_rgb(self.path)

    @property
    def key(self) -> str:
        return f"{self.name}-{file_digest(self.path, bits=64)}-p{self.patch_size}"

    @property
    def degrees_per_pixel(self) -> float:
        return 360.0 / self.image.shape[1]

    def patches(self, lon, lat, size: int | None = None) -> np.ndarray:
        """(N, 3, size, size) uint8 patches centred on each (lon, lat)."""
        img = self.image
        height, width = img.shape[:2]
        size = self.patch_size if size is None else int(size)
        lon = np.asarray(lon, dtype=np.float64).ravel()
        lat = np.asarray(lat, dtype=np.float64).ravel()
        # Continuous pixel coordinates, pixel centres at integers.
        x = (lon + 180.0) * (width / 360.0) - 0.5
        y = (90.0 - lat) * (height / 180.0) - 0.5
        offsets = np.arange(size) - (size - 1) / 2.0
        cols = np.mod(np.rint(x[:, None] + offsets[None, :]).astype(np.int64), width)
        rows = np.clip(np.rint(y[:, None] + offsets[None, :]).astype(np.int64), 0, height - 1)
        out = img[rows[:, :, None], cols[:, None, :]]  # (N, size, size, 3)
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def blue_marble(patch_size: int = 16) -> EquirectangularImage:
    """The built-in overhead imagery: NASA Blue Marble NG, ~7.4 km per pixel."""
    return EquirectangularImage(packages.blue_marble(), patch_size=patch_size, name="bmng")


class BlueMarbleNative(PatchSource):
    """The built-in atlas imagery: native-pixel patches (~7.4 km per pixel)."""

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
        return f"bmng-{file_digest(self._path, bits=64)}-{self.geometry.key}"

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
