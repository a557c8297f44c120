"""Geotags and capture times from photo EXIF, and a writer of geotagged JPEGs.

GPS comes from the GPS IFD: degree/minute/second rationals with N/S/E/W references,
altitude optional (reference 1 = below sea level). The capture time is
DateTimeOriginal, a local wall-clock time; OffsetTimeOriginal, when present, gives
its UTC offset.
"""

from __future__ import annotations

import io
import math
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction

import numpy as np
from PIL import ExifTags, Image
from PIL.TiffImagePlugin import IFDRational

from omnimap.core.fileio import atomic_path

GPS_LAT_REF, GPS_LAT, GPS_LON_REF, GPS_LON, GPS_ALT_REF, GPS_ALT = 1, 2, 3, 4, 5, 6
DATETIME_ORIGINAL, OFFSET_TIME_ORIGINAL = 0x9003, 0x9011
EXIF_DATETIME_FORMAT = "%Y:%m:%d %H:%M:%S"
_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")


class PhotoSkip(Exception):
    """A photo that cannot be paired: ``reason`` is a category, the message details it."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class PhotoMeta:
    lon: float
    lat: float
    altitude_m: float | None
    datetime_local: datetime | None  # naive: the local wall-clock time of capture
    utc_offset_minutes: int | None


def open_checked(data: bytes) -> Image.Image:
    """The decoded image, or PhotoSkip("unreadable"). Decodes fully (a truncated file
    fails here, not in training) at reduced scale where the format allows (JPEG)."""
    try:
        im = Image.open(io.BytesIO(data))
        im.draft("RGB", (64, 64))
        im.load()
        return im
    except Exception as exc:  # Pillow's plugins raise many kinds on malformed files
        raise PhotoSkip("unreadable", f"not a readable image ({exc})") from None


def _text(value) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value).strip("\x00 ").upper()


def _degrees(dms, ref, positive: str, negative: str, name: str) -> float:
    """Signed decimal degrees from (deg, min, sec) rationals and a hemisphere ref."""
    ref = _text(ref)
    if ref not in (positive, negative):
        raise PhotoSkip(
            "bad_coordinates", f"GPS {name} reference {ref!r} is not {positive}/{negative}"
        )
    parts = dms if isinstance(dms, tuple | list) else (dms,)
    try:
        values = [float(v) for v in parts][:3]
    except (TypeError, ValueError, ZeroDivisionError):
        values = []
    if not values or not all(math.isfinite(v) and v >= 0 for v in values):
        raise PhotoSkip("bad_coordinates", f"GPS {name} {dms!r} is not degree/minute/second values")
    value = sum(v / 60**i for i, v in enumerate(values))
    return -value if ref == negative else value


def _altitude(gps) -> float | None:
    try:
        value = float(gps[GPS_ALT])
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    if not math.isfinite(value):
        return None
    ref = gps.get(GPS_ALT_REF, 0)
    below = (ref[0] if isinstance(ref, bytes) and ref else ref) == 1
    return -value if below else value


def _capture_time(exif_ifd) -> tuple[datetime | None, int | None]:
    try:
        local = datetime.strptime(
            str(exif_ifd[DATETIME_ORIGINAL]).strip("\x00 "), EXIF_DATETIME_FORMAT
        )
    except (KeyError, ValueError):
        return None, None  # absent, or blank as some cameras write it
    match = _OFFSET.match(str(exif_ifd.get(OFFSET_TIME_ORIGINAL, "")).strip("\x00 "))
    if match is None:
        return local, None
    sign = -1 if match[1] == "-" else 1
    return local, sign * (int(match[2]) * 60 + int(match[3]))


def photo_meta(im: Image.Image) -> PhotoMeta:
    """Location and capture time of an opened photo, or PhotoSkip."""
    try:
        exif = im.getexif()
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
        exif_ifd = exif.get_ifd(ExifTags.IFD.Exif)
    except Exception as exc:  # as above, for malformed EXIF blocks
        raise PhotoSkip("unreadable", f"malformed EXIF ({exc})") from None
    if GPS_LAT not in gps or GPS_LON not in gps:
        raise PhotoSkip("no_gps", "no GPS position in EXIF")
    lat = _degrees(gps[GPS_LAT], gps.get(GPS_LAT_REF, ""), "N", "S", "latitude")
    lon = _degrees(gps[GPS_LON], gps.get(GPS_LON_REF, ""), "E", "W", "longitude")
    if abs(lat) > 90 or abs(lon) > 180:
        raise PhotoSkip("bad_coordinates", f"impossible GPS position lat={lat:.6f}, lon={lon:.6f}")
    local, offset = _capture_time(exif_ifd)
    return PhotoMeta(lon, lat, _altitude(gps), local, offset)


def _dms(value: float) -> tuple[IFDRational, IFDRational, IFDRational]:
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = Fraction(round((value - degrees - minutes / 60) * 3600 * 10_000), 10_000)
    return IFDRational(degrees, 1), IFDRational(minutes, 1), IFDRational(seconds)


def write_geotagged_jpeg(
    path: str | os.PathLike,
    lon: float,
    lat: float,
    when: datetime,
    offset: int | timedelta | None = None,
    size: tuple[int, int] = (64, 64),
    seed: int = 0,
    altitude: float | None = None,
) -> None:
    """Write a real JPEG (seeded smooth colours) with EXIF GPS and capture time.

    ``when`` is the local wall-clock time; an aware ``when`` also gives the offset
    unless ``offset`` (minutes or a timedelta) is given. Values are written as given,
    so tests can also make impossible positions.
    """
    if when.tzinfo is not None:
        offset = when.utcoffset() if offset is None else offset
        when = when.replace(tzinfo=None)
    if isinstance(offset, timedelta):
        offset = round(offset.total_seconds() / 60)
    exif = Image.Exif()
    gps = {
        GPS_LAT_REF: "N" if lat >= 0 else "S",
        GPS_LAT: _dms(lat),
        GPS_LON_REF: "E" if lon >= 0 else "W",
        GPS_LON: _dms(lon),
    }
    if altitude is not None:
        gps[GPS_ALT_REF] = b"\x01" if altitude < 0 else b"\x00"
        gps[GPS_ALT] = IFDRational(Fraction(round(abs(altitude) * 100), 100))
    exif[ExifTags.IFD.GPSInfo] = gps
    exif_ifd = exif.get_ifd(ExifTags.IFD.Exif)
    exif_ifd[DATETIME_ORIGINAL] = when.strftime(EXIF_DATETIME_FORMAT)
    if offset is not None:
        sign = "-" if offset < 0 else "+"
        exif_ifd[OFFSET_TIME_ORIGINAL] = f"{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"
    rng = np.random.default_rng(seed)
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width] / max(width, height)
    a, b, c = rng.uniform(0, 255, (3, 3))
    pixels = np.stack([a[i] + b[i] * xx + c[i] * yy for i in range(3)], axis=-1)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    with atomic_path(path) as tmp:
        image.save(tmp, format="JPEG", quality=90, exif=exif)
