"""Overhead imagery sources: square patches centred on points.

Every source returns uint8 patches shaped (N, C, P, P) and has a ``key`` that
identifies its content (used in cache keys), so a changed image never serves stale
embeddings.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Protocol

import numpy as np
import xxhash
from PIL import Image

from omnimap.data import resources
from omnimap.errors import DataError


class ImagerySource(Protocol):
    key: str
    patch_size: int

    def patches(self, lon: np.ndarray, lat: np.ndarray, size: int | None = None) -> np.ndarray: ...


@cache
def _load_rgb(path: str) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.ascontiguousarray(np.asarray(im.convert("RGB")))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read imagery {path}: {exc}") from None


@cache
def _file_digest(path: str) -> str:
    h = xxhash.xxh3_64()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
        return f"{self.name}-{_file_digest(self.path)}-p{self.patch_size}"

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
    return EquirectangularImage(resources.blue_marble(), patch_size=patch_size, name="bmng")
