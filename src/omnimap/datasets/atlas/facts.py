"""Facts about the ground at (lon, lat, local time), derived from the real layers.

The climate facts (season, warmth, rain, snow, sea ice) come from the ERA5 monthly
normals at the place and date, so seasons follow each place's own annual cycle (no
line at the tropics) and the sea has no "winter" unless the air over it is cold.

Each fact is a small integer code so that samples with the same facts can be grouped
(their descriptions share meaning) and described in bulk. Thresholds are coarse on
purpose: a ~10 km cell, described as a person standing there would.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from omnimap.datasets.atlas.layers import LAKE, OCEAN, GroundLayers
from omnimap.geo import solar
from omnimap.resources import climate

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
# season, from the local annual temperature cycle (NO_SEASON: it barely changes)
WINTER, SPRING, SUMMER, AUTUMN, NO_SEASON = range(5)
THERMAL_SEASONS_C = 3.5  # half the warmest-coldest monthly range needed for seasons
COLD_SEA_C = 6.0  # "winter" at sea only when the air over it is this cold or colder
# how warm it feels at the hour
BITTER, FREEZING, FROSTY, CHILLY, MILD, WARM, HOT, SCORCHING = range(8)
# rain at that time of year
ARID, LITTLE_RAIN, USUAL_RAIN, RAINY, DELUGE, DRY_SEASON, MONSOON = range(7)
# height above sea level (land only)
LOWLAND, UPLAND, HIGH_ALTITUDE, EXTREME_ALTITUDE = range(4)
SNOW_LIES_C = -1.0  # daily mean temperature at or below which snow lies
SEA_ICE_C = -4.0  # monthly mean air temperature over the sea marking pack ice
# snow
NO_SNOW, SEASONAL_SNOW, PERMANENT_ICE = 0, 1, 2
# coast
INLAND, COASTAL, FAR_OFFSHORE = 0, 1, 2

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
    altitude: np.ndarray
    warmth: np.ndarray  # -1 when the time is unknown
    wetness: np.ndarray  # -1 when the time is unknown

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


@dataclass
class Climate:
    """The climate there and then: the day's mean temperature, the temperature at the
    hour, the precipitation rate, and the local annual cycle it sits in."""

    temperature_c: np.ndarray  # daily mean at the date (months interpolated)
    hour_temperature_c: np.ndarray  # with a simple day/night swing added
    trend_c: np.ndarray  # change over one month around the date (>0: warming up)
    precip_mm_day: np.ndarray
    annual_mean_c: np.ndarray
    half_range_c: np.ndarray  # (warmest - coldest month) / 2
    annual_precip_mm_day: np.ndarray
    seasonality: np.ndarray  # Walsh & Lawler index, 0 even .. >1 monsoonal


def climate_at(layers: GroundLayers, lon, lat, surface, day_of_year, hour) -> Climate:
    """Climate facts at points, dates (day of year, 1-based) and local solar hours."""
    normals = layers.climate
    month = climate.month_of_day_of_year(np.asarray(day_of_year) + np.asarray(hour) / 24.0)
    cycle = normals.annual_cycle(lon, lat)
    temps = cycle.monthly_temperature_c
    t = normals.temperature_c(lon, lat, month)
    trend = normals.temperature_c(lon, lat, month + 0.5) - normals.temperature_c(lon, lat, month - 0.5)
    p = normals.precipitation_mm_day(lon, lat, month)
    # Day/night swing around the daily mean, peaking at 15:00: wide over dry land, a
    # few degrees over moist land, little at sea (typical diurnal ranges).
    # The swing shrinks with a low noon sun (a polar winter day barely warms).
    swing = np.where(surface == SURF_OCEAN, 0.5, np.where(p < 1.0, 7.0, 4.0))
    sun = np.clip(np.sin(np.radians(solar.noon_elevation(lat, day_of_year))), 0.15, 1.0)
    swing = swing * sun
    at_hour = t + swing * np.cos(2 * np.pi * (np.asarray(hour) - 15.0) / 24.0)
    return Climate(
        temperature_c=t, hour_temperature_c=at_hour, trend_c=trend, precip_mm_day=p,
        annual_mean_c=cycle.mean_temperature_c, half_range_c=(temps.max(-1) - temps.min(-1)) / 2,
        annual_precip_mm_day=cycle.annual_precip_mm / 365.2425, seasonality=cycle.seasonality_index,
    )  # fmt: skip


def season_from_climate(c: Climate, surface) -> np.ndarray:
    """Seasons from the local annual cycle, not from the hemisphere: where the monthly
    means swing by at least THERMAL_SEASONS_C around the year, winter is the cold third
    of the cycle, summer the warm third, spring and autumn the warming and cooling
    thirds in between; elsewhere there is no thermal season (NO_SEASON: wet and dry
    seasons are told by the rain). At sea only a cold winter counts as a season."""
    anomaly = c.temperature_c - c.annual_mean_c
    third = 0.5 * c.half_range_c
    season = np.where(c.trend_c > 0, SPRING, AUTUMN).astype(np.int8)
    season[anomaly <= -third] = WINTER
    season[anomaly >= third] = SUMMER
    season[c.half_range_c < THERMAL_SEASONS_C] = NO_SEASON
    sea = surface == SURF_OCEAN
    season[sea & ~((season == WINTER) & (c.temperature_c <= COLD_SEA_C))] = NO_SEASON
    return season


def warmth_of(c: Climate, surface, tod) -> np.ndarray:
    """How warm or cold it feels at that hour (bands of the hour's temperature)."""
    t = c.hour_temperature_c
    out = np.full(t.shape, MILD, np.int8)
    out[t < 10.0] = CHILLY
    out[t < -3.0] = FREEZING
    out[t < -18.0] = BITTER
    out[t >= 19.0] = WARM
    out[t >= 27.0] = HOT
    out[t >= 34.0] = SCORCHING
    # Frost: ground near freezing in the cold hours, on land.
    cold_hours = np.isin(tod, (NIGHT, DAWN, SUNRISE, MORNING))
    out[(surface != SURF_OCEAN) & cold_hours & (t >= -3.0) & (t < 2.0)] = FROSTY
    return out


def wetness_of(c: Climate) -> np.ndarray:
    """Rain (or snowfall) at that time of year, against the place's own rhythm."""
    p, annual = c.precip_mm_day, c.annual_precip_mm_day
    ratio = p / np.maximum(annual, 1e-3)
    out = np.full(p.shape, USUAL_RAIN, np.int8)
    out[p < 0.8] = LITTLE_RAIN
    out[p >= 3.0] = RAINY
    out[p >= 7.0] = DELUGE
    seasonal = c.seasonality >= 0.6
    out[seasonal & (ratio < 0.35) & (annual >= 0.7)] = DRY_SEASON
    out[seasonal & (ratio >= 1.7) & (p >= 5.0)] = MONSOON
    out[(annual < 0.6) & (p < 0.8)] = ARID
    return out


def altitude_of(metres, surface) -> np.ndarray:
    out = np.full(np.shape(metres), LOWLAND, np.int8)
    out[metres >= 1000.0] = UPLAND
    out[metres >= 2000.0] = HIGH_ALTITUDE
    out[metres >= 3500.0] = EXTREME_ALTITUDE
    out[surface != SURF_LAND] = LOWLAND
    return out


def snow_of(surface, land_cover, c: Climate) -> np.ndarray:
    """Snow on the ground (ice on lakes): permanent ice from MODIS, seasonal snow where
    the day's mean temperature is below freezing (snow lies once the days stay cold)."""
    land = surface == SURF_LAND
    out = np.where((surface != SURF_OCEAN) & (c.temperature_c <= SNOW_LIES_C), SEASONAL_SNOW, NO_SNOW)
    out = out.astype(np.int8)
    out[land & (land_cover == IGBP_SNOW_ICE)] = PERMANENT_ICE
    return out


def sea_ice_of(surface, lat, c: Climate) -> np.ndarray:
    """Pack ice: air over the sea far below freezing (open water keeps it near 0 degC)."""
    icy = (c.temperature_c <= SEA_ICE_C) | ((np.abs(lat) >= 80.0) & (c.temperature_c <= 1.5))
    return ((surface == SURF_OCEAN) & icy).astype(np.int8)


def compute_facts(layers: GroundLayers, lon, lat, month=None, day_of_year=None, hour=None) -> Facts:
    """All facts for points; pass ``month=None`` for time-free facts (the climate
    facts then stay unknown, -1)."""
    lon = np.asarray(lon, np.float64)
    lat = np.asarray(lat, np.float64)
    st = static_facts(layers, lon, lat)
    surface = st["surface"]
    unknown = np.full(lon.shape, -1, np.int8)
    altitude = altitude_of(layers.elevation_m_at(lon, lat), surface)
    if month is None:
        season = tod = warmth = wetness = unknown
        snow = np.where(surface == SURF_LAND, np.where(st["land_cover"] == IGBP_SNOW_ICE, PERMANENT_ICE, NO_SNOW), NO_SNOW)
        sea_ice = np.zeros(lon.shape, np.int8)
    else:
        hour = np.asarray(hour, np.float64)
        tod = time_of_day(lat, day_of_year, hour)
        c = climate_at(layers, lon, lat, surface, day_of_year, hour)
        season = season_from_climate(c, surface)
        warmth = warmth_of(c, surface, tod)
        wetness = wetness_of(c)
        snow = snow_of(surface, st["land_cover"], c)
        sea_ice = sea_ice_of(surface, lat, c)
    return Facts(
        surface=surface,
        land_cover=st["land_cover"],
        second_cover=st["second_cover"],
        terrain=st["terrain"],
        coast=st["coast"],
        settlement=st["settlement"],
        time_of_day=tod,
        season=season,
        snow=np.asarray(snow, np.int8),
        sea_ice=sea_ice,
        altitude=altitude,
        warmth=warmth,
        wetness=wetness,
    )
