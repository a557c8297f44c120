"""What every imagery source shares: the batch result with per-point failures and the
base class."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from omnimap.core.errors import DataError, InputError
from omnimap.sources.warp import PatchFailure, PatchGeometry, check_point


@dataclass
class PatchBatch:
    """Patches for a batch of points; failed points have zero patches and a reason."""

    patches: np.ndarray  # (N, 3, P, P) uint8
    ok: np.ndarray  # (N,) bool
    errors: dict[int, str] = field(default_factory=dict)  # point index -> reason

    def require(self) -> np.ndarray:
        """The patches, or a DataError naming the first failed point."""
        if self.errors:
            i, reason = next(iter(sorted(self.errors.items())))
            more = f" (and {len(self.errors) - 1} more points)" if len(self.errors) > 1 else ""
            raise DataError(f"no imagery patch for point {i}: {reason}{more}")
        return self.patches


class PatchSource(ABC):
    """An overhead imagery source: uint8 RGB patches (N, 3, P, P), north-up, centred
    on points. ``key`` identifies the content (pixels and geometry) for caches;
    ``to_config`` gives the dict that ``source_from_config`` turns back into it."""

    attribution: str

    @property
    @abstractmethod
    def key(self) -> str: ...

    @property
    @abstractmethod
    def patch_size(self) -> int: ...

    @abstractmethod
    def to_config(self) -> dict[str, Any]: ...

    @abstractmethod
    def read(self, lon, lat, size: int | None = None) -> PatchBatch:
        """Patches for many points; a point that fails is recorded, not raised."""

    def patches(self, lon, lat, size: int | None = None) -> np.ndarray:
        """(N, 3, P, P) uint8 patches; DataError if any point has none."""
        return self.read(lon, lat, size).require()


class GroundPatchSource(PatchSource):
    """A source of patches ``ground_size_m`` metres and ``pixels`` pixels across, each
    warped on its own; a patch covered less than ``min_coverage`` fails."""

    def __init__(self, ground_size_m: float, pixels: int, min_coverage: float = 1.0):
        self.geometry = PatchGeometry(float(ground_size_m), int(pixels))
        if not 0.0 <= min_coverage <= 1.0:
            raise InputError(f"min_coverage must be within 0..1, got {min_coverage}")
        self.min_coverage = float(min_coverage)

    @property
    def ground_size_m(self) -> float:
        return self.geometry.ground_size_m

    @property
    def pixels(self) -> int:
        return self.geometry.pixels

    @property
    def patch_size(self) -> int:
        return self.geometry.pixels

    @abstractmethod
    def _patch(self, lon: float, lat: float, size: int) -> np.ndarray:
        """One (3, size, size) patch, or PatchFailure."""

    def read(self, lon, lat, size: int | None = None) -> PatchBatch:
        lon = np.asarray(lon, dtype=np.float64).ravel()
        lat = np.asarray(lat, dtype=np.float64).ravel()
        size = self.patch_size if size is None else int(size)
        out = np.zeros((len(lon), 3, size, size), dtype=np.uint8)
        ok = np.zeros(len(lon), dtype=bool)
        errors: dict[int, str] = {}
        for i, (x, y) in enumerate(zip(lon.tolist(), lat.tolist(), strict=True)):
            try:
                check_point(x, y)
                out[i] = self._patch(x, y, size)
                ok[i] = True
            except PatchFailure as exc:
                errors[i] = str(exc)
        return PatchBatch(out, ok, errors)
