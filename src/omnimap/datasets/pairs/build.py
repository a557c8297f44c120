"""Building pairs tables from a folder of geotagged photos or from a CSV.

Nothing about one photo or row stops a run: each one that cannot be paired is
counted by reason and listed in ``<table stem>.skipped.csv`` beside the table.
Reasons: ``unreadable`` (not an image, truncated, unsupported format),
``missing_file``, ``no_gps``, ``bad_coordinates`` (impossible or unparsable
position), ``bad_datetime``, ``duplicate`` (the same bytes as an earlier photo).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import xxhash

from omnimap.core.errors import InputError
from omnimap.core.fileio import atomic_path
from omnimap.datasets.pairs.exif import PhotoMeta, PhotoSkip, open_checked, photo_meta
from omnimap.datasets.pairs.table import write_pairs
from omnimap.sources import PatchSource, open_source

# Extensions looked at; formats Pillow cannot open (HEIC) are listed as unreadable
# rather than silently ignored. Hidden files (macOS "._" companions) are ignored.
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".heic", ".heif"}
CSV_COLUMNS = ("lon", "lat", "datetime", "path")


@dataclass(frozen=True)
class Skipped:
    item: str  # the photo's path, or "line N" of a CSV
    reason: str
    detail: str


def skipped_path(out: Path) -> Path:
    return out.with_name(out.stem + ".skipped.csv")


def _relative(path: Path, root: Path) -> str:
    try:
        return Path(os.path.relpath(path.resolve(), root.resolve())).as_posix()
    except ValueError:  # another drive on Windows: no relative path exists
        return path.resolve().as_posix()


def _inspect(path: Path, read_exif: bool) -> tuple[str, PhotoMeta | None]:
    """(id, EXIF metadata) of a photo; the image is fully decoded to reject truncation."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PhotoSkip("missing_file", f"no such file: {path}") from None
    except OSError as exc:
        raise PhotoSkip("unreadable", f"cannot read file ({exc.strerror})") from None
    with open_checked(data) as im:
        meta = photo_meta(im) if read_exif else None
    return xxhash.xxh3_128_hexdigest(data), meta


def _inspect_all(
    jobs: list[tuple[Path, bool]], workers: int
) -> Iterable[tuple[str, PhotoMeta | None] | PhotoSkip]:
    def safe(job: tuple[Path, bool]):
        try:
            return _inspect(*job)
        except PhotoSkip as exc:
            return exc

    # Threads overlap file reads and JPEG decoding (Pillow releases the GIL).
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        yield from pool.map(safe, jobs)


def _finish(
    out: Path,
    rows: list[dict[str, Any]],
    skipped: list[Skipped],
    source: PatchSource,
    candidates: int,
) -> dict[str, Any]:
    write_pairs(out, rows, source.to_config(), source.attribution)
    listing = skipped_path(out)
    with atomic_path(listing) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["item", "reason", "detail"])
        writer.writerows((s.item, s.reason, s.detail) for s in skipped)
    return {
        "table": str(out),
        "skipped_list": str(listing),
        "candidates": candidates,
        "written": len(rows),
        "skipped": len(skipped),
        "skipped_by_reason": dict(sorted(Counter(s.reason for s in skipped).items())),
        "without_datetime": sum(r["datetime_local"] is None for r in rows),
        "without_utc_offset": sum(r["utc_offset_minutes"] is None for r in rows),
        "imagery": source.key,
        "attribution": source.attribution,
    }


def _source(imagery: PatchSource | str, ground_size_m: float, pixels: int) -> PatchSource:
    return open_source(imagery, ground_size_m, pixels) if isinstance(imagery, str) else imagery


def _exif_values(meta: PhotoMeta) -> dict[str, Any]:
    return {
        "lon": meta.lon,
        "lat": meta.lat,
        "altitude_m": meta.altitude_m,
        "datetime_local": meta.datetime_local.isoformat() if meta.datetime_local else None,
        "utc_offset_minutes": meta.utc_offset_minutes,
    }


def _collect(
    items: list[tuple[str, Path, dict[str, Any] | None]],
    out: Path,
    key: str,
    workers: int,
    skipped: list[Skipped],
) -> list[dict[str, Any]]:
    """Rows for (label, photo, values) items; values None means "from the photo's EXIF".
    Unpairable photos and duplicates are appended to ``skipped``."""
    rows: list[dict[str, Any]] = []
    first: dict[str, str] = {}
    results = _inspect_all([(path, values is None) for _, path, values in items], workers)
    for (label, path, values), result in zip(items, results, strict=True):
        if isinstance(result, PhotoSkip):
            skipped.append(Skipped(label, result.reason, str(result)))
            continue
        photo_id, meta = result
        if photo_id in first:
            skipped.append(Skipped(label, "duplicate", f"same bytes as {first[photo_id]}"))
            continue
        first[photo_id] = label
        row = values if values is not None else _exif_values(meta)
        rows.append(
            {"id": photo_id, **row, "ground_path": _relative(path, out.parent), "overhead_ref": key}
        )
    return rows


def from_photos(
    photo_dir: str | os.PathLike,
    imagery: PatchSource | str,
    out: str | os.PathLike,
    *,
    ground_size_m: float = 500.0,
    pixels: int = 224,
    workers: int = 4,
) -> dict[str, Any]:
    """Pair every geotagged photo under ``photo_dir`` (recursively) with ``imagery``.

    ``imagery`` is a source, or a spec for ``open_source`` (``bmng``, a GeoTIFF path,
    an XYZ URL template) made with ``ground_size_m`` and ``pixels``. Writes the
    GeoParquet table ``out`` and its skipped list; returns the summary.
    """
    photo_dir, out = Path(photo_dir), Path(out)
    if not photo_dir.is_dir():
        raise InputError(f"photo folder not found: {photo_dir}")
    source = _source(imagery, ground_size_m, pixels)
    paths = sorted(
        p
        for p in photo_dir.rglob("*")
        if p.suffix.lower() in PHOTO_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(photo_dir).parts)
    )
    items = [(p.relative_to(photo_dir).as_posix(), p, None) for p in paths]
    skipped: list[Skipped] = []
    rows = _collect(items, out, source.key, workers, skipped)
    return _finish(out, rows, skipped, source, len(paths))


def csv_row(record: dict[str, str]) -> tuple[Path, dict[str, Any]]:
    """The photo path and validated values of a CSV record (``datetime`` may be
    absent), or PhotoSkip."""
    try:
        lon, lat = float(record["lon"]), float(record["lat"])
    except (TypeError, ValueError):
        raise PhotoSkip(
            "bad_coordinates", f"lon/lat {record['lon']!r}, {record['lat']!r} are not numbers"
        ) from None
    if not (math.isfinite(lon) and math.isfinite(lat) and abs(lon) <= 180 and abs(lat) <= 90):
        raise PhotoSkip("bad_coordinates", f"impossible position lon={lon}, lat={lat}")
    text = (record.get("datetime") or "").strip()
    local, offset = None, None
    if text:
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise PhotoSkip("bad_datetime", f"datetime {text!r} is not ISO-8601") from None
        if not 1900 <= when.year <= 2100:
            raise PhotoSkip("bad_datetime", f"datetime {text!r} is outside 1900-2100")
        if when.tzinfo is not None:
            offset = round(when.utcoffset().total_seconds() / 60)
        local = when.replace(tzinfo=None, microsecond=0)
    path = (record["path"] or "").strip()
    if not path:
        raise PhotoSkip("missing_file", "empty path")
    values = {
        "lon": lon,
        "lat": lat,
        "altitude_m": None,
        "datetime_local": local.isoformat() if local else None,
        "utc_offset_minutes": offset,
    }
    return Path(path), values


def _line_of(data: bytes, offset: int) -> int:
    """The 1-based line of a byte offset."""
    return data.count(b"\n", 0, offset) + 1


def csv_reader(csv_path: Path, columns: tuple[str, ...] = CSV_COLUMNS) -> csv.DictReader:
    """Records of a UTF-8 CSV that has ``columns``; InputError otherwise."""
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"cannot read {csv_path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        line = _line_of(csv_path.read_bytes(), exc.start)
        raise InputError(f"{csv_path} is not UTF-8 (line {line}, byte {exc.start}); save it as "
                         "UTF-8, e.g. iconv -f latin1 -t utf-8") from None  # fmt: skip
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in columns if c not in (reader.fieldnames or [])]
    if missing:
        raise InputError(
            f"{csv_path} lacks column(s) {', '.join(missing)}; need {', '.join(columns)}"
        )
    return reader


def from_csv(
    csv_path: str | os.PathLike,
    imagery: PatchSource | str,
    out: str | os.PathLike,
    *,
    ground_size_m: float = 500.0,
    pixels: int = 224,
    workers: int = 4,
) -> dict[str, Any]:
    """Pairs from a CSV with columns lon, lat, datetime, path.

    ``datetime`` is ISO-8601: with an offset, the local time there plus its offset;
    without, a local time of unknown offset; empty, unknown. ``path`` is relative to
    the CSV's folder unless absolute. The photo's EXIF is not consulted.
    """
    csv_path, out = Path(csv_path), Path(out)
    reader = csv_reader(csv_path)
    source = _source(imagery, ground_size_m, pixels)
    skipped: list[Skipped] = []
    items = []
    for record in reader:
        label = f"line {reader.line_num}"
        try:
            path, values = csv_row(record)
        except PhotoSkip as exc:
            skipped.append(Skipped(label, exc.reason, str(exc)))
            continue
        items.append((label, csv_path.parent / path, values))
    candidates = len(items) + len(skipped)
    rows = _collect(items, out, source.key, workers, skipped)
    return _finish(out, rows, skipped, source, candidates)
