"""Geographic bounding boxes in EPSG:4326, (lon, lat) order, antimeridian-aware.

A box with ``west > east`` crosses the antimeridian: ``BBox(170, -20, -170, -10)`` is
20 degrees wide. ``BBox(-180, -90, 180, 90)`` is the whole world.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from omnimap.core.errors import InputError

WORLD_WEST, WORLD_SOUTH, WORLD_EAST, WORLD_NORTH = -180.0, -90.0, 180.0, 90.0


def wrap_lon(lon: float) -> float:
    """Wrap a longitude into [-180, 180)."""
    return ((lon + 180.0) % 360.0) - 180.0


@dataclass(frozen=True)
class BBox:
    west: float
    south: float
    east: float
    north: float

    def __post_init__(self) -> None:
        for name in ("west", "south", "east", "north"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise InputError(f"bbox {name} must be a finite number, got {value!r}")
        if not (-180.0 <= self.west <= 180.0 and -180.0 <= self.east <= 180.0):
            raise InputError(
                f"bbox longitudes must lie in [-180, 180], got west={self.west}, east={self.east}"
            )
        if not (-90.0 <= self.south <= 90.0 and -90.0 <= self.north <= 90.0):
            raise InputError(
                f"bbox latitudes must lie in [-90, 90], got south={self.south}, north={self.north}"
            )
        if self.south >= self.north:
            raise InputError(f"bbox south ({self.south}) must be less than north ({self.north})")
        if self.west == self.east:
            raise InputError(f"bbox has zero width (west == east == {self.west})")

    @classmethod
    def parse(cls, text: str) -> BBox:
        """Parse ``"W,S,E,N"`` (the CLI's --bbox)."""
        parts = [p.strip() for p in str(text).split(",")]
        if len(parts) != 4:
            raise InputError(f"bbox must be W,S,E,N (4 numbers), got {text!r}")
        try:
            w, s, e, n = (float(p) for p in parts)
        except ValueError:
            raise InputError(f"bbox must be W,S,E,N (4 numbers), got {text!r}") from None
        return cls(w, s, e, n)

    @classmethod
    def world(cls) -> BBox:
        return cls(WORLD_WEST, WORLD_SOUTH, WORLD_EAST, WORLD_NORTH)

    @property
    def crosses_antimeridian(self) -> bool:
        return self.west > self.east

    @property
    def east_unwrapped(self) -> float:
        """East edge on a continuous axis (> 180 when the box crosses the antimeridian)."""
        return self.east + 360.0 if self.crosses_antimeridian else self.east

    @property
    def width(self) -> float:
        return self.east_unwrapped - self.west

    @property
    def height(self) -> float:
        return self.north - self.south

    @property
    def center(self) -> tuple[float, float]:
        return wrap_lon(self.west + self.width / 2.0), (self.south + self.north) / 2.0

    def contains(self, lon, lat):
        """Vectorised point-in-box test (numpy arrays or scalars)."""
        import numpy as np

        lon = np.asarray(lon, dtype=float)
        lat = np.asarray(lat, dtype=float)
        rel = np.mod(lon - self.west, 360.0)
        # A whole-world box (width 360) contains every longitude.
        in_lon = (rel <= self.width) | (self.width >= 360.0)
        return in_lon & (lat >= self.south) & (lat <= self.north)

    def buffered(self, degrees: float) -> BBox:
        """Grow the box by ``degrees`` on every side (clamped to the world)."""
        if self.width + 2 * degrees >= 360.0:
            west, east = WORLD_WEST, WORLD_EAST
        else:
            west, east = wrap_lon(self.west - degrees), wrap_lon(self.east + degrees)
            if east == -180.0:
                east = 180.0
        return BBox(
            west,
            max(WORLD_SOUTH, self.south - degrees),
            east,
            min(WORLD_NORTH, self.north + degrees),
        )

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.west, self.south, self.east, self.north)

    def __str__(self) -> str:
        return f"{self.west:g},{self.south:g},{self.east:g},{self.north:g}"
