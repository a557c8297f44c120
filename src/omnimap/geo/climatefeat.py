"""Climate values as model inputs: what the place's climate is, and how this date
departs from it, appended to Sat2Cap's 12 location/time values.

Five values per cell (``N_CLIMATE``), scaled to about unit range:

0. annual mean temperature / 15 degC
1. log(1 + annual mean precipitation in mm/day)
2. elevation in km (0 at sea and where the grid has none)
3. (temperature at the date - annual mean) / 10 degC          -- time
4. log((precipitation at the date + 0.1) / (annual mean + 0.1)) -- time

The time values are 0 when the time is unknown ("an average month"), and the
trainer's time dropout zeros them with the other time inputs (``time_columns``).
Sources: ERA5 2000-2025 normals (``resources.climate``), pvlib elevation.
"""

from __future__ import annotations

import numpy as np

from omnimap.geo.timefeat import N_FEATURES, TIME_SLICE, LocalTime, metadata_features
from omnimap.resources import climate, elevation

N_CLIMATE = 5
CLIMATE_TIME = (3, 4)  # columns within the climate block that depend on the date


def climate_features(lon, lat, local: LocalTime | None) -> np.ndarray:
    """(N, N_CLIMATE) float32 climate inputs at the points (and local times)."""
    lon = np.asarray(lon, np.float64)
    lat = np.asarray(lat, np.float64)
    normals = climate.climate_normals()
    t_mean, p_mean = normals.annual_means(lon, lat)
    out = np.zeros(lon.shape + (N_CLIMATE,), dtype=np.float32)
    out[..., 0] = t_mean / 15.0
    out[..., 1] = np.log1p(np.maximum(p_mean, 0.0))
    out[..., 2] = np.nan_to_num(elevation.elevation_m(lon, lat), nan=0.0) / 1000.0
    if local is not None:
        doy = np.asarray(local.day_of_year, np.float64) + np.asarray(local.hour, np.float64) / 24
        month = climate.month_of_day_of_year(np.broadcast_to(doy, lon.shape))
        t = normals.temperature_c(lon, lat, month)
        p = normals.precipitation_mm_day(lon, lat, month)
        out[..., 3] = (t - t_mean) / 10.0
        out[..., 4] = np.log((np.maximum(p, 0.0) + 0.1) / (np.maximum(p_mean, 0.0) + 0.1))
    return out


def model_inputs(lon, lat, local: LocalTime | None, climate_inputs: bool) -> np.ndarray:
    """The dynamic encoder's inputs: Sat2Cap's 12 values, plus the climate block for
    models trained with it."""
    meta = metadata_features(lon, lat, local)
    if not climate_inputs:
        return meta
    return np.concatenate([meta, climate_features(lon, lat, local)], axis=-1)


def time_columns(n_inputs: int) -> list[int]:
    """Input columns that carry the time (zeroed when the time is unknown)."""
    cols = list(range(TIME_SLICE.start, TIME_SLICE.stop))
    if n_inputs >= N_FEATURES + N_CLIMATE:
        cols += [N_FEATURES + c for c in CLIMATE_TIME]
    return cols
