"""Solar geometry (NOAA's fractional-year approximation, ~0.1 degree accurate).

All functions are vectorised over numpy arrays. Angles in degrees, hours in [0, 24).
"""

from __future__ import annotations

import numpy as np

# Apparent sunrise/sunset: the sun's upper limb on the horizon with refraction.
SUNRISE_ELEVATION = -0.833
CIVIL_TWILIGHT = -6.0
ASTRONOMICAL_TWILIGHT = -18.0


def _fractional_year(day_of_year, hour, days_in_year=365.0):
    return (
        2.0
        * np.pi
        / days_in_year
        * (np.asarray(day_of_year, float) - 1.0 + (np.asarray(hour, float) - 12.0) / 24.0)
    )


def declination(day_of_year, hour=12.0):
    """Solar declination in degrees."""
    g = _fractional_year(day_of_year, hour)
    rad = (
        0.006918
        - 0.399912 * np.cos(g)
        + 0.070257 * np.sin(g)
        - 0.006758 * np.cos(2 * g)
        + 0.000907 * np.sin(2 * g)
        - 0.002697 * np.cos(3 * g)
        + 0.00148 * np.sin(3 * g)
    )
    return np.degrees(rad)


def equation_of_time(day_of_year, hour=12.0):
    """Apparent minus mean solar time, in minutes."""
    g = _fractional_year(day_of_year, hour)
    return 229.18 * (
        0.000075
        + 0.001868 * np.cos(g)
        - 0.032077 * np.sin(g)
        - 0.014615 * np.cos(2 * g)
        - 0.040849 * np.sin(2 * g)
    )


def elevation_at_solar_time(lat, day_of_year, solar_hour):
    """Sun elevation for a latitude, day of year and local *apparent* solar hour."""
    lat_r = np.radians(np.asarray(lat, float))
    dec_r = np.radians(declination(day_of_year, solar_hour))
    hour_angle = np.radians(15.0 * (np.asarray(solar_hour, float) - 12.0))
    cos_zenith = np.sin(lat_r) * np.sin(dec_r) + np.cos(lat_r) * np.cos(dec_r) * np.cos(hour_angle)
    return np.degrees(np.arcsin(np.clip(cos_zenith, -1.0, 1.0)))


def mean_to_apparent_hour(day_of_year, mean_solar_hour):
    """Local mean solar hour (UTC + lon/15) to apparent solar hour (sundial time)."""
    return np.mod(
        np.asarray(mean_solar_hour, float) + equation_of_time(day_of_year, mean_solar_hour) / 60.0,
        24.0,
    )


def elevation_utc(lon, lat, day_of_year, utc_hour):
    """Sun elevation at a place for a UTC day of year and hour."""
    mean_hour = np.asarray(utc_hour, float) + np.asarray(lon, float) / 15.0
    # The local day may differ from the UTC day; declination moves <0.5 deg/day so
    # the UTC day of year is precise enough here.
    return elevation_at_solar_time(
        lat, day_of_year, mean_to_apparent_hour(day_of_year, np.mod(mean_hour, 24.0))
    )


def noon_elevation(lat, day_of_year):
    """Highest sun elevation of the day (at apparent solar noon)."""
    return elevation_at_solar_time(lat, day_of_year, 12.0)


def midnight_elevation(lat, day_of_year):
    """Lowest sun elevation of the day (at apparent solar midnight)."""
    return elevation_at_solar_time(lat, day_of_year, 0.0)
