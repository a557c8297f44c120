"""Facts about the ground at (lon, lat, local time), derived from the real layers.

Each fact is a small integer code so that samples with the same facts can be grouped
(their descriptions share meaning) and described in bulk. Thresholds are coarse on
purpose: a ~10 km cell, described as a person standing there would.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from omnimap.datasets.atlas.layers import LAKE, OCEAN, GroundLayers
from omnimap.geo import solar

# surface
SURF_OCEAN, SURF_LAND, SURF_LAKE = 0, 1, 2
# terrain (land only), from shaded-relief ruggedness
FLAT, HILLS, MOUNTAINS = 0, 1, 2
HILLS_MIN, MOUNTAINS_MIN = 9.0, 20.0
# settlement size: largest place within ~10 km, and how many places around
REMOTE, RURAL, VILLAGE, TOWN, CITY, METROPOLIS = range(6)
# time of day
NIGHT, DAWN, SUNRISE, MORNING, MIDDAY, AFTERNOON, SUNSET, DUSK, POLAR_NIGHT, MIDNIGHT_SUN = range(
    10
)
# season
WINTER, SPRING, SUMMER, AUTUMN, TROPICAL = range(5)
# snow
NO_SNOW, SEASONAL_SNOW, PERMANENT_ICE = 0, 1, 2
# coast
INLAND, COASTAL, FAR_OFFSHORE = 0, 1, 2

TROPIC_LAT = 23.44
IGBP_WATER, IGBP_SNOW_ICE = 0, 15


@dataclass
class Facts:
    """Per-sample fact codes (int8 arrays of equal length)."""

    surface: np.ndarray
    land_cover: np.ndarray
    second_cover: np.ndarray  # another class covering >= 30% nearby, or -1
    terrain: np.ndarray
    coast: np.ndarray
    settlement: np.ndarray
    time_of_day: np.ndarray  # -1 when the time is unknown
    season: np.ndarray  # -1 when the time is unknown
    snow: np.ndarray
    sea_ice: np.ndarray

    def __len__(self) -> int:
        return len(self.surface)

    def matrix(self) -> np.ndarray:
        """(N, n_facts) int8; rows are equal iff the facts are equal."""
        return np.stack([getattr(self, f.name) for f in fields(self)], axis=1).astype(np.int8)

    def take(self, index) -> Facts:
        return Facts(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


def static_facts(layers: GroundLayers, lon, lat) -> dict[str, np.ndarray]:
    """The time-independent facts of each point."""
    lon = np.asarray(lon, np.float64)
    lat = np.asarray(lat, np.float64)
    counts = layers.land_cover_counts(lon, lat, half=2)  # 5x5 window of 0.05 deg
    centre = layers.land_cover_at(lon, lat).astype(np.int8)
    lsm = layers.surface_at(lon, lat)
    surface = np.full(lon.shape, SURF_LAND, np.int8)
    surface[lsm == OCEAN] = SURF_OCEAN
    # Inland water: the lake mask, or MODIS water on what the coarse mask calls land.
    surface[(lsm == LAKE) | ((lsm != OCEAN) & (centre == IGBP_WATER))] = SURF_LAKE
    # A land pixel of MODIS inside the coarse ocean mask (small islands, coasts) is land.
    surface[(lsm == OCEAN) & (centre != IGBP_WATER)] = SURF_LAND

    land_cover = np.where(surface == SURF_LAND, centre, IGBP_WATER).astype(np.int8)
    land_cover[(surface == SURF_LAND) & (centre == IGBP_WATER)] = 16  # rare mismatch: call it bare

    share = counts / counts.sum(axis=1, keepdims=True)
    share[np.arange(len(lon)), land_cover] = 0.0
    second = share.argmax(axis=1).astype(np.int8)
    second[share.max(axis=1) < 0.3] = -1
    second[surface != SURF_LAND] = -1

    rug = layers.ruggedness_at(lon, lat)
    terrain = np.where(
        rug >= MOUNTAINS_MIN, MOUNTAINS, np.where(rug >= HILLS_MIN, HILLS, FLAT)
    ).astype(np.int8)
    terrain[surface != SURF_LAND] = FLAT

    coast_km = layers.coast_km_at(lon, lat)
    coast = np.full(lon.shape, INLAND, np.int8)
    coast[coast_km <= 15.0] = COASTAL
    coast[(surface == SURF_OCEAN) & (coast_km >= 250.0)] = FAR_OFFSHORE

    settlement = _settlement(layers.largest_place_at(lon, lat), layers.places_at(lon, lat))
    settlement[surface == SURF_OCEAN] = REMOTE
    settlement[(surface == SURF_LAND) & (land_cover == 13)] = np.maximum(
        settlement[(surface == SURF_LAND) & (land_cover == 13)], TOWN
    )
    return dict(
        surface=surface, land_cover=land_cover, second_cover=second, terrain=terrain,
        coast=coast, settlement=settlement, coast_km=coast_km,
    )  # fmt: skip


def _settlement(largest_pop: np.ndarray, n_places: np.ndarray) -> np.ndarray:
    out = np.full(largest_pop.shape, REMOTE, np.int8)
    out[n_places >= 1] = RURAL
    out[largest_pop >= 2_000] = VILLAGE
    out[largest_pop >= 20_000] = TOWN
    out[largest_pop >= 200_000] = CITY
    out[largest_pop >= 2_000_000] = METROPOLIS
    return out


def season_of(lat: np.ndarray, month: np.ndarray) -> np.ndarray:
    """Meteorological seasons (DJF is northern winter); the south is shifted by two
    seasons and the tropics have none."""
    north = np.array([WINTER] * 2 + [SPRING] * 3 + [SUMMER] * 3 + [AUTUMN] * 3 + [WINTER])
    south = (north + 2) % 4
    m = np.asarray(month) - 1
    season = np.where(np.asarray(lat) >= 0, north[m], south[m]).astype(np.int8)
    season[np.abs(lat) < TROPIC_LAT] = TROPICAL
    return season


def time_of_day(lat, day_of_year, mean_solar_hour) -> np.ndarray:
    """Time of day from the sun's elevation (apparent solar time), polar cases included."""
    hour = solar.mean_to_apparent_hour(day_of_year, mean_solar_hour)
    elev = solar.elevation_at_solar_time(lat, day_of_year, hour)
    noon = solar.noon_elevation(lat, day_of_year)
    midnight = solar.midnight_elevation(lat, day_of_year)
    morning = hour < 12.0
    out = np.full(np.shape(elev), NIGHT, np.int8)
    out[(elev >= -12.0) & morning] = DAWN
    out[(elev >= -12.0) & ~morning] = DUSK
    out[(elev >= solar.SUNRISE_ELEVATION) & morning] = SUNRISE
    out[(elev >= solar.SUNRISE_ELEVATION) & ~morning] = SUNSET
    out[(elev >= 10.0) & morning] = MORNING
    out[(elev >= 10.0) & ~morning] = AFTERNOON
    # Midday: the sun within a few degrees of its daily high, or within 1h of noon.
    out[(elev >= 10.0) & ((elev >= noon - 3.0) | (np.abs(hour - 12.0) <= 1.0))] = MIDDAY
    out[noon < solar.SUNRISE_ELEVATION] = POLAR_NIGHT
    # The sun never sets that day and it is within 3 hours of midnight.
    out[(midnight > solar.SUNRISE_ELEVATION) & (np.abs(hour - 12.0) >= 9.0)] = MIDNIGHT_SUN
    return out


def snow_of(surface, land_cover, terrain, lat, coast_km, season) -> np.ndarray:
    """Snow on the ground (ice on lakes): permanent ice from MODIS, seasonal snow from
    a simple climate rule (latitude, mountains, distance from the sea, season)."""
    alat = np.abs(lat)
    land = surface == SURF_LAND
    mountains = terrain == MOUNTAINS
    continental = coast_km >= 400.0
    winter = season == WINTER
    shoulder = (season == SPRING) | (season == AUTUMN)
    snowy = (
        (winter & ((alat >= 58) | ((alat >= 45) & continental) | (mountains & (alat >= 28))))
        | (shoulder & ((alat >= 64) | (mountains & (alat >= 42))))
        | ((season == SUMMER) & mountains & (alat >= 66))
    )
    out = np.where((surface != SURF_OCEAN) & snowy, SEASONAL_SNOW, NO_SNOW).astype(np.int8)
    out[land & (land_cover == IGBP_SNOW_ICE)] = PERMANENT_ICE
    return out


def sea_ice_of(surface, lat, season) -> np.ndarray:
    north = (lat >= 78) | ((lat >= 68) & ((season == WINTER) | (season == SPRING)))
    south = (lat <= -72) | ((lat <= -62) & ((season == WINTER) | (season == SPRING)))
    return ((surface == SURF_OCEAN) & (north | south)).astype(np.int8)


def compute_facts(layers: GroundLayers, lon, lat, month=None, day_of_year=None, hour=None) -> Facts:
    """All facts for points; pass ``month=None`` for time-free facts."""
    lon = np.asarray(lon, np.float64)
    lat = np.asarray(lat, np.float64)
    st = static_facts(layers, lon, lat)
    if month is None:
        season = np.full(lon.shape, -1, np.int8)
        tod = np.full(lon.shape, -1, np.int8)
    else:
        season = season_of(lat, month)
        tod = time_of_day(lat, day_of_year, hour)
    return Facts(
        surface=st["surface"],
        land_cover=st["land_cover"],
        second_cover=st["second_cover"],
        terrain=st["terrain"],
        coast=st["coast"],
        settlement=st["settlement"],
        time_of_day=tod,
        season=season,
        snow=snow_of(st["surface"], st["land_cover"], st["terrain"], lat, st["coast_km"], season),
        sea_ice=sea_ice_of(st["surface"], lat, season),
    )
