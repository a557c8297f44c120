"""Distances and directions on the sphere: great-circle km, unit vectors, cell areas."""

from __future__ import annotations

import numpy as np

EARTH_RADIUS_KM = 6371.0088  # mean radius (IUGG)


def unit_vectors(lon, lat) -> np.ndarray:
    """(N, 3) unit vectors of (lon, lat) in degrees."""
    lon, lat = np.radians(np.asarray(lon, np.float64)), np.radians(np.asarray(lat, np.float64))
    c = np.cos(lat)
    return np.stack([c * np.cos(lon), c * np.sin(lon), np.sin(lat)], axis=-1)


def to_lonlat(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lon, lat) in degrees of (N, 3) vectors (any length but zero)."""
    v = np.asarray(v, np.float64)
    lon = np.degrees(np.arctan2(v[..., 1], v[..., 0]))
    lat = np.degrees(np.arctan2(v[..., 2], np.hypot(v[..., 0], v[..., 1])))
    return lon, lat


def haversine_km(lon1, lat1, lon2, lat2) -> np.ndarray:
    """Great-circle distance in km, broadcasting."""
    lon1, lat1, lon2, lat2 = (
        np.radians(np.asarray(a, np.float64)) for a in (lon1, lat1, lon2, lat2)
    )
    a = (
        np.sin((lat2 - lat1) / 2) ** 2
        + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def cell_area_weights(lat) -> np.ndarray:
    """Relative areas of equal-angle cells centred at ``lat`` (cos of latitude)."""
    return np.maximum(np.cos(np.radians(np.asarray(lat, np.float64))), 1e-12)
