"""Countries and continents are shapes: a map, a search and a download of one has
nodata outside its polygons, and its extent is theirs."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from omnimap import api
from omnimap.geo.grid import LatLonGrid
from omnimap.geo.place import resolve_area
from omnimap.geo.regions import resolve_region

PARIS, AJACCIO = (2.35, 48.86), (8.74, 41.93)
GENOA, TURIN, GENEVA = (8.93, 44.41), (7.68, 45.07), (6.14, 46.20)
TOKYO, SAPPORO = (139.69, 35.69), (141.35, 43.06)
BUSAN, SEOUL, VLADIVOSTOK = (129.07, 35.18), (126.98, 37.57), (131.89, 43.12)
FAIRBANKS, HONOLULU, DENVER = (-147.72, 64.84), (-157.86, 21.31), (-104.99, 39.74)
WINNIPEG, MONTERREY = (-97.14, 49.90), (-100.31, 25.67)


def cell_inside(region, grid: LatLonGrid, point) -> bool:
    cell = grid.cell_of(*point)
    assert cell is not None, f"{point} is not on the grid of {region.name}"
    return bool(region.mask(grid)[cell])


def region_grid(name: str, resolution: float):
    region = resolve_region(name)
    return region, LatLonGrid.from_bbox(region.bbox, resolution, check_size=False)


def test_france_mask_excludes_liguria_piedmont_and_switzerland():
    france, grid = region_grid("France", 0.05)
    assert cell_inside(france, grid, PARIS) and cell_inside(france, grid, AJACCIO)
    for point in (GENOA, TURIN, GENEVA):
        assert not cell_inside(france, grid, point)
    # Sardinia lies south of the extent of France with Corsica.
    assert grid.cell_of(9.0, 40.5) is None


def test_japan_mask_has_no_korean_or_russian_cells():
    japan, grid = region_grid("Japan", 0.1)
    assert cell_inside(japan, grid, TOKYO) and cell_inside(japan, grid, SAPPORO)
    for point in (BUSAN, SEOUL, VLADIVOSTOK):
        assert not cell_inside(japan, grid, point)


def test_us_mask_has_alaska_and_hawaii_across_the_antimeridian():
    usa, grid = region_grid("US", 0.1)
    assert usa.bbox.crosses_antimeridian  # the Aleutians run past 180
    for point in (FAIRBANKS, HONOLULU, DENVER):
        assert cell_inside(usa, grid, point)
    for point in (WINNIPEG, MONTERREY):
        assert not cell_inside(usa, grid, point)
    mask = usa.mask(grid)
    east_of_180 = grid.lons() < 0
    assert mask[:, ~east_of_180].any() and mask[:, east_of_180].any()


@pytest.mark.parametrize("name", ["Russia", "Fiji"])
def test_antimeridian_countries_have_cells_on_both_sides(name):
    region, grid = region_grid(name, 0.1)
    mask = region.mask(grid)
    lons = grid.lons()
    assert mask[:, lons > 170].any() and mask[:, lons < -170].any()


def test_continents_are_masked_too():
    europe, grid = region_grid("Europe", 0.25)
    assert cell_inside(europe, grid, PARIS) and cell_inside(europe, grid, TURIN)
    assert not cell_inside(europe, grid, (10.0, 36.0))  # the sea south of Sicily
    assert not cell_inside(europe, grid, (30.0, 31.0))  # Egypt: Africa


def test_boxes_have_no_mask():
    assert resolve_region("Alps").mask(LatLonGrid.from_bbox(resolve_region("Alps").bbox, 1.0)) is None
    assert resolve_area("0,40,10,50").mask(LatLonGrid.from_bbox(resolve_area("0,40,10,50").bbox, 1.0)) is None


@pytest.fixture(scope="module")
def japan_map(tiny_model_dir):
    return api.zero_shot_map("forest", region="Japan", resolution=0.5, model=str(tiny_model_dir))


def test_a_map_of_japan_is_nodata_outside_japan(japan_map):
    japan = resolve_region("Japan")
    inside = japan.mask(japan_map.grid)
    assert inside.any() and (~inside).any()
    assert np.isnan(japan_map.scores[~inside]).all()
    assert np.isfinite(japan_map.scores[inside]).mean() > 0.9  # imagery may miss a coast cell
    cell = japan_map.grid.cell_of(*BUSAN)
    assert np.isnan(japan_map.scores[cell])


def test_peaks_of_a_country_map_lie_inside_it(japan_map):
    inside = resolve_region("Japan").mask(japan_map.grid)
    peaks = japan_map.peaks(k=10)
    assert len(peaks) >= 3
    assert all(inside[japan_map.grid.cell_of(p["lon"], p["lat"])] for p in peaks)


@pytest.mark.parametrize("method", ["exact", "flat"])
def test_search_hits_of_a_country_lie_inside_it(tiny_model_dir, method):
    result = api.search("forest", region="Japan", resolution=0.5, k=15, method=method,
                        model=str(tiny_model_dir))  # fmt: skip
    grid = LatLonGrid.from_bbox(resolve_region("Japan").bbox, 0.5, check_size=False)
    inside = resolve_region("Japan").mask(grid)
    assert len(result.hits) == 15
    assert all(inside[h.row, h.col] for h in result.hits)
    # The same cells as the best of the masked map.
    scores = api.zero_shot_map("forest", region="Japan", resolution=0.5,
                               model=str(tiny_model_dir)).scores  # fmt: skip
    best = np.sort(scores[np.isfinite(scores)])[::-1][:15]
    assert [h.score for h in result.hits] == pytest.approx(best.tolist(), abs=2e-3)


def test_geotiff_extent_of_the_us_is_the_union_bbox(tiny_model_dir, tmp_path):
    result = api.zero_shot_map("forest", region="US", resolution=1.0, model=str(tiny_model_dir))
    path = result.write_geotiff(tmp_path / "us.tif")
    box = resolve_region("US").bbox
    with rasterio.open(path) as src:
        west, south, east, north = src.bounds
    assert west == pytest.approx(box.west, abs=1.0) and west > 170  # the Aleutians
    assert east == pytest.approx(box.east + 360, abs=1.0)  # continuous x past 180
    assert south == pytest.approx(box.south, abs=1.0) and south < 20  # Hawaii
    assert north == pytest.approx(box.north, abs=1.0) and north > 70  # Alaska
    lons, lats = np.meshgrid(result.grid.lons(), result.grid.lats())
    mapped = np.isfinite(result.scores)
    hawaii = (lons > -161) & (lons < -154) & (lats > 18) & (lats < 23)
    alaska = (lons > -170) & (lons < -141) & (lats > 58)
    assert mapped[hawaii].any() and mapped[alaska].any()
