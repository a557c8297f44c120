"""Geo maths: bboxes across the antimeridian, grids at the poles, the sun, local time."""

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from omnimap.core.errors import InputError
from omnimap.geo import solar
from omnimap.geo.bbox import BBox, wrap_lon
from omnimap.geo.grid import LatLonGrid
from omnimap.geo.timefeat import When, local_times, metadata_features, time_features

# -- bboxes -------------------------------------------------------------------------


def test_bbox_parse_and_width():
    b = BBox.parse(" -10, 35 ,30,60")
    assert b.as_tuple() == (-10, 35, 30, 60)
    assert b.width == 40 and b.height == 25 and not b.crosses_antimeridian


def test_bbox_across_antimeridian():
    b = BBox.parse("170,-20,-170,-10")
    assert b.crosses_antimeridian and b.width == pytest.approx(20)
    assert b.center == (-180.0, -15.0)
    inside = b.contains([175, -175, 180, -180, 0, 169.9], [-15] * 6)
    assert inside.tolist() == [True, True, True, True, False, False]


def test_world_bbox_contains_everything():
    w = BBox.world()
    assert w.contains([-180, 0, 179.999, 180], [-90, 0, 45, 90]).all()


@pytest.mark.parametrize(
    "text",
    [
        "1,2,3",
        "a,b,c,d",
        "0,10,10,5",
        "0,-91,10,10",
        "-181,0,10,10",
        "5,0,5,10",
        "nan,0,1,1",
        "0,0,inf,1",
    ],
)
def test_bad_bbox_is_an_input_error(text):
    with pytest.raises(InputError):
        BBox.parse(text)


def test_wrap_lon():
    assert [wrap_lon(x) for x in (180, -180, 190, -190, 540)] == [-180, -180, -170, 170, -180]


def test_buffered_box_wraps_and_clamps():
    b = BBox(175, 85, 179, 89).buffered(2)
    assert b.crosses_antimeridian and b.north == 90 and b.south == 83


# -- grids --------------------------------------------------------------------------


def test_grid_snaps_to_global_lattice():
    g = LatLonGrid.from_bbox(BBox(5.01, 43.49, 16.49, 48.51), 0.25)
    assert (g.west, g.north) == (5.0, 48.75)
    assert g.east >= 16.49 and g.south <= 43.49
    # The same cells for an overlapping box: shared cache entries.
    h = LatLonGrid.from_bbox(BBox(5.1, 43.6, 6.0, 44.0), 0.25)
    assert (h.west - g.west) / 0.25 == pytest.approx(round((h.west - g.west) / 0.25))


def test_grid_across_antimeridian_has_continuous_transform_and_wrapped_centres():
    g = LatLonGrid.from_bbox(BBox(170, -20, -170, -10), 0.5)
    assert g.shape == (20, 40)
    assert g.bounds == (170.0, -20.0, 190.0, -10.0)
    lons = g.lons()
    assert lons[0] == pytest.approx(170.25) and lons[-1] == pytest.approx(-170.25)
    assert np.all((lons >= -180) & (lons < 180))
    assert g.cell_of(-175.1, -15) == (10, 29)


def test_world_grid_and_poles():
    g = LatLonGrid.from_bbox(BBox.world(), 0.25)
    assert g.shape == (720, 1440)
    lats = g.lats()
    assert lats[0] == pytest.approx(89.875) and lats[-1] == pytest.approx(-89.875)
    polar = LatLonGrid.from_bbox(BBox(-180, 80, 180, 90), 1.0)
    assert polar.shape == (10, 360) and polar.lats().max() < 90


def test_grid_too_large_names_count_and_limit(monkeypatch):
    monkeypatch.setenv("OMNIMAP_MAX_CELLS", "1000")
    with pytest.raises(InputError, match=r"1,036,800 cells .* limit of 1,000"):
        LatLonGrid.from_bbox(BBox.world(), 0.25)


@pytest.mark.parametrize("res", [0, -1, 20, float("nan")])
def test_bad_resolution(res):
    with pytest.raises(InputError):
        LatLonGrid.from_bbox(BBox.world(), res)


def test_row_chunks_cover_grid_once():
    g = LatLonGrid.from_bbox(BBox(0, 0, 10, 10), 0.1)
    chunks = list(g.row_chunks(1000))
    assert chunks[0] == (0, 10) and chunks[-1][1] == g.nrows
    assert sum(b - a for a, b in chunks) == g.nrows


# -- the sun -------------------------------------------------------------------------


def test_noon_elevation_at_summer_solstice_in_london():
    # 90 - 51.48 + 23.44 = 61.96 degrees
    doy = datetime(2024, 6, 21).timetuple().tm_yday
    assert solar.noon_elevation(51.48, doy) == pytest.approx(61.96, abs=0.15)


def test_equinox_sun_at_the_equator():
    doy = datetime(2024, 3, 20).timetuple().tm_yday
    assert solar.elevation_at_solar_time(0.0, doy, 12.0) == pytest.approx(90, abs=0.5)
    assert solar.elevation_at_solar_time(0.0, doy, 6.0) == pytest.approx(0, abs=0.5)
    assert solar.elevation_at_solar_time(0.0, doy, 0.0) == pytest.approx(-90, abs=0.5)


def test_polar_night_and_midnight_sun():
    dec = datetime(2024, 12, 21).timetuple().tm_yday
    jun = datetime(2024, 6, 21).timetuple().tm_yday
    assert solar.noon_elevation(80.0, dec) < solar.SUNRISE_ELEVATION  # the sun never rises
    assert solar.midnight_elevation(80.0, jun) > 0  # it never sets
    assert solar.midnight_elevation(-80.0, dec) > 0  # and the reverse in the south


def test_declination_extremes():
    assert solar.declination(172) == pytest.approx(23.44, abs=0.1)
    assert solar.declination(355) == pytest.approx(-23.44, abs=0.1)


def test_equation_of_time_matches_almanac():
    # Almanac values: about -14.2 min on 12 Feb, +16.4 min on 3 Nov.
    assert solar.equation_of_time(43) == pytest.approx(-14.2, abs=0.3)
    assert solar.equation_of_time(307) == pytest.approx(16.4, abs=0.3)


def test_sun_elevation_at_utc_instant():
    # 2024-06-21 12:00 UTC: the sun is high over Greenwich, below the horizon in Hawaii.
    doy = 173
    elev = solar.elevation_utc(np.array([0.0, -157.8]), np.array([51.48, 21.3]), doy, 12.0)
    assert elev[0] == pytest.approx(61.9, abs=0.6)
    assert elev[1] < -10


# -- time ----------------------------------------------------------------------------


def test_naive_when_is_local_solar_time_everywhere():
    w = When.parse("2024-01-15T09:00")
    lt = local_times(w, np.array([-170.0, 0.0, 170.0]))
    assert lt.hour.tolist() == [9, 9, 9] and lt.day.tolist() == [15, 15, 15]
    assert w.is_local_solar and w.key == "local-20240115T090000"


def test_aware_when_shifts_with_longitude_and_crosses_dates():
    w = When.parse("2024-01-01T00:30+00:00")
    lt = local_times(w, np.array([-15.0, 0.0, 90.0, 179.0]))
    assert lt.hour.tolist() == pytest.approx([23.5, 0.5, 6.5, 12.4333], abs=1e-3)
    assert lt.year.tolist() == [2023, 2024, 2024, 2024]
    assert lt.month.tolist() == [12, 1, 1, 1] and lt.day.tolist() == [31, 1, 1, 1]
    assert lt.day_of_year.tolist() == [365, 1, 1, 1]
    assert When.parse("2024-01-01T01:30+01:00").key == w.key


@pytest.mark.parametrize("text", ["", "yesterday", "2024-13-01", "2024-02-30T10:00", "1800-01-01"])
def test_bad_dates(text):
    with pytest.raises(InputError):
        When.parse(text)


def test_time_features_are_sat2cap_values():
    f = time_features(2015, 12, 31, 23)
    assert f.shape == (8,)
    # year 2015 -> angle 0; month 12 -> 2 pi; day 31 -> 2 pi; hour 23 -> 2 pi
    np.testing.assert_allclose(f, [0, 1, 0, 1, 0, 1, 0, 1], atol=1e-6)


def test_metadata_features_location_and_unknown_time():
    m = metadata_features(np.array([90.0]), np.array([45.0]), None)
    np.testing.assert_allclose(
        m[0, :4], [1, 0, math.sin(math.pi / 2), math.cos(math.pi / 2)], atol=1e-6
    )
    assert not m[0, 4:].any()  # unknown time: zeros, unlike any real angle
    lt = local_times(When(datetime(2020, 6, 1, 12, tzinfo=UTC)), np.array([0.0]))
    full = metadata_features(np.array([0.0]), np.array([0.0]), lt)
    pairs = full[0, 4:].reshape(4, 2)
    np.testing.assert_allclose((pairs**2).sum(1), 1.0, atol=1e-6)
