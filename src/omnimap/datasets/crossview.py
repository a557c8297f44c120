"""Paired samples for training and evaluation, by row: place, time, photo, overhead.

Two layouts of the same samples (``omnimap.datasets.pairs``):

- a shard folder (``omnimap pairs shard``): patches already cut, read by row straight
  from the tar members (an index of member offsets is built once from the headers),
  so any row order (a seeded permutation per epoch, a rank's slice) costs one read;
- a pairs table (GeoParquet): patches cut from the imagery source on demand, or all
  at once into memory when they fit (``preload``).

Teacher embeddings of the photos are stored beside the data (an embedding store under
``teacher/``, keyed by the teacher's weight digest and the photo ids), computed in
chunks only for ids that lack one.

Times: photos carry local civil time (EXIF) and, when known, its UTC offset. The map
engine's convention is local *mean solar* time at each cell, so with an offset the
time features use UTC + lon/15 h, the same clock a map at that moment uses.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image, ImageOps

from omnimap.core.digest import text_keys
from omnimap.core.errors import DataError, InputError
from omnimap.core.store import ArrayStore
from omnimap.datasets.pairs.shards import ShardReader
from omnimap.datasets.pairs.table import read_pairs
from omnimap.geo.timefeat import MS_PER_DEGREE_EAST, metadata_features, split_datetime64
from omnimap.sources import source_from_config
from omnimap.teachers.base import Teacher
from omnimap.teachers.clip import CLIPTeacher
from omnimap.teachers.store import EmbeddingStore, space_slug

PATCH_BATCH = 256  # overhead patches read per step when preloading
MS_PER_MINUTE = 60_000.0
TEACHER_CHUNK = 2_048  # photos embedded per stored chunk: an interrupted pass resumes


def local_solar_features(
    lon, lat, datetime_local: Sequence[str | None], utc_offset_minutes: Sequence[int | None]
) -> np.ndarray:
    """(N, 12) metadata values. A None time leaves the 8 time values zero (time
    unknown); a None offset uses the civil time as it is."""
    lon, lat = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    known = np.array([t is not None for t in datetime_local], dtype=bool)
    try:
        civil = np.array(
            [t if t is not None else "2000-01-01T00:00" for t in datetime_local],
            dtype="datetime64[ms]",
        )
    except ValueError as exc:
        raise DataError(f"bad local date-time in the pairs: {exc}") from None
    offset = np.array([np.nan if v is None else float(v) for v in utc_offset_minutes])
    shift_ms = np.where(
        np.isfinite(offset),
        np.round(lon * MS_PER_DEGREE_EAST - np.nan_to_num(offset) * MS_PER_MINUTE),
        0.0,
    )
    out = metadata_features(lon, lat, split_datetime64(civil + shift_ms.astype("timedelta64[ms]")))
    out[~known] = metadata_features(lon[~known], lat[~known], None)
    return out


class SampleStore(Protocol):
    """Where a layout keeps the pixels."""

    patch_size: int

    def patches(
        self, rows: np.ndarray, size: int, lon: np.ndarray, lat: np.ndarray
    ) -> np.ndarray: ...

    def photo(self, row: int) -> Image.Image: ...


def _upright(data: bytes | Path, label: str) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
            return ImageOps.exif_transpose(im).convert("RGB")
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read photo {label}: {exc}") from None


class ImageryStore:
    """A pairs table's layout: photo files, patches cut from the imagery source."""

    def __init__(self, source, photos: list[Path]):
        self.source, self.photos = source, photos
        self.patch_size = int(source.patch_size)

    def patches(self, rows: np.ndarray, size: int, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        return self.source.patches(lon, lat, size)

    def photo(self, row: int) -> Image.Image:
        return _upright(self.photos[row], str(self.photos[row]))


@dataclass(frozen=True)
class _Member:
    path: str
    offset: int
    size: int


class ShardStore:
    """A shard folder's layout, read by row through tar member offsets."""

    def __init__(self, overhead: list[_Member], ground: list[_Member], patch_size: int):
        self.overhead, self.ground, self.patch_size = overhead, ground, patch_size

    @staticmethod
    def _read(m: _Member) -> bytes:
        fd = os.open(m.path, os.O_RDONLY)
        try:  # pread: no shared file position, safe from any thread
            return os.pread(fd, m.size, m.offset)
        finally:
            os.close(fd)

    def patches(self, rows: np.ndarray, size: int, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        if size != self.patch_size:
            raise InputError(f"the shards hold {self.patch_size}-pixel patches, not {size}")
        out = np.empty((len(rows), 3, size, size), dtype=np.uint8)
        for i, r in enumerate(rows):
            with Image.open(io.BytesIO(self._read(self.overhead[r]))) as im:
                out[i] = np.asarray(im.convert("RGB")).transpose(2, 0, 1)
        return out

    def photo(self, row: int) -> Image.Image:
        return _upright(
            self._read(self.ground[row]), f"{self.ground[row].path}@{self.ground[row].offset}"
        )


@dataclass
class CrossViewData:
    ids: np.ndarray  # (N,) str
    lon: np.ndarray  # (N,) float64
    lat: np.ndarray
    meta: np.ndarray  # (N, 12) float32
    store: SampleStore
    imagery: dict  # the imagery source's config (recorded in the model's config)
    cache_dir: Path  # teacher embeddings live in cache_dir/teacher
    rows: np.ndarray | None = None  # this view's rows of the store (None: all)
    _preloaded: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def patch_size(self) -> int:
        return self.store.patch_size

    def _store_rows(self, rows: np.ndarray) -> np.ndarray:
        return rows if self.rows is None else self.rows[rows]

    def subset(self, rows: np.ndarray) -> CrossViewData:
        rows = np.asarray(rows)
        kept = {size: patches[rows] for size, patches in self._preloaded.items()}
        return CrossViewData(self.ids[rows], self.lon[rows], self.lat[rows], self.meta[rows], self.store,
                             self.imagery, self.cache_dir, self._store_rows(rows), kept)  # fmt: skip

    def preload(self, size: int, budget_bytes: int, progress: bool = False) -> bool:
        """Read every overhead patch once and keep them in memory if they fit the
        budget (cutting a patch out of imagery costs milliseconds). Returns whether
        they are in memory."""
        from tqdm.auto import tqdm

        if len(self) * 3 * size * size > budget_bytes:
            return False
        if size not in self._preloaded:
            out = np.empty((len(self), 3, size, size), dtype=np.uint8)
            for s in tqdm(
                range(0, len(self), PATCH_BATCH),
                desc="overhead",
                unit="batch",
                disable=not progress,
            ):
                rows = np.arange(s, min(s + PATCH_BATCH, len(self)))
                out[rows] = self._read_patches(rows, size)
            self._preloaded[size] = out
        return True

    def patches(self, rows: np.ndarray, size: int | None = None) -> np.ndarray:
        """(len(rows), 3, P, P) uint8 overhead patches."""
        rows = np.asarray(rows)
        size = int(size or self.patch_size)
        if size in self._preloaded:
            return self._preloaded[size][rows]
        return self._read_patches(rows, size)

    def _read_patches(self, rows: np.ndarray, size: int) -> np.ndarray:
        return self.store.patches(
            self._store_rows(rows), size, lon=self.lon[rows], lat=self.lat[rows]
        )

    def photos(self, rows: np.ndarray) -> Sequence[Image.Image]:
        """The ground photos of ``rows``, opened lazily (memory stays one batch)."""
        return _LazyPhotos(self.store, self._store_rows(np.asarray(rows)))

    def photo_pixels(self, teacher: CLIPTeacher, rows: np.ndarray) -> torch.Tensor:
        """Preprocessed photos of ``rows`` for the teacher's image tower."""
        return torch.stack([teacher.preprocessing.pixels(im) for im in self.photos(rows)])

    def teacher_store(self, teacher: Teacher) -> EmbeddingStore:
        """The embedding store beside the data for this teacher's photo embeddings."""
        space = teacher.modality_key("image")
        return EmbeddingStore(space, ArrayStore(space_slug(space), root=self.cache_dir / "teacher"))

    def photo_keys(self) -> np.ndarray:
        """(N, 2) uint64 keys of the photos' teacher embeddings in ``teacher_store``."""
        return text_keys([str(i) for i in self.ids])

    def teacher_vectors(self, teacher: Teacher, progress: bool = False) -> np.ndarray:
        """(N, D) float32 teacher embeddings of the photos: stored ones are read, the
        missing ones computed and stored chunk by chunk."""
        store = self.teacher_store(teacher)
        keys = self.photo_keys()
        vectors, found = store.lookup(keys)
        if vectors.shape[1] != teacher.dim:
            vectors = np.zeros((len(self), teacher.dim), dtype=np.float32)
        missing = np.flatnonzero(~found)
        for s in range(0, len(missing), TEACHER_CHUNK):
            chunk = missing[s : s + TEACHER_CHUNK]
            vectors[chunk] = teacher.embed("image", self.photos(chunk), progress=progress)
            store.add(keys[chunk], vectors[chunk])
        return vectors


class _LazyPhotos(Sequence):
    def __init__(self, store: SampleStore, rows: np.ndarray):
        self.store, self.rows = store, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self.store.photo(int(self.rows[index]))


def open_pairs(path: str | Path, imagery: dict | None = None) -> CrossViewData:
    """Samples from a shard folder (has manifest.json) or a pairs table (.parquet).
    ``imagery`` (a source config) replaces a table's own source; shards hold theirs."""
    path = Path(path)
    if path.is_dir():
        if imagery is not None:
            raise InputError("shards hold their own overhead patches: leave 'imagery' unset")
        return _open_shards(path)
    return _open_table(path, imagery)


def _open_table(path: Path, imagery: dict | None) -> CrossViewData:
    pairs = read_pairs(path)
    table = pairs.table
    lon, lat = table.column("lon").to_numpy(), table.column("lat").to_numpy()
    meta = local_solar_features(
        lon,
        lat,
        table.column("datetime_local").to_pylist(),
        table.column("utc_offset_minutes").to_pylist(),
    )
    source = source_from_config(imagery if imagery is not None else pairs.imagery)
    ids = np.asarray(table.column("id").to_pylist(), dtype=str)
    return CrossViewData(ids, lon, lat, meta, ImageryStore(source, pairs.ground_paths()), source.to_config(),
                         path.parent)  # fmt: skip


def _open_shards(root: Path) -> CrossViewData:
    reader = ShardReader(root)
    ids, rows, overhead, ground = [], [], [], []
    for entry in reader.shards:
        tar_path = root / entry["name"]
        members: dict[str, dict[str, tarfile.TarInfo]] = {}
        try:
            with tarfile.open(tar_path, "r:") as tar:
                for m in tar.getmembers():
                    sid, _, kind = m.name.partition(".")
                    members.setdefault(sid, {})[kind] = m
                for sid, fields in members.items():
                    photo = [k for k in fields if k not in ("overhead.png", "json")]
                    if "overhead.png" not in fields or "json" not in fields or len(photo) != 1:
                        raise DataError(f"{tar_path} has an incomplete sample {sid!r}")
                    rows.append(json.loads(tar.extractfile(fields["json"]).read()))
                    ids.append(sid)
                    overhead.append(
                        _Member(
                            str(tar_path),
                            fields["overhead.png"].offset_data,
                            fields["overhead.png"].size,
                        )
                    )
                    ground.append(
                        _Member(str(tar_path), fields[photo[0]].offset_data, fields[photo[0]].size)
                    )
        except (OSError, tarfile.TarError, ValueError) as exc:
            raise DataError(f"cannot read shard {tar_path}: {exc}") from None
    if len(ids) != len(reader):
        raise DataError(f"{root} holds {len(ids)} samples, its manifest says {len(reader)}")
    lon = np.array([r["lon"] for r in rows], dtype=np.float64)
    lat = np.array([r["lat"] for r in rows], dtype=np.float64)
    meta = local_solar_features(
        lon, lat, [r["datetime_local"] for r in rows], [r["utc_offset_minutes"] for r in rows]
    )
    store = ShardStore(overhead, ground, int(reader.manifest["pixels"]))
    return CrossViewData(
        np.asarray(ids, dtype=str), lon, lat, meta, store, dict(reader.imagery), root
    )
