"""Numbers and commands in the README that the code determines: field sizes per
resolution, the performance row's cell count, and what the Ray example needs."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from omnimap.fields.store import DEFAULT_CHUNK
from omnimap.geo.bbox import BBox
from omnimap.geo.grid import LatLonGrid
from omnimap.geo.regions import resolve_region
from omnimap.models.checkpoint import read_config

README = (Path(__file__).resolve().parent.parent / "README.md").read_text("utf-8")


def stored_cells(grid: LatLonGrid) -> int:
    """Cells on disk: Zarr keeps edge chunks whole."""
    whole = lambda n: math.ceil(n / DEFAULT_CHUNK) * DEFAULT_CHUNK  # noqa: E731
    return whole(grid.nrows) * whole(grid.ncols)


def readme_row(label: str) -> list[str]:
    line = next(line.strip() for line in README.splitlines() if line.strip().startswith(f"| {label}"))
    return [cell.strip() for cell in line.strip("|").split("|")]


@pytest.mark.parametrize("label, grid", [
    ("`--region Europe --resolution 0.05`", lambda: LatLonGrid.from_bbox(resolve_region("Europe").bbox, 0.05, check_size=False)),
    ("world at 0.1 deg", lambda: LatLonGrid.from_bbox(BBox.world(), 0.1)),
    ("world at 0.05 deg", lambda: LatLonGrid.from_bbox(BBox.world(), 0.05, check_size=False)),
])  # fmt: skip
def test_field_sizes_in_the_readme_are_the_stored_bytes(label, grid):
    grid = grid()
    dim = int(read_config("atlas")["dim"])
    row = readme_row(label)
    cells, stored = re.fullmatch(r"([\d.]+)M \(([\d.]+)M\)", row[1]).groups()
    assert float(cells) == round(grid.size / 1e6, 2 if grid.size < 1e7 else 1)
    assert float(stored) == round(stored_cells(grid) / 1e6, 2 if grid.size < 1e7 else 1)
    per_cell = {"float16": 2 * dim, "int8": dim + 4, "float32": 4 * dim}
    for column, dtype in zip(row[2:], ("float16", "int8", "float32"), strict=True):
        assert float(column.removesuffix(" GB")) == round(stored_cells(grid) * per_cell[dtype] / 1e9, 1)


def test_the_performance_row_names_its_bbox_and_cells():
    assert "Europe at 0.05 deg (400k cells)" not in README
    row = next(line for line in README.splitlines() if line.startswith("| field build,"))
    box = re.search(r"bbox (-?[\d.]+),(-?[\d.]+),(-?[\d.]+),(-?[\d.]+) at ([\d.]+) deg", row)
    grid = LatLonGrid.from_bbox(BBox(*map(float, box.groups()[:4])), float(box.group(5)))
    assert f"{grid.ncols} x {grid.nrows} = {round(grid.size / 1000)}k cells" in row


def test_the_ray_example_says_how_to_get_ray_and_fits_any_machine():
    example = README[README.index("## At scale"):README.index("- A field (Zarr")]
    assert "'.[ray]'" in example and "--workers" not in example
