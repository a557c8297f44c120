"""The paired-sample table: GeoParquet, one row per ground photo.

Columns: ``id`` (xxh3-128 of the photo's bytes: stable across renames, equal for
duplicates), ``lon``/``lat`` (WGS84 degrees), ``altitude_m`` (nullable),
``datetime_local`` (ISO ``YYYY-MM-DDTHH:MM:SS`` local wall-clock time, nullable),
``utc_offset_minutes`` (nullable), ``ground_path`` (POSIX path relative to the
table's directory, so the table moves with its photos), ``overhead_ref`` (the
imagery source's key: content plus patch geometry) and ``geometry`` (WKB points).

File metadata: ``geo`` (GeoParquet 1.1, CRS OGC:CRS84) and ``omnimap`` (the imagery
source's config, so ``source_from_config`` recreates it, and its attribution).
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyproj import CRS

from omnimap.core.errors import DataError
from omnimap.core.fileio import atomic_path

FORMAT = "omnimap-pairs"
VERSION = 1
SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("lon", pa.float64(), nullable=False),
        pa.field("lat", pa.float64(), nullable=False),
        pa.field("altitude_m", pa.float64()),
        pa.field("datetime_local", pa.string()),
        pa.field("utc_offset_minutes", pa.int32()),
        pa.field("ground_path", pa.string(), nullable=False),
        pa.field("overhead_ref", pa.string(), nullable=False),
        pa.field("geometry", pa.binary(), nullable=False),
    ]
)
COLUMNS = [f.name for f in SCHEMA if f.name != "geometry"]


def wkb_point(lon: float, lat: float) -> bytes:
    """ISO WKB of a 2D point, little-endian."""
    return struct.pack("<BIdd", 1, 1, lon, lat)


def geo_metadata(lon: np.ndarray, lat: np.ndarray) -> dict[str, Any]:
    column: dict[str, Any] = {
        "encoding": "WKB",
        "geometry_types": ["Point"],
        "crs": CRS.from_user_input("OGC:CRS84").to_json_dict(),
    }
    if len(lon):
        column["bbox"] = [float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())]
    return {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": column}}


def write_pairs(
    out: str | os.PathLike, rows: list[dict[str, Any]], imagery: dict[str, Any], attribution: str
) -> None:
    """Write rows (dicts with the COLUMNS) as GeoParquet, atomically."""
    columns = {name: [row[name] for row in rows] for name in COLUMNS}
    columns["geometry"] = [wkb_point(r["lon"], r["lat"]) for r in rows]
    table = pa.Table.from_pydict(columns, schema=SCHEMA)
    meta = {
        b"geo": json.dumps(geo_metadata(np.array(columns["lon"]), np.array(columns["lat"]))),
        b"omnimap": json.dumps(
            {"format": FORMAT, "version": VERSION, "imagery": imagery, "attribution": attribution}
        ),
    }
    table = table.replace_schema_metadata(meta)
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp, compression="zstd")


@dataclass
class Pairs:
    """A validated pairs table."""

    path: Path
    table: pa.Table
    imagery: dict[str, Any]  # source config: omnimap.sources.source_from_config(imagery)
    attribution: str

    def __len__(self) -> int:
        return self.table.num_rows

    def ground_paths(self) -> list[Path]:
        """Absolute paths of the ground photos."""
        root = self.path.parent
        return [root / p for p in self.table.column("ground_path").to_pylist()]


def read_pairs(path: str | os.PathLike) -> Pairs:
    """Read and validate a pairs table; DataError names what is wrong."""
    path = Path(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"cannot read pairs table {path}: {exc}") from None
    meta = table.schema.metadata or {}
    try:
        info = json.loads(meta[b"omnimap"])
        geo = json.loads(meta[b"geo"])
    except (KeyError, ValueError):
        raise DataError(f"{path} is not an omnimap pairs table (no omnimap/geo metadata)") from None
    if info.get("format") != FORMAT or info.get("version") != VERSION:
        raise DataError(
            f"{path}: unsupported pairs format {info.get('format')} v{info.get('version')}"
        )
    if geo.get("primary_column") != "geometry":
        raise DataError(f"{path}: GeoParquet metadata does not name the geometry column")
    for field in SCHEMA:
        if field.name not in table.column_names:
            raise DataError(f"{path}: column {field.name!r} is missing")
        if not table.schema.field(field.name).type.equals(field.type):
            raise DataError(
                f"{path}: column {field.name!r} is {table.schema.field(field.name).type}, expected {field.type}"
            )
    table = table.select([f.name for f in SCHEMA])
    lon = table.column("lon").to_numpy()
    lat = table.column("lat").to_numpy()
    if not (np.all(np.abs(lon) <= 180) and np.all(np.abs(lat) <= 90)):
        raise DataError(f"{path}: coordinates outside lon -180..180 / lat -90..90")
    ids = table.column("id")
    if ids.null_count or len(ids.unique()) != len(ids):
        raise DataError(f"{path}: ids are missing or not unique")
    return Pairs(path, table, dict(info["imagery"]), str(info["attribution"]))
