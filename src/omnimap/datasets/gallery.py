"""Galleries: geotagged, timed ground observations with their teacher embeddings.

A gallery is a folder:

- ``observations.parquet``: GeoParquet, one row per observation: ``id`` (content digest
  of what was observed), ``lon``/``lat`` (WGS84), ``year``/``month``/``day`` and
  ``hour`` (local solar time; nullable), ``source`` (the description, or the photo's path
  relative to the folder), ``geometry`` (WKB points);
- ``embeddings.npy``: (N, D) float16 unit teacher vectors, row i = observation i
  (read with ``allow_pickle=False``);
- ``index.faiss``: a faiss inner-product index of those vectors (flat when small, IVF
  when big), serialised bytes;
- ``gallery.json``: format, teacher (name, kind, key, dim), modality, count, index kind
  and the xxh3 digest of every file above. Written last; opening checks every digest,
  so a damaged or half-copied gallery is refused with one line.

The folder is built beside its final name and renamed into place, so a crash never
leaves a gallery that opens.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError

from omnimap.core.digest import file_digest, text_digest
from omnimap.core.errors import DataError, InputError
from omnimap.core.lru import LRUCache
from omnimap.datasets.atlas.dataset import build_set
from omnimap.datasets.atlas.layers import GroundLayers
from omnimap.datasets.pairs.build import csv_reader, csv_row
from omnimap.datasets.pairs.exif import PhotoSkip
from omnimap.datasets.pairs.table import geo_metadata, read_pairs, wkb_point
from omnimap.geo.timefeat import LocalTime
from omnimap.teachers.base import Teacher

FORMAT = "omnimap-gallery"
VERSION = 1
FILES = ("observations.parquet", "embeddings.npy", "index.faiss")
MANIFEST = "gallery.json"
# Below this many observations the index scans them all (exact); above, IVF lists.
FLAT_MAX = 200_000
IVF_TRAIN_PER_LIST = 64
SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("lon", pa.float64(), nullable=False),
        pa.field("lat", pa.float64(), nullable=False),
        pa.field("year", pa.int16()),
        pa.field("month", pa.int16()),
        pa.field("day", pa.int16()),
        pa.field("hour", pa.float32()),
        pa.field("source", pa.string(), nullable=False),
        pa.field("geometry", pa.binary(), nullable=False),
    ]
)
_open_cache: LRUCache = LRUCache(4, 4 * 1024**3, lambda g: g.embeddings.nbytes)


@dataclass
class Observations:
    """What goes into a gallery: positions, optional local solar times, sources."""

    lon: np.ndarray
    lat: np.ndarray
    sources: list[str]  # descriptions or photo paths (relative to the gallery)
    time: dict[str, np.ndarray] | None = None  # year, month, day, hour (NaN hour: unknown)
    ids: list[str] | None = None  # content digests; default: digest of source + place + time

    def __post_init__(self) -> None:
        self.lon = np.asarray(self.lon, np.float64)
        self.lat = np.asarray(self.lat, np.float64)
        n = len(self.lon)
        if self.lat.shape != (n,) or len(self.sources) != n:
            raise InputError("observations need one lon, lat and source each")
        check_coordinates(self.lon, self.lat)


def check_coordinates(lon, lat) -> None:
    lon, lat = np.asarray(lon, np.float64), np.asarray(lat, np.float64)
    if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
        raise InputError("coordinates must be finite numbers")
    if (np.abs(lon) > 180).any() or (np.abs(lat) > 90).any():
        raise InputError("coordinates out of range: lon must be in [-180, 180], lat in [-90, 90]")


@dataclass
class Gallery:
    path: Path
    lon: np.ndarray  # (N,) float64
    lat: np.ndarray
    time: LocalTime | None  # None when no observation has a time
    sources: list[str]
    embeddings: np.ndarray  # (N, D) float16 unit vectors
    teacher: dict  # name, kind, key, dim
    modality: str
    index: object  # faiss index
    index_kind: str

    def __len__(self) -> int:
        return len(self.lon)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def check_teacher(self, teacher: Teacher) -> None:
        """DataError unless this gallery's vectors come from ``teacher``: the keys its
        manifest recorded (``teacher.to_config()``; a CLIP's text and image keys) match."""
        theirs = teacher.to_config()
        fields = [f for f in ("key", "image_key") if f in self.teacher or f in theirs]
        if any(self.teacher.get(f) != theirs.get(f) for f in fields):
            raise DataError(
                f"gallery {self.path.name} was built by teacher {_label(self.teacher.get('name'))} "
                f"({self.teacher.get('key')}), not {_label(teacher.name)} ({theirs.get('key')}); "
                "rebuild it with the model's teacher"
            )

    def search(self, q: np.ndarray, k: int, nprobe: int | None = None):
        """(scores, ids) of shape (Q, k): the nearest observations by inner product."""
        import faiss  # on use: faiss loads OpenMP and SIMD kernels

        q = np.ascontiguousarray(np.atleast_2d(q), dtype=np.float32)
        k = min(int(k), len(self))
        params = None
        if self.index_kind == "ivf":
            params = faiss.SearchParametersIVF(nprobe=nprobe or default_nprobe(self.index.nlist))
        scores, ids = self.index.search(q, k, params=params)
        return scores, ids


def _label(name) -> str:
    """A teacher's name for messages: a local folder by its last part, not its full path."""
    return Path(str(name)).name if Path(str(name)).is_absolute() else str(name)


def nlist_for(n: int) -> int:
    return max(1, min(int(math.sqrt(n)), n // IVF_TRAIN_PER_LIST))


def default_nprobe(nlist: int) -> int:
    # ~1/50 of the lists: on 1M atlas-like observations recall@10 >= 0.95 (bench_locate).
    return max(1, math.ceil(nlist / 50))


def build_index(vectors: np.ndarray, kind: str | None = None):
    import faiss

    n, d = vectors.shape
    kind = kind or ("flat" if n <= FLAT_MAX else "ivf")
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    else:
        nlist = nlist_for(n)
        index = faiss.index_factory(d, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = 10
        sample = np.random.default_rng(0).choice(
            n, min(n, IVF_TRAIN_PER_LIST * nlist), replace=False
        )
        index.train(np.ascontiguousarray(vectors[np.sort(sample)], dtype=np.float32))
    for s in range(0, n, 65_536):
        index.add(np.ascontiguousarray(vectors[s : s + 65_536], dtype=np.float32))
    return index, kind


def _ids(obs: Observations) -> list[str]:
    if obs.ids is not None:
        return list(obs.ids)
    t = obs.time
    out = []
    for i, src in enumerate(obs.sources):
        when = "" if t is None else f"{t['year'][i]}-{t['month'][i]}-{t['day'][i]}T{t['hour'][i]}"
        out.append(text_digest(f"{src}|{obs.lon[i]:.6f}|{obs.lat[i]:.6f}|{when}"))
    return out


def write_gallery(
    out: str | os.PathLike, obs: Observations, vectors: np.ndarray, teacher: Teacher,
    modality: str, index_kind: str | None = None,
) -> Path:  # fmt: skip
    """Write a gallery folder atomically (built beside ``out``, renamed into place)."""
    import faiss

    out = Path(out)
    n = len(obs.lon)
    if n == 0:
        raise InputError("a gallery needs at least one observation")
    vectors = np.asarray(vectors, np.float32)
    if vectors.shape != (n, teacher.dim):
        raise DataError(f"expected {n} x {teacher.dim} vectors, got {vectors.shape}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        t = obs.time
        nulls = [None] * n
        columns = {
            "id": _ids(obs), "lon": obs.lon, "lat": obs.lat,
            "year": nulls if t is None else t["year"], "month": nulls if t is None else t["month"],
            "day": nulls if t is None else t["day"], "hour": nulls if t is None else t["hour"],
            "source": list(obs.sources),
            "geometry": [wkb_point(x, y) for x, y in zip(obs.lon, obs.lat, strict=True)],
        }  # fmt: skip
        table = pa.Table.from_pydict(columns, schema=SCHEMA)
        table = table.replace_schema_metadata({
            b"geo": json.dumps(geo_metadata(obs.lon, obs.lat)),
            b"omnimap": json.dumps({"format": FORMAT, "version": VERSION}),
        })  # fmt: skip
        pq.write_table(table, tmp / FILES[0], compression="zstd")
        emb16 = vectors.astype(np.float16)
        np.save(tmp / FILES[1], emb16, allow_pickle=False)
        index, kind = build_index(emb16, index_kind)
        faiss.serialize_index(index).tofile(tmp / FILES[2])
        manifest = {
            "format": FORMAT, "version": VERSION, "count": n, "modality": modality,
            "teacher": teacher.to_config(), "index": kind,
            "digests": {name: file_digest(tmp / name) for name in FILES},
        }  # fmt: skip
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def open_gallery(path: str | os.PathLike) -> Gallery:
    """Open and verify a gallery (memoised per folder and file sizes and times)."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise DataError(
            f"{path} is not a gallery (no {MANIFEST}); build one with omnimap gallery build"
        )
    stats = [
        (f.stat().st_size, f.stat().st_mtime_ns)
        for f in (path / n for n in (MANIFEST, *FILES))
        if f.exists()
    ]
    key = f"{path.resolve()}|{stats}"  # any rewritten file is opened (and verified) afresh
    return _open_cache.get_or_compute(key, lambda: _read(path))


def _read(path: Path) -> Gallery:
    import faiss

    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"gallery {path.name}: unreadable {MANIFEST} ({exc})") from None
    if not isinstance(manifest, dict) or (manifest.get("format"), manifest.get("version")) != (
        FORMAT,
        VERSION,
    ):
        raise DataError(f"gallery {path.name}: not an {FORMAT} v{VERSION} manifest")
    digests = manifest.get("digests") or {}
    for name in FILES:
        f = path / name
        if not f.is_file() or digests.get(name) != file_digest(f):
            raise DataError(f"gallery {path.name}: {name} is missing or fails its digest check")
    try:
        table = pq.read_table(path / FILES[0])
        emb = np.load(path / FILES[1], allow_pickle=False)
        index = faiss.deserialize_index(np.fromfile(path / FILES[2], dtype=np.uint8))
    except (OSError, ValueError, RuntimeError, pa.ArrowException) as exc:
        raise DataError(f"gallery {path.name} is unreadable ({type(exc).__name__})") from None
    n = int(manifest.get("count", -1))
    teacher = manifest.get("teacher") or {}
    if table.num_rows != n or emb.shape != (n, int(teacher.get("dim", -1))) or index.ntotal != n:
        raise DataError(f"gallery {path.name}: row counts of its files disagree")
    if n == 0:
        raise DataError(f"gallery {path.name} is empty")
    time = None
    if table.column("hour").null_count < n:

        def col(name: str) -> np.ndarray:
            return table.column(name).fill_null(1).to_numpy().astype(np.int64)

        year, month, day = col("year"), col("month"), col("day")
        hour = table.column("hour").to_numpy(zero_copy_only=False).astype(np.float64)
        date = np.array([f"{y:04d}-{m:02d}-{d:02d}" for y, m, d in zip(year, month, day, strict=True)],
                        dtype="datetime64[D]")  # fmt: skip
        doy = (date - date.astype("datetime64[Y]")).astype(np.int64) + 1
        time = LocalTime(year, month, day, hour, doy)
    return Gallery(
        path=path, lon=table.column("lon").to_numpy(), lat=table.column("lat").to_numpy(),
        time=time, sources=table.column("source").to_pylist(), embeddings=emb, teacher=teacher,
        modality=str(manifest.get("modality", "text")), index=index,
        index_kind=str(manifest.get("index", "flat")),
    )  # fmt: skip


# -- builders ------------------------------------------------------------------


def atlas_observations(n: int, seed: int, accept=None, variants: int = 3) -> Observations:
    """``n`` atlas samples (place, local solar time, one description each)."""
    data = build_set(GroundLayers(), n, seed=seed, accept=accept, variants=variants)
    t = data.time
    return Observations(
        lon=data.lon.astype(np.float64), lat=data.lat.astype(np.float64), sources=data.descriptions,
        time={"year": t["year"], "month": t["month"], "day": t["day"], "hour": t["hour"]},
    )  # fmt: skip


def build_from_texts(out, obs: Observations, teacher: Teacher, progress: bool = True) -> Path:
    """A gallery of descriptions, embedded by a text teacher (each distinct text once)."""
    distinct, inverse = np.unique(np.array(obs.sources, dtype=object), return_inverse=True)
    vectors = teacher.embed("text", list(distinct), progress=progress)[inverse]
    return write_gallery(out, obs, vectors, teacher, "text")


@dataclass
class LocatedPhotos:
    """Photos with their true positions and (optional) local times: a pairs table's rows."""

    table: Path
    paths: list[Path]  # absolute
    lon: np.ndarray
    lat: np.ndarray
    stamps: list[str | None]  # ISO local wall-clock times, None where unknown
    ids: list[str] | None  # the pairs table's ids (a CSV has none)

    def __len__(self) -> int:
        return len(self.paths)

    def time(self) -> dict[str, np.ndarray] | None:
        """year, month, day, hour (NaN: unknown) per photo; None when none has a time."""
        return _times(self.stamps) if any(self.stamps) else None

    def images(self, start: int = 0, stop: int | None = None) -> list[Image.Image]:
        """The RGB photos of rows ``start:stop``; DataError naming one that cannot be read."""
        out = []
        for p in self.paths[start:stop]:
            try:
                with Image.open(p) as im:
                    out.append(im.convert("RGB"))
            except (OSError, UnidentifiedImageError):
                raise DataError(f"cannot read photo {p.name} of {self.table.name}") from None
        return out


def read_located_photos(path: str | os.PathLike) -> LocatedPhotos:
    """The rows of a pairs table (omnimap GeoParquet) or of a CSV with columns lon, lat,
    path and optionally datetime (paths relative to the table). Every row must hold a
    valid position and an existing photo: the first that does not is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"table {path} does not exist")
    if path.suffix.lower() == ".csv":
        paths, lon, lat, stamps = [], [], [], []
        reader = csv_reader(path, ("lon", "lat", "path"))
        for record in reader:
            try:
                rel, values = csv_row(record)
            except PhotoSkip as exc:
                raise InputError(f"{path.name} line {reader.line_num}: {exc}") from None
            paths.append(path.parent / rel)
            lon.append(values["lon"])
            lat.append(values["lat"])
            stamps.append(values["datetime_local"])
        photos = LocatedPhotos(path, paths, np.array(lon, np.float64), np.array(lat, np.float64),
                               stamps, None)  # fmt: skip
    else:
        pairs = read_pairs(path)
        t = pairs.table
        photos = LocatedPhotos(path, pairs.ground_paths(), t.column("lon").to_numpy(),
                               t.column("lat").to_numpy(), t.column("datetime_local").to_pylist(),
                               t.column("id").to_pylist())  # fmt: skip
    if len(photos) == 0:
        raise DataError(f"table {path.name} has no rows")
    check_coordinates(photos.lon, photos.lat)
    for p in photos.paths:
        if not p.is_file():
            rel = os.path.relpath(p, path.parent)
            raise InputError(f"photo {rel} listed in {path.name} does not exist")
    return photos


def build_from_pairs(out, pairs_path, teacher: Teacher, batch: int = 64) -> Path:
    """A gallery of the photos of a pairs table (or a CSV: :func:`read_located_photos`),
    embedded by an image teacher."""
    if "image" not in teacher.modalities:
        raise InputError(f"teacher {teacher.name} does not embed photos; use a CLIP teacher")
    photos = read_located_photos(pairs_path)
    out = Path(out)
    vectors = [teacher.embed("image", photos.images(s, s + batch))
               for s in range(0, len(photos), batch)]  # fmt: skip
    rel = [os.path.relpath(p, out.resolve().parent) for p in photos.paths]
    obs = Observations(photos.lon, photos.lat, rel, time=photos.time(), ids=photos.ids)
    return write_gallery(out, obs, np.concatenate(vectors), teacher, "image")


def _times(stamps: Sequence[str | None]) -> dict[str, np.ndarray]:
    n = len(stamps)
    year, month, day = (np.ones(n, np.int16) for _ in range(3))
    hour = np.full(n, np.nan, np.float32)
    for i, s in enumerate(stamps):
        if s:
            with contextlib.suppress(ValueError):
                d = np.datetime64(s, "s").astype(object)
                year[i], month[i], day[i] = d.year, d.month, d.day
                hour[i] = d.hour + d.minute / 60
    return {"year": year, "month": month, "day": day, "hour": hour}
