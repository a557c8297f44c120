"""Which cells of a field a requested region covers.

A region is snapped to the field's own lattice (same resolution, same global anchor),
so its cells are field cells exactly or it is refused. On a field that spans every
longitude a region may wrap past the field's east edge, read as two column runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from omnimap.errors import InputError
from omnimap.fields.store import Field
from omnimap.geo.bbox import BBox
from omnimap.geo.grid import LatLonGrid


@dataclass(frozen=True)
class Window:
    """The output grid of a query and where its cells lie in the field."""

    grid: LatLonGrid
    row0: int  # field row of the grid's first row
    col_runs: tuple[tuple[int, int, int], ...]  # (field col0, field col1, grid col0)

    def pieces(self, field: Field) -> Iterator[tuple[slice, slice, LatLonGrid, np.ndarray]]:
        """(grid rows, grid cols, those cells as a grid, float32 embeddings (cells, D)),
        one piece per chunk touched."""
        g, r0 = self.grid, self.row0
        for f0, f1, g0 in self.col_runs:
            for a0, a1, b0, b1, o in field.tiles(r0, r0 + g.nrows, f0, f1):
                rows, cols = slice(a0 - r0, a1 - r0), slice(b0 - f0 + g0, b1 - f0 + g0)
                piece = LatLonGrid(g.resolution, g.col0 + cols.start, g.row0 + rows.start,
                                   b1 - b0, a1 - a0)  # fmt: skip
                yield rows, cols, piece, o.reshape(-1, o.shape[-1])


def whole_field(field: Field) -> Window:
    return Window(field.grid, 0, ((0, field.grid.ncols, 0),))


def window_for(field: Field, bbox: BBox) -> Window:
    """The field cells of ``bbox``; InputError if any lies outside the field. (Callers
    decide how many cells they can take.)"""
    fg = field.grid
    grid = LatLonGrid.from_bbox(bbox, fg.resolution, check_size=False)
    world_cols = math.ceil(360.0 / fg.resolution - 1e-9)
    row0 = grid.row0 - fg.row0
    col0 = (grid.col0 - fg.col0) % world_cols
    wraps = fg.ncols >= world_cols  # the field spans every longitude
    inside_rows = 0 <= row0 and row0 + grid.nrows <= fg.nrows
    if not inside_rows or not (wraps or col0 + grid.ncols <= fg.ncols):
        w, s, e, n = fg.bounds
        raise InputError(
            f"region {bbox} is not inside field {field.path}, which covers "
            f"{w:g},{s:g},{e:g},{n:g} at {fg.resolution:g} deg"
        )
    first = min(grid.ncols, fg.ncols - col0)
    runs = [(col0, col0 + first, 0)]
    if first < grid.ncols:  # continues from the field's first column
        runs.append((0, grid.ncols - first, first))
    return Window(grid, row0, tuple(runs))
