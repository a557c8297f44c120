"""WebDataset-style tar shards of pairs with their overhead patches cut: samples read by
row (a tar member offset each), in any order, without cutting imagery again.

Layout of a shard folder::

    manifest.json          shards in order, sample counts, imagery config, attribution
    shard-000000.tar       <id>.<jpg|png|webp|tif>  the ground photo's bytes
                           <id>.overhead.png        the (P, P, 3) RGB patch
                           <id>.json                the pairs-table row (no geometry)
    shard-000000.json      commit record: the plan digest, ids and skipped samples
    skipped.csv            samples with no patch or no readable photo, and why
    teacher/...            teacher embeddings (an embedding store, teachers.store)

Shard k holds table rows [k * n, (k + 1) * n). Each tar is written to a temp file
and renamed, then its commit record is written: a crash leaves no shard that reads
as complete, and a rerun skips the shards whose record matches the plan. The
manifest is written last; a folder without one is an unfinished set.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import tarfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xxhash
from PIL import Image, ImageOps

from omnimap.core.errors import DataError, InputError
from omnimap.core.fileio import atomic_path, write_json_atomic
from omnimap.datasets.pairs.table import COLUMNS, read_pairs
from omnimap.sources import PatchSource, source_from_config

FORMAT = "omnimap-shards"
VERSION = 1
MANIFEST = "manifest.json"
GROUND_EXT = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp", "TIFF": "tif"}
OVERHEAD = "overhead.png"
META = "json"


def shard_name(index: int) -> str:
    return f"shard-{index:06d}"


def _ground_bytes(path: Path, max_side: int | None) -> tuple[bytes, str]:
    """The photo's bytes and extension; re-encoded as JPEG only when it must shrink."""
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        if max_side is None or max(im.size) <= max_side:
            return data, GROUND_EXT.get(im.format, str(im.format).lower())
        small = ImageOps.exif_transpose(im).convert("RGB")
        small.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=95)
    return buf.getvalue(), "jpg"


def _png(patch: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(patch.transpose(1, 2, 0)), "RGB").save(buf, format="PNG")
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0  # same rows -> same bytes
    tar.addfile(info, io.BytesIO(data))


@dataclass
class _ShardResult:
    samples: int
    skipped: list[dict[str, str]]


def _write_shard(
    tar_path: Path,
    rows: list[dict[str, Any]],
    grounds: list[Path],
    source: PatchSource,
    max_ground_side: int | None,
    batch_size: int,
) -> _ShardResult:
    skipped: list[dict[str, str]] = []
    samples = 0
    with atomic_path(tar_path) as tmp, tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for s in range(0, len(rows), batch_size):
            chunk = rows[s : s + batch_size]
            batch = source.read([r["lon"] for r in chunk], [r["lat"] for r in chunk])
            for i, row in enumerate(chunk):
                sid = row["id"]
                if not batch.ok[i]:
                    skipped.append({"id": sid, "reason": "no_imagery", "detail": batch.errors[i]})
                    continue
                try:
                    ground, ext = _ground_bytes(grounds[s + i], max_ground_side)
                except (OSError, ValueError, Image.DecompressionBombError) as exc:
                    skipped.append({"id": sid, "reason": "unreadable", "detail": str(exc)})
                    continue
                _add(tar, f"{sid}.{ext}", ground)
                _add(tar, f"{sid}.{OVERHEAD}", _png(batch.patches[i]))
                _add(tar, f"{sid}.{META}", json.dumps(row, sort_keys=True).encode("utf-8"))
                samples += 1
    return _ShardResult(samples, skipped)


def _plan_digest(source_key: str, max_ground_side: int | None, ids: list[str]) -> str:
    return xxhash.xxh3_128_hexdigest(json.dumps([source_key, max_ground_side, ids]).encode())


def _clean_stale(out_dir: Path, keep: set[str]) -> None:
    """Remove temp files of an interrupted run and shards no longer in the plan
    (one writer per folder is assumed)."""
    for path in out_dir.glob(".shard-*"):
        path.unlink()
    for path in out_dir.glob("shard-*.*"):
        if path.name.split(".", 1)[0] not in keep:
            path.unlink()


def write_shards(
    pairs_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    samples_per_shard: int = 1000,
    imagery: PatchSource | None = None,
    max_ground_side: int | None = None,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Cut every pair's patch and write shards to ``out_dir``, resuming where a previous
    run with the same table and options stopped.

    ``imagery`` defaults to the table's source (``source_from_config``); a source given
    (e.g. with its own tile cache) must have the table's key. ``max_ground_side``
    shrinks larger photos (re-encoded as JPEG, upright). Returns the summary.
    """
    if samples_per_shard < 1 or batch_size < 1:
        raise InputError("samples_per_shard and batch_size must be at least 1")
    if max_ground_side is not None and max_ground_side < 16:
        raise InputError("max_ground_side must be at least 16 pixels")
    pairs = read_pairs(pairs_path)
    source = imagery if imagery is not None else source_from_config(pairs.imagery)
    refs = set(pairs.table.column("overhead_ref").to_pylist())
    if refs - {source.key}:
        raise DataError(f"the table was made for imagery {sorted(refs)}, not {source.key}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = pairs.table.select(COLUMNS).to_pylist()
    grounds = pairs.ground_paths()
    count = math.ceil(len(rows) / samples_per_shard)
    _clean_stale(out_dir, {shard_name(k) for k in range(count)})
    shards, skipped, resumed = [], [], 0
    for k in range(count):
        start, stop = k * samples_per_shard, min((k + 1) * samples_per_shard, len(rows))
        ids = [r["id"] for r in rows[start:stop]]
        plan = _plan_digest(source.key, max_ground_side, ids)
        tar_path, record_path = out_dir / f"{shard_name(k)}.tar", out_dir / f"{shard_name(k)}.json"
        record = _read_record(record_path)
        if record and record["plan"] == plan and _size(tar_path) == record["bytes"]:
            resumed += 1
        else:
            result = _write_shard(
                tar_path, rows[start:stop], grounds[start:stop], source, max_ground_side, batch_size
            )
            record = {
                "name": tar_path.name,
                "plan": plan,
                "rows": [start, stop],
                "bytes": _size(tar_path),
                "samples": result.samples,
                "skipped": result.skipped,
            }
            write_json_atomic(record_path, record)
        shards.append({"name": record["name"], "samples": record["samples"]})
        skipped.extend(record["skipped"])
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "samples": sum(s["samples"] for s in shards),
        "pixels": source.patch_size,
        "overhead_ref": source.key,
        "imagery": source.to_config(),
        "attribution": source.attribution,
        "max_ground_side": max_ground_side,
        "shards": shards,
    }
    with (
        atomic_path(out_dir / "skipped.csv") as tmp,
        open(tmp, "w", newline="", encoding="utf-8") as fh,
    ):
        writer = csv.DictWriter(fh, fieldnames=["id", "reason", "detail"])
        writer.writeheader()
        writer.writerows(skipped)
    write_json_atomic(out_dir / MANIFEST, manifest)
    reasons = Counter(s["reason"] for s in skipped)
    return {
        "out": str(out_dir),
        "shards": count,
        "resumed_shards": resumed,
        "samples": manifest["samples"],
        "skipped": len(skipped),
        "skipped_by_reason": dict(sorted(reasons.items())),
        "attribution": source.attribution,
    }


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _read_record(path: Path) -> dict[str, Any] | None:
    with contextlib.suppress(FileNotFoundError, ValueError):
        return json.loads(path.read_text(encoding="utf-8"))
    return None


class ShardReader:
    """A finished shard set's manifest: its shards, sample count and imagery. Samples
    are read by row through ``omnimap.datasets.crossview.open_pairs``."""

    def __init__(self, shard_dir: str | os.PathLike):
        self.root = Path(shard_dir)
        manifest = self.root / MANIFEST
        try:
            info = json.loads(manifest.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(
                f"no {MANIFEST} in {self.root}: the shard set is unfinished "
                "(run `omnimap pairs shard` again to complete it)"
            ) from None
        except ValueError as exc:
            raise DataError(f"{manifest} is not valid JSON: {exc}") from None
        if info.get("format") != FORMAT or info.get("version") != VERSION:
            raise DataError(
                f"{manifest}: unsupported format {info.get('format')} v{info.get('version')}"
            )
        self.manifest = info
        self.shards: list[dict[str, Any]] = info["shards"]

    def __len__(self) -> int:
        return int(self.manifest["samples"])

    @property
    def imagery(self) -> dict[str, Any]:
        return self.manifest["imagery"]

    @property
    def attribution(self) -> str:
        return self.manifest["attribution"]
