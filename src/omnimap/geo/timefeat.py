"""Date-time handling: parsing ``--when``, local time per cell, model time features.

``--when`` without a UTC offset is *local mean solar time at every cell* (noon is
noon everywhere on the map); with an offset it is one instant, and each cell's local
time is UTC + longitude/15 hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from omnimap.core.errors import InputError

# Sat2Cap's 12 metadata values: location (4) then time (8).
N_FEATURES = 12
LOCATION_SLICE = slice(0, 4)
TIME_SLICE = slice(4, 12)
YEAR_ORIGIN, YEAR_PERIOD = 2015.0, 15.0
# Local mean solar time runs 4 minutes ahead of UTC per degree east.
MS_PER_DEGREE_EAST = 240_000.0


@dataclass(frozen=True)
class When:
    """A parsed ``--when``: a naive local solar time or an aware instant."""

    dt: datetime

    @classmethod
    def parse(cls, text: str) -> When:
        text = str(text).strip()
        if not text:
            raise InputError("--when is empty; use ISO-8601 such as 2024-01-15T09:00")
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise InputError(
                f"bad date {text!r}; use ISO-8601 such as 2024-01-15T09:00 or 2024-01-15T09:00+01:00"
            ) from None
        if not (1900 <= dt.year <= 2100):
            raise InputError(f"date {text!r} is outside the supported years 1900-2100")
        return cls(dt)

    @property
    def is_local_solar(self) -> bool:
        return self.dt.tzinfo is None

    @property
    def key(self) -> str:
        """Stable text for cache keys."""
        if self.is_local_solar:
            return "local-" + self.dt.strftime("%Y%m%dT%H%M%S")
        return "utc-" + self.dt.astimezone(UTC).strftime("%Y%m%dT%H%M%S")

    def describe(self) -> str:
        if self.is_local_solar:
            return self.dt.strftime("%Y-%m-%d %H:%M local solar time")
        return self.dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass
class LocalTime:
    """Per-cell local date-time parts (arrays broadcast to the longitudes given)."""

    year: np.ndarray
    month: np.ndarray
    day: np.ndarray
    hour: np.ndarray  # fractional local mean solar hour in [0, 24)
    day_of_year: np.ndarray


def split_datetime64(local: np.ndarray) -> LocalTime:
    """Split datetime64 values into year, month, day, fractional hour, day of year."""
    local = np.asarray(local).astype("datetime64[ms]")
    years = local.astype("datetime64[Y]")
    months = local.astype("datetime64[M]")
    days = local.astype("datetime64[D]")
    return LocalTime(
        year=years.astype(np.int64) + 1970,
        month=(months - years.astype("datetime64[M]")).astype(np.int64) + 1,
        day=(days - months.astype("datetime64[D]")).astype(np.int64) + 1,
        hour=(local - days.astype("datetime64[ms]")).astype(np.float64) / 3_600_000.0,
        day_of_year=(days - years.astype("datetime64[D]")).astype(np.int64) + 1,
    )


def local_times(when: When, lon: np.ndarray) -> LocalTime:
    """Local mean solar date-time at each longitude for a ``When``."""
    lon = np.asarray(lon, dtype=np.float64)
    if when.is_local_solar:
        base = np.datetime64(when.dt.replace(microsecond=0), "ms")
        return split_datetime64(np.full(lon.shape, base))
    utc = when.dt.astimezone(UTC).replace(tzinfo=None)
    base = np.datetime64(utc, "ms")
    offset_ms = np.round(lon * MS_PER_DEGREE_EAST).astype("timedelta64[ms]")
    return split_datetime64(base + offset_ms)


def time_features(year, month, day, hour) -> np.ndarray:
    """The 8 cyclic time values of Sat2Cap: sin/cos of year, month, day, hour."""
    year, month, day, hour = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (year, month, day, hour))
    )
    angles = (
        2 * np.pi * (year - YEAR_ORIGIN) / YEAR_PERIOD,
        2 * np.pi * month / 12.0,
        2 * np.pi * day / 31.0,
        2 * np.pi * hour / 23.0,
    )
    out = np.empty(year.shape + (8,), dtype=np.float32)
    for i, a in enumerate(angles):
        out[..., 2 * i] = np.sin(a)
        out[..., 2 * i + 1] = np.cos(a)
    return out


def location_features(lon, lat) -> np.ndarray:
    """The 4 location values of Sat2Cap: sin/cos of pi*lat/90 and pi*lon/180."""
    lon, lat = np.broadcast_arrays(np.asarray(lon, np.float64), np.asarray(lat, np.float64))
    out = np.empty(lon.shape + (4,), dtype=np.float32)
    out[..., 0] = np.sin(np.pi * lat / 90.0)
    out[..., 1] = np.cos(np.pi * lat / 90.0)
    out[..., 2] = np.sin(np.pi * lon / 180.0)
    out[..., 3] = np.cos(np.pi * lon / 180.0)
    return out


def metadata_features(lon, lat, local: LocalTime | None) -> np.ndarray:
    """(N, 12) float32 model input. ``local=None`` means time unknown: the 8 time
    values are zero, a point no real angle maps to (sin^2 + cos^2 = 1)."""
    loc = location_features(lon, lat)
    out = np.zeros(loc.shape[:-1] + (N_FEATURES,), dtype=np.float32)
    out[..., LOCATION_SLICE] = loc
    if local is not None:
        out[..., TIME_SLICE] = time_features(local.year, local.month, local.day, local.hour)
    return out
