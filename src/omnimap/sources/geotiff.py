"""Local GeoTIFF / COG imagery in any CRS."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from omnimap.core.digest import file_digest
from omnimap.core.errors import DataError, InputError
from omnimap.sources.base import GroundPatchSource
from omnimap.sources.raster import patch_from_raster
from omnimap.sources.warp import PatchFailure


def _default_bands(ds) -> tuple[int, int, int]:
    interp = list(ds.colorinterp)
    rgb = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
    if all(c in interp for c in rgb):
        return tuple(interp.index(c) + 1 for c in rgb)
    return (1, 2, 3) if ds.count >= 3 else (1, 1, 1)


class GeoTiffSource(GroundPatchSource):
    """Patches warped out of a local GeoTIFF (or COG), reading only each patch's window.

    ``bands``: three 1-based band numbers for R, G, B (default: the bands tagged red,
    green, blue, else 1-3, else band 1 as grey). Rasters that are not uint8 need
    ``rescale=(low, high)``: values are mapped linearly so low -> 0 and high -> 255.
    A point whose patch is covered less than ``min_coverage`` (outside the raster,
    at its edge, or on nodata) fails.
    """

    kind = "geotiff"

    def __init__(
        self,
        path: str | Path,
        ground_size_m: float = 500.0,
        pixels: int = 224,
        *,
        bands: tuple[int, int, int] | None = None,
        rescale: tuple[float, float] | None = None,
        min_coverage: float = 1.0,
        attribution: str | None = None,
    ):
        super().__init__(ground_size_m, pixels, min_coverage)
        self.path = Path(path).resolve()
        self.rescale = None if rescale is None else (float(rescale[0]), float(rescale[1]))
        if self.rescale is not None and not self.rescale[1] > self.rescale[0]:
            raise InputError(f"rescale needs low < high, got {self.rescale}")
        self._ds = self._open()
        self.crs, self.transform = self._ds.crs, self._ds.transform
        self.width, self.height = self._ds.width, self._ds.height
        self.bands = tuple(int(b) for b in bands) if bands else _default_bands(self._ds)
        if len(self.bands) != 3 or not all(1 <= b <= self._ds.count for b in self.bands):
            raise InputError(f"bands must be three of 1..{self._ds.count}, got {self.bands}")
        dtype = self._ds.dtypes[self.bands[0] - 1]
        if dtype != "uint8" and self.rescale is None:
            raise InputError(
                f"{self.path.name} holds {dtype} values: give rescale=(low, high) to map them to 0..255"
            )
        tags = self._ds.tags()
        self.attribution = (
            attribution or tags.get("TIFFTAG_COPYRIGHT") or f"Imagery: {self.path.name}"
        )
        self._digest = file_digest(self.path, bits=64)

    def _open(self):
        if not self.path.is_file():
            raise DataError(f"imagery file not found: {self.path}")
        try:
            with warnings.catch_warnings():  # reported below as a DataError
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                ds = rasterio.open(self.path)
        except RasterioError as exc:
            raise DataError(f"cannot read imagery {self.path}: {exc}") from None
        if ds.crs is None or ds.transform.is_identity:
            ds.close()
            raise DataError(f"{self.path} is not georeferenced (no CRS or geotransform)")
        if not ds.transform.is_rectilinear:
            ds.close()
            raise DataError(f"{self.path} has a rotated grid; warp it north-up first (gdalwarp)")
        return ds

    @property
    def key(self) -> str:
        parts = [f"geotiff-{self._digest}", self.geometry.key, "b" + "".join(map(str, self.bands))]
        if self.rescale is not None:
            parts.append(f"r{self.rescale[0]:g}_{self.rescale[1]:g}")
        return "-".join(parts)

    def to_config(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "path": str(self.path),
            "ground_size_m": self.ground_size_m,
            "pixels": self.pixels,
            "bands": list(self.bands),
            "rescale": None if self.rescale is None else list(self.rescale),
            "min_coverage": self.min_coverage,
            "attribution": self.attribution,
            "key": self.key,
        }

    def read_window(self, window: Window, out_shape: tuple[int, int]):
        try:
            data = self._ds.read(
                self.bands, window=window, out_shape=(3, *out_shape), resampling=Resampling.average
            )
            valid = self._ds.dataset_mask(window=window, out_shape=out_shape) > 0
        except RasterioError as exc:
            raise PatchFailure(f"cannot read {self.path.name}: {exc}") from None
        if self.rescale is not None:
            low, high = self.rescale
            scaled = (data.astype(np.float32) - low) * (255.0 / (high - low))
            data = np.clip(np.rint(scaled), 0, 255)
        return data.astype(np.uint8), valid

    def _patch(self, lon: float, lat: float, size: int) -> np.ndarray:
        geometry = self.geometry.resized(size)
        return patch_from_raster(self, lon, lat, geometry, self.min_coverage)

    def close(self) -> None:
        self._ds.close()
