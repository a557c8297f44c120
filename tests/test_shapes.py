"""Country and continent shapes (Natural Earth) and their cell masks, on real places."""

import json

import numpy as np
import pytest
import shapely

from omnimap.core.errors import InputError
from omnimap.geo import shapes
from omnimap.geo.bbox import BBox
from omnimap.geo.grid import LatLonGrid
from omnimap.resources.packages import geonames_file

# (lon, lat)
PARIS = (2.35, 48.86)
BORDEAUX = (-0.58, 44.84)
AJACCIO = (8.74, 41.93)
CAGLIARI = (9.11, 39.22)
GENOA = (8.93, 44.41)
BARCELONA = (2.17, 41.39)
CAYENNE = (-52.33, 4.94)
SAINT_DENIS_REUNION = (55.45, -20.88)
TOKYO = (139.69, 35.69)
SAPPORO = (141.35, 43.06)
SEOUL = (126.98, 37.57)
BUSAN = (129.08, 35.18)
VLADIVOSTOK = (131.89, 43.12)
ANCHORAGE = (-149.86, 61.19)
HONOLULU = (-157.86, 21.31)
DENVER = (-104.99, 39.74)
TORONTO = (-79.38, 43.65)
TIJUANA = (-117.04, 32.51)
SAN_DIEGO = (-117.16, 32.72)
MOSCOW = (37.62, 55.75)
HELSINKI = (24.94, 60.17)
NOVOSIBIRSK = (82.9, 55.03)
AMGUEMA = (-178.8, 67.75)  # inland Chukotka, east of the antimeridian
LABASA = (179.39, -16.43)  # Vanua Levu, Fiji
NAIROBI = (36.82, -1.29)
MADRID = (-3.70, 40.42)
RIYADH = (46.72, 24.69)
LONGYEARBYEN = (15.63, 78.22)


def grid_for(geom, resolution):
    return LatLonGrid.from_bbox(shapes.shape_bbox(geom), resolution)


def marked(mask, grid, point):
    """True/False for the cell holding ``point``, None when the grid does not hold it."""
    cell = grid.cell_of(*point)
    return None if cell is None else bool(mask[cell])


def country_mask(code, resolution):
    geom = shapes.country_shape(code, resolution=resolution)
    grid = grid_for(geom, resolution)
    return shapes.grid_mask(geom, grid), grid


def test_france_is_metropolitan_france_without_its_neighbours():
    mask, grid = country_mask("FR", 0.05)
    assert (
        marked(mask, grid, PARIS) and marked(mask, grid, BORDEAUX) and marked(mask, grid, AJACCIO)
    )
    # Genoa and Barcelona lie inside France's box: only the mask keeps them out.
    assert marked(mask, grid, GENOA) is False
    assert marked(mask, grid, BARCELONA) is False
    assert not marked(mask, grid, CAGLIARI)
    # The overseas departments are their own ISO codes, so France's extent stays in Europe.
    bbox = shapes.shape_bbox(shapes.country_shape("FR"))
    assert -6 < bbox.west and bbox.east < 10 and 41 < bbox.south and bbox.north < 52
    assert not marked(mask, grid, CAYENNE)
    assert shapely.contains_xy(shapes.country_shape("GF"), *CAYENNE)
    assert shapely.contains_xy(shapes.country_shape("Réunion"), *SAINT_DENIS_REUNION)
    assert shapes.find_country("GF").continent == "South America"


def test_japan_excludes_korea_and_russia():
    mask, grid = country_mask("JP", 0.05)
    assert marked(mask, grid, TOKYO) and marked(mask, grid, SAPPORO)
    for place in (SEOUL, BUSAN, VLADIVOSTOK):
        assert grid.cell_of(*place) is not None  # inside the box, out of the mask
        assert marked(mask, grid, place) is False


def test_us_includes_alaska_and_hawaii_not_canada_or_mexico():
    mask, grid = country_mask("US", 0.1)
    assert marked(mask, grid, ANCHORAGE)
    assert marked(mask, grid, HONOLULU)
    assert marked(mask, grid, DENVER)
    assert marked(mask, grid, TORONTO) is False
    # The border at San Diego, on a fine grid smaller than the country.
    geom = shapes.country_shape("US", resolution=0.01)
    grid = LatLonGrid.from_bbox(BBox(-117.5, 32.2, -116.5, 33.0), 0.01)
    mask = shapes.grid_mask(geom, grid)
    assert marked(mask, grid, SAN_DIEGO)
    assert marked(mask, grid, TIJUANA) is False


@pytest.mark.parametrize("code", ["FJ", "RU", "US"])
def test_antimeridian_countries_have_short_boxes_and_cells_on_both_sides(code):
    geom = shapes.country_shape(code, resolution=0.25)
    bbox = shapes.shape_bbox(geom)
    assert bbox.crosses_antimeridian and bbox.west > bbox.east
    assert bbox.width < 180
    grid = LatLonGrid.from_bbox(bbox, 0.25)
    mask = shapes.grid_mask(geom, grid)
    x = grid.west + (np.arange(grid.ncols) + 0.5) * grid.resolution  # runs past 180
    assert mask[:, x < 180].any() and mask[:, x > 180].any()


def test_russia_and_fiji_cells_east_of_the_antimeridian():
    mask, grid = country_mask("RU", 0.25)
    assert marked(mask, grid, MOSCOW) and marked(mask, grid, AMGUEMA)
    assert marked(mask, grid, HELSINKI) is False
    mask, grid = country_mask("FJ", 0.05)
    assert marked(mask, grid, LABASA)
    x = grid.west + (np.arange(grid.ncols) + 0.5) * grid.resolution
    assert mask[:, x > 180].sum() > 10  # the Lau islands


def test_continents():
    africa = shapes.continent_shape("Africa", resolution=0.25)
    grid = grid_for(africa, 0.25)
    mask = shapes.grid_mask(africa, grid)
    assert marked(mask, grid, NAIROBI)
    assert not marked(mask, grid, MADRID)
    assert marked(mask, grid, RIYADH) is False  # inside Africa's box (Mauritius)
    europe = shapes.continent_shape("europe")
    asia = shapes.continent_shape("ASIA")
    assert shapely.contains_xy(europe, *MOSCOW) and shapely.contains_xy(europe, *PARIS)
    assert not shapely.contains_xy(europe, *NOVOSIBIRSK)
    assert shapely.contains_xy(asia, *NOVOSIBIRSK) and shapely.contains_xy(asia, *AMGUEMA)
    assert not shapely.contains_xy(asia, *MOSCOW)
    # Europe stops at the Urals; Asia runs on past the Bering Strait.
    assert not shapes.shape_bbox(europe).crosses_antimeridian
    assert shapes.shape_bbox(europe).east < 70
    assert shapes.shape_bbox(asia).crosses_antimeridian
    antarctica = shapes.shape_bbox(shapes.continent_shape("Antarctica"))
    assert (antarctica.west, antarctica.east, antarctica.south) == (-180.0, 180.0, -90.0)
    assert shapes.find_continent("north america") == "North America"
    with pytest.raises(InputError):
        shapes.continent_shape("Atlantis")


@pytest.mark.parametrize("code", ["LI", "MT", "SG", "VA", "MC"])
@pytest.mark.parametrize("resolution", [0.25, 1.0])
def test_tiny_countries_keep_a_cell(code, resolution):
    geom = shapes.country_shape(code, resolution=resolution)
    grid = LatLonGrid.from_bbox(shapes.shape_bbox(geom).buffered(2.0), resolution)
    mask = shapes.grid_mask(geom, grid)
    assert 1 <= mask.sum() <= 2
    point = shapely.point_on_surface(geom)
    row, col = np.argwhere(mask)[0]
    lon = grid.west + (col + 0.5) * resolution
    lat = grid.north - (row + 0.5) * resolution
    assert abs(lon - point.x) <= resolution and abs(lat - point.y) <= resolution


def test_norway_without_svalbard_and_bouvet():
    bbox = shapes.shape_bbox(shapes.country_shape("NO"))
    assert bbox.south > 57 and bbox.north < 72
    assert shapely.contains_xy(shapes.country_shape("SJ"), *LONGYEARBYEN)
    assert shapes.shape_bbox(shapes.country_shape("BV")).south < -54


def test_scales():
    assert [shapes.scale_for_resolution(r) for r in (0.01, 0.05, 0.1, 0.25, 0.5, 1.0)] == [
        "10m",
        "10m",
        "50m",
        "50m",
        "110m",
        "110m",
    ]
    full = shapes.country_shape("FR", scale="10m")
    counts = []
    for scale in shapes.SCALES:
        geom = shapes.country_shape("FR", scale=scale)
        counts.append(shapely.get_num_coordinates(geom))
        assert geom.is_valid and shapely.contains_xy(geom, *PARIS)
        assert abs(geom.area - full.area) < 0.01 * full.area
        assert shapely.hausdorff_distance(geom, full) <= 2 * shapes.TOLERANCE[scale] + 1e-9
    assert counts[0] > counts[1] > counts[2]
    # Every country survives the coarsest scale, with the parts it had.
    for code in ("VA", "MC", "NR", "TV", "MV"):
        coarse = shapes.country_shape(code, scale="110m")
        fine = shapes.country_shape(code, scale="10m")
        assert not coarse.is_empty
        assert shapely.get_num_geometries(coarse) == shapely.get_num_geometries(fine)
    with pytest.raises(InputError):
        shapes.country_shape("FR", scale="1m")


def test_country_lookup():
    assert shapes.find_country("fr").iso2 == "FR"
    assert shapes.find_country("FRA").iso2 == "FR"
    assert shapes.find_country("france").name == "France"
    assert shapes.find_country("Cote d'Ivoire").iso2 == "CI"
    assert shapes.find_country("United States of America").iso2 == "US"
    assert shapes.find_country("South Korea").iso2 == "KR"
    assert shapes.find_country("UK").iso2 == "GB"
    assert shapes.find_country("Kosovo").iso2 == "XK"
    assert shapes.find_country("Congo") is None  # two countries: neither
    assert shapes.find_country("Atlantis") is None
    with pytest.raises(InputError) as err:
        shapes.country_shape("Frnace")
    assert "\n" not in str(err.value) and "France" in str(err.value)


def test_every_geonames_country_has_a_shape():
    table = json.loads(geonames_file("countries.json").read_text(encoding="utf-8"))
    # AN (Netherlands Antilles) and CS (Serbia and Montenegro) no longer exist.
    codes = set(table) - {"AN", "CS"}
    assert codes <= set(shapes.countries())
    for code in ("GF", "GP", "MQ", "RE", "YT", "SJ", "BV", "BQ", "TK", "CX", "CC"):
        assert not shapes.country_shape(code).is_empty


def test_shape_bbox_takes_the_short_way_round():
    west_side = shapely.box(170.0, -20.0, 180.0, -10.0)
    east_side = shapely.box(-180.0, -20.0, -175.0, -12.0)
    bbox = shapes.shape_bbox(shapely.union(west_side, east_side))
    assert (bbox.west, bbox.south, bbox.east, bbox.north) == (170.0, -20.0, -175.0, -10.0)
    plain = shapes.shape_bbox(shapely.box(-10.0, 40.0, 5.0, 50.0))
    assert (plain.west, plain.east) == (-10.0, 5.0)
    with pytest.raises(InputError):
        shapes.shape_bbox(shapely.Polygon())
