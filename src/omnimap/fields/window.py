"""Which cells of a field a requested grid covers.

A grid is on the field's lattice when its resolution is the field's, or a whole
multiple ``k`` of it: both are anchored at (-180, 90), so a coarse cell is exactly a
k x k block of field cells, and its time-free part o is the block's mean (o is linear
before the normalisation; server tiles at low zoom use this). On a field that spans
every longitude a grid may wrap past the field's east edge, read as two column runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from omnimap.core.errors import InputError
from omnimap.fields.store import Field
from omnimap.geo.grid import LatLonGrid

_EPS = 1e-9


@dataclass(frozen=True)
class Window:
    """A grid and where its cells lie in the field (in field cells, ``factor`` to a
    grid cell along each axis)."""

    grid: LatLonGrid
    factor: int
    row0: int  # field row of the grid's first row
    col_runs: tuple[tuple[int, int, int], ...]  # (field col0, field col1, grid col0)

    def pieces(self, field: Field) -> Iterator[tuple[slice, slice, LatLonGrid, np.ndarray]]:
        """(grid rows, grid cols, those cells as a grid, o (cells, D)) per chunk piece;
        only the chunks the window touches are read. o keeps the stored float dtype
        (float16 fields stay float16) unless blocks are averaged."""
        g, k, r0 = self.grid, self.factor, self.row0
        field_rows = (r0, min(r0 + g.nrows * k, field.grid.nrows))
        for f0, f1, g0 in self.col_runs:
            if k == 1:
                for a0, a1, b0, b1, o in field.tiles(*field_rows, f0, f1):
                    rows, cols = slice(a0 - r0, a1 - r0), slice(b0 - f0 + g0, b1 - f0 + g0)
                    yield rows, cols, self._piece(rows, cols), o.reshape(-1, o.shape[-1])
            else:
                yield from self._block_means(field, field_rows, f0, f1, g0)

    def _piece(self, rows: slice, cols: slice) -> LatLonGrid:
        g = self.grid
        return LatLonGrid(g.resolution, g.col0 + cols.start, g.row0 + rows.start,
                          cols.stop - cols.start, rows.stop - rows.start)  # fmt: skip

    def _block_means(self, field: Field, field_rows, f0: int, f1: int, g0: int):
        """Mean o of each k x k block, over the field cells that exist (edge blocks
        of a field smaller than the grid average what they hold)."""
        k, r0, g = self.factor, self.row0, self.grid
        n_rows, n_cols = g.nrows, -(-(f1 - f0) // k)
        total = np.zeros((n_rows, n_cols, field.dim), np.float32)
        count = np.zeros((n_rows, n_cols, 1), np.float32)
        for a0, a1, b0, b1, o in field.tiles(*field_rows, f0, f1):
            rr = (np.arange(a0, a1) - r0) // k
            cc = (np.arange(b0, b1) - f0) // k
            np.add.at(total, (rr[:, None], cc[None, :]), o.astype(np.float32))
            np.add.at(count, (rr[:, None], cc[None, :]), 1.0)
        rows, cols = slice(0, n_rows), slice(g0, g0 + n_cols)
        mean = (total / np.maximum(count, 1.0)).reshape(-1, field.dim)
        yield rows, cols, self._piece(rows, cols), mean


def window_for(field: Field, grid: LatLonGrid) -> Window | None:
    """The field cells of ``grid``, or None when the grid is not on the field's
    lattice (another resolution); InputError if it reaches outside the field."""
    fg = field.grid
    factor = grid.resolution / fg.resolution
    k = round(factor)
    if k < 1 or abs(factor - k) > 1e-6 * k:
        return None
    world_cols = math.ceil(360.0 / fg.resolution - _EPS)
    row0 = grid.row0 * k - fg.row0
    col0 = (grid.col0 * k - fg.col0) % world_cols
    wraps = fg.ncols >= world_cols  # the field spans every longitude
    need_cols = grid.ncols * k
    inside_rows = 0 <= row0 and row0 + grid.nrows * k <= fg.nrows + (k - 1)
    if not inside_rows or not (wraps or col0 + need_cols <= fg.ncols + (k - 1)):
        w, s, e, n = fg.bounds
        raise InputError(
            f"region {grid.west:g},{grid.south:g},{grid.east:g},{grid.north:g} is not inside "
            f"field {field.path}, which covers {w:g},{s:g},{e:g},{n:g} at {fg.resolution:g} deg"
        )
    first = min(need_cols, fg.ncols - col0)
    runs = [(col0, col0 + first, 0)]
    if first < need_cols and wraps:  # continues from the field's first column
        runs.append((0, need_cols - first, first // k))
    return Window(grid, k, row0, tuple(runs))


def inside_parts(field: Field, grid: LatLonGrid) -> list[tuple[LatLonGrid, slice, slice]]:
    """(sub-grid, rows, cols) of the runs of ``grid`` that lie in the field (a grid on
    the field's lattice; up to two runs when the field crosses the grid's edge)."""
    fg = field.grid
    k = round(grid.resolution / fg.resolution)
    top = max(0, -(-fg.row0 // k) - grid.row0)
    bottom = min(grid.nrows, (fg.row0 + fg.nrows - 1) // k - grid.row0 + 1)
    if top >= bottom:
        return []
    world = round(360.0 / grid.resolution)
    if fg.ncols * fg.resolution >= 360.0 - _EPS:
        runs = [(0, grid.ncols)]
    else:
        first, stop = -(-fg.col0 // k), (fg.col0 + fg.ncols - 1) // k + 1
        inside = (grid.col0 + np.arange(grid.ncols) - first) % world < stop - first
        edges = np.flatnonzero(np.diff(np.concatenate([[0], inside.astype(np.int8), [0]])))
        runs = list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))
    return [
        (LatLonGrid(grid.resolution, grid.col0 + a, grid.row0 + top, b - a, bottom - top),
         slice(top, bottom), slice(a, b))
        for a, b in runs
    ]  # fmt: skip
