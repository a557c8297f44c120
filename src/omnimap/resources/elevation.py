"""Land elevation (metres above sea level) at 5 arc-minutes, and local relief.

Data: ``pvlib/data/Altitude.h5`` from the PyPI package ``pvlib==0.16.1`` (BSD-3-Clause,
Copyright (c) 2023 pvlib python Contributors, (c) 2014 PVLIB python Development
Team, (c) 2013 Sandia National Laboratories). Only the file is read (with h5py);
pvlib is never imported, so ``pip install --no-deps pvlib==0.16.1`` is enough. pvlib
aggregated it from Mapzen/Tilezen terrain tiles, whose sources ask for this credit:
ETOPO1 (U.S. NOAA); SRTM, GMTED2010 and 3DEP (U.S. Geological Survey); EU-DEM
(produced using Copernicus data and information funded by the European Union);
ArcticDEM (DigitalGlobe imagery, NSF awards 1043681, 1559691, 1542736); Geoscience
Australia (c) Commonwealth of Australia 2017; INEGI Mexico; LINZ New Zealand (Crown
copyright 2011); Kartverket Norway; Environment Agency UK (c) 2015; Open Government
Licence - Canada; offene Daten Oesterreichs DGM.

File layout (dataset ``Altitude``): uint8 (2160, 4320), gzip, one value per 1/12 degree
cell, row 0 at 90N (north up), column 0 at 180W; metres = value * 28 - 450 (28 m
steps), 255 = no data. No data covers every sea and ocean cell (68% of the grid, the
Caspian Sea included) and everything poleward of about 85 degrees (the Web Mercator
tiles it came from stop at 85.05), so the South Pole is NaN here. The two columns
next to 180 degrees hold no data at all in the file; they are filled from their
neighbours on load, so Chukotka and Fiji are not cut in two. Known flaws: the
Greenland ice sheet holds bedrock (-142..614 m, median 26 m in 68-76N, 35-45W)
instead of its ~3 km ice surface, and the Antarctic coastal band has sub-sea values
down to -450 m; Antarctica's interior ice surface is right (median ~3100 m).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np

from omnimap.core.errors import DataError, InputError
from omnimap.resources import packages

log = logging.getLogger(__name__)

PIP_NAME = "pvlib==0.16.1"
N_LAT, N_LON = 2160, 4320
CELL = 1.0 / 12.0  # degrees
NODATA = 255
# 5 cells = 25 arc-min (~0.42 deg, ~46 km north-south): wide enough to see a valley
# and its ridges at this resolution, narrow enough to keep a plain next to a range flat.
RELIEF_WINDOW = 5


def elevation_file() -> Path:
    """Path of pvlib's Altitude.h5, or a DataError saying how to install it."""
    try:
        base = packages.package_dir("pvlib", PIP_NAME)
    except DataError:
        raise DataError(
            f"elevation needs the data package {PIP_NAME!r}; "
            f"install it with: pip install --no-deps {PIP_NAME}"
        ) from None
    return packages.require_file(base / "data" / "Altitude.h5", PIP_NAME)


def _cells(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    lon, lat = np.broadcast_arrays(
        np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    )
    if not np.isfinite(lon).all():
        raise InputError("longitude must be finite")
    if not (np.abs(lat) <= 90.0).all():  # also rejects NaN
        raise InputError("latitude must be within [-90, 90]")
    i = np.clip(np.floor((90.0 - lat) / CELL).astype(np.int64), 0, N_LAT - 1)
    j = np.floor(np.mod(lon + 180.0, 360.0) / CELL).astype(np.int64) % N_LON
    return i, j


class Elevation:
    """The elevation grid in memory (float32 metres, NaN = no data; 37 MB).

    Lookups take the value of the 1/12 degree cell holding each point (no
    interpolation: the data come in 28 m steps and NaN coasts would spread).
    """

    def __init__(self, metres: np.ndarray, load_seconds: float = 0.0):
        if metres.shape != (N_LAT, N_LON):
            raise DataError(f"elevation grid must be ({N_LAT}, {N_LON}), got {metres.shape}")
        self.grid = np.ascontiguousarray(metres, dtype=np.float32)
        self.load_seconds = load_seconds
        self._relief: np.ndarray | None = None
        self._relief_lock = threading.Lock()
        self.relief_seconds = 0.0

    @classmethod
    def load(cls, path: str | Path | None = None) -> Elevation:
        """Read and check Altitude.h5 (default: the one in pvlib). Not cached."""
        import h5py

        path = Path(path) if path is not None else elevation_file()
        hint = f"reinstall it: pip install --no-deps --force-reinstall {PIP_NAME}"
        start = time.perf_counter()
        try:
            with h5py.File(path, "r") as f:
                raw = f["Altitude"][()]
        except (OSError, KeyError) as exc:
            raise DataError(
                f"{path.name} is not a readable elevation file ({exc}); {hint}"
            ) from None
        if raw.shape != (N_LAT, N_LON) or raw.dtype != np.uint8:
            raise DataError(
                f"{path.name} holds {raw.dtype} {raw.shape}, expected uint8 ({N_LAT}, {N_LON}); {hint}"
            )
        metres = raw.astype(np.float32) * 28.0 - 450.0
        metres[raw == NODATA] = np.nan
        # The file's two columns touching 180 degrees are empty from pole to pole (a
        # stitching gap: Chukotka, Fiji and Antarctica get cut); copy in the next column.
        for gap, src in ((N_LON - 1, N_LON - 2), (0, 1)):
            if np.isnan(metres[:, gap]).all():
                metres[:, gap] = metres[:, src]
        land = np.isfinite(metres).mean()
        if not 0.2 <= land <= 0.45:  # Earth: ~29% land, +Antarctic ice shelves
            raise DataError(f"{path.name} has {land:.0%} cells with data, expected ~32%; {hint}")
        return cls(metres, load_seconds=time.perf_counter() - start)

    def elevation_m(self, lon, lat) -> np.ndarray:
        """Elevation in metres (NaN over sea and poleward of ~85 degrees)."""
        i, j = _cells(lon, lat)
        return self.grid[i, j]

    def relief_grid(self) -> np.ndarray:
        """Max minus min land elevation (m) in a RELIEF_WINDOW-cell square around each
        cell, computed once. NaN where the cell itself has no data; sea cells in the
        window are ignored, so a coastal plain stays flat."""
        if self._relief is None:
            with self._relief_lock:
                if self._relief is None:
                    start = time.perf_counter()
                    self._relief = _relief(self.grid, RELIEF_WINDOW)
                    self.relief_seconds = time.perf_counter() - start
                    log.info("computed local relief in %.2f s", self.relief_seconds)
        return self._relief

    def local_relief_m(self, lon, lat) -> np.ndarray:
        """Local relief (m) around each point: ~0-100 on plains, >1000 in mountains."""
        i, j = _cells(lon, lat)
        return self.relief_grid()[i, j]


def _relief(metres: np.ndarray, size: int) -> np.ndarray:
    from scipy.ndimage import maximum_filter, minimum_filter

    nodata = np.isnan(metres)
    # Wrap across the antimeridian; clamp at the poles (those rows are no data anyway).
    mode = ("nearest", "wrap")
    high = maximum_filter(np.where(nodata, -np.inf, metres), size=size, mode=mode)
    low = minimum_filter(np.where(nodata, np.inf, metres), size=size, mode=mode)
    out = (high - low).astype(np.float32)
    out[nodata] = np.nan
    return out


_lock = threading.Lock()
_elevation: Elevation | None = None


def elevation() -> Elevation:
    """The shared :class:`Elevation`, read from disk on first use (~0.1 s)."""
    global _elevation
    if _elevation is None:
        with _lock:
            if _elevation is None:
                _elevation = Elevation.load()
                log.info("loaded elevation in %.2f s", _elevation.load_seconds)
    return _elevation


def elevation_m(lon, lat) -> np.ndarray:
    """Elevation in metres at the points (NaN = sea or no data)."""
    return elevation().elevation_m(lon, lat)


def local_relief_m(lon, lat) -> np.ndarray:
    """Max - min land elevation (m) in ~0.42 degrees around the points (NaN = sea)."""
    return elevation().local_relief_m(lon, lat)
