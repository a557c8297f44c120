"""Regular lon/lat grids snapped to one global lattice.

Cells are ``resolution`` degrees square and aligned to the lattice anchored at
(-180, 90), so two overlapping regions at the same resolution share cell ids (and
cached embeddings). Cell centres are returned in [-180, 180); the raster transform
keeps a continuous x axis, so a grid crossing the antimeridian runs past 180.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from omnimap.core.errors import InputError
from omnimap.geo.bbox import BBox

# Largest grid a single map may have. The output alone is 4 bytes a cell and
# rendering holds a few copies; 30M cells (the world at ~0.04 deg) keeps that
# well under the 4 GB a map may use. Override with OMNIMAP_MAX_CELLS.
DEFAULT_MAX_CELLS = 30_000_000
_EPS = 1e-9


def max_cells() -> int:
    raw = os.environ.get("OMNIMAP_MAX_CELLS")
    if raw is None:
        return DEFAULT_MAX_CELLS
    try:
        return int(raw)
    except ValueError:
        raise InputError(f"OMNIMAP_MAX_CELLS must be an integer, got {raw!r}") from None


@dataclass(frozen=True)
class LatLonGrid:
    resolution: float
    col0: int  # first column on the global lattice (may exceed 360/res when wrapping)
    row0: int  # first row, counted from the north pole
    ncols: int
    nrows: int

    @classmethod
    def from_bbox(cls, bbox: BBox, resolution: float, *, check_size: bool = True) -> LatLonGrid:
        if not (isinstance(resolution, int | float) and math.isfinite(resolution)):
            raise InputError(f"resolution must be a number of degrees, got {resolution!r}")
        if not (0.001 <= resolution <= 10.0):
            raise InputError(f"resolution must be between 0.001 and 10 degrees, got {resolution}")
        col0 = math.floor((bbox.west + 180.0) / resolution + _EPS)
        col1 = math.ceil((bbox.east_unwrapped + 180.0) / resolution - _EPS)
        row0 = math.floor((90.0 - bbox.north) / resolution + _EPS)
        row1 = math.ceil((90.0 - bbox.south) / resolution - _EPS)
        # Never wrap onto the same longitudes twice, never run past a pole.
        world_cols = math.ceil(360.0 / resolution - _EPS)
        ncols = max(1, min(col1 - col0, world_cols))
        row1 = min(row1, math.ceil(180.0 / resolution - _EPS))
        nrows = max(1, row1 - row0)
        grid = cls(float(resolution), col0, row0, ncols, nrows)
        if check_size and grid.size > max_cells():
            raise InputError(
                f"grid of {grid.nrows} x {grid.ncols} = {grid.size:,} cells is larger than the "
                f"limit of {max_cells():,} cells; use a coarser --resolution or a smaller region"
            )
        return grid

    @property
    def shape(self) -> tuple[int, int]:
        return (self.nrows, self.ncols)

    @property
    def size(self) -> int:
        return self.nrows * self.ncols

    @property
    def west(self) -> float:
        return -180.0 + self.col0 * self.resolution

    @property
    def north(self) -> float:
        return 90.0 - self.row0 * self.resolution

    @property
    def east(self) -> float:
        return self.west + self.ncols * self.resolution

    @property
    def south(self) -> float:
        return max(-90.0, self.north - self.nrows * self.resolution)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) on the continuous x axis of the raster."""
        return (self.west, self.north - self.nrows * self.resolution, self.east, self.north)

    @property
    def transform(self):
        from rasterio.transform import from_origin

        return from_origin(self.west, self.north, self.resolution, self.resolution)

    @property
    def key(self) -> str:
        """Stable identifier of the grid (used in cache keys)."""
        return f"r{self.resolution:.9g}_c{self.col0}_r{self.row0}_{self.ncols}x{self.nrows}"

    def lons(self) -> np.ndarray:
        """Cell-centre longitudes of the columns, wrapped into [-180, 180)."""
        x = -180.0 + (self.col0 + np.arange(self.ncols) + 0.5) * self.resolution
        return ((x + 180.0) % 360.0) - 180.0

    def lats(self) -> np.ndarray:
        """Cell-centre latitudes of the rows, north to south."""
        y = 90.0 - (self.row0 + np.arange(self.nrows) + 0.5) * self.resolution
        return np.clip(y, -90.0, 90.0)

    def centers(
        self, row_start: int = 0, row_stop: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Flattened (lon, lat) of the cells in rows [row_start, row_stop), row-major."""
        row_stop = self.nrows if row_stop is None else row_stop
        lats = self.lats()[row_start:row_stop]
        lon, lat = np.meshgrid(self.lons(), lats)
        return lon.ravel(), lat.ravel()

    def row_chunks(self, max_cells_per_chunk: int) -> Iterator[tuple[int, int]]:
        """Row ranges [start, stop) holding at most ``max_cells_per_chunk`` cells each."""
        rows = max(1, max_cells_per_chunk // max(1, self.ncols))
        for start in range(0, self.nrows, rows):
            yield start, min(self.nrows, start + rows)

    def cell_of(self, lon: float, lat: float) -> tuple[int, int] | None:
        """(row, col) of the cell holding a point, or None if outside the grid."""
        col = math.floor(((lon - self.west) % 360.0) / self.resolution)
        row = math.floor((self.north - lat) / self.resolution)
        if 0 <= row < self.nrows and 0 <= col < self.ncols:
            return row, col
        return None
