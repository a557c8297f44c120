"""The on-disk embedding field: a Zarr group of per-cell overhead embeddings.

Layout of FIELD/ (Zarr v3):

    zarr.json       group; attrs["omnimap_field"]: model, grid, CRS, dtype, quantisation
    o/              (nrows, ncols, D) overhead part o of the student embedding, stored as
                    float32, float16 or int8; chunks of (C, C, D) cells, uncompressed
    scale/          int8 only: (nrows, ncols) float32 per-cell scale, o = q * scale
    done/I_J.json   one record per finished chunk: the digest of its stored values

Why Zarr: chunked N-d arrays plus JSON metadata in a documented format that xarray,
dask and other languages read, and whose stores also cover object storage, so a field
built on a cluster is usable without omnimap. Why uncompressed: float16/int8 already
are the compression; zstd saved under 10% on embeddings and tripled read time here.

A chunk counts as built only when its done record exists, and is used only if its
stored values hash to the recorded digest. Values are written before the record, each
file by temp + rename (Zarr's LocalStore, and fileio for records), so a crash at any
point leaves every chunk either complete and recorded, or unrecorded and rebuilt by
the next build. A chunk damaged later (its file deleted or truncated, bytes flipped,
its record garbled) is never read: reading names the damage and the build command
that repairs it, and that build checks every recorded chunk and rebuilds exactly the
damaged ones.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnimap.core.digest import array_digest, hasher
from omnimap.core.errors import DataError, InputError
from omnimap.core.fileio import write_json_atomic
from omnimap.core.lru import LRUCache
from omnimap.fields import quantize
from omnimap.geo.grid import LatLonGrid
from omnimap.models.embedder import Embedder

FORMAT = "omnimap.field/1"
ATTR = "omnimap_field"
CRS = "EPSG:4326"
# Cells per chunk side: 16,384 cells, 12.6 MB at 384-d float16; small enough that a
# small region reads little, big enough for fast forward passes and few files.
DEFAULT_CHUNK = 128
# Verified chunks kept in memory per open field (a server reads the same ones for
# every tile of a view): ~40 chunks of 128 x 128 x 384 float16.
CHUNK_CACHE_BYTES = 512 * 1024**2
CONTENT = (
    "overhead part o of the student embedding (unnormalised); a cell's embedding at a "
    "time is normalize(o + m(location, time)), with m computed at query time"
)

ChunkId = tuple[int, int]
_RECORD = re.compile(r"^([0-9]+)_([0-9]+)\.json$")


class ChunkDamaged(DataError):
    """A recorded chunk whose files do not hold what its record says."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind  # missing, truncated, unreadable or corrupt


@dataclass(frozen=True)
class FieldSpec:
    """What a field holds; resuming a build must ask for the same."""

    model: dict  # name, key, weights_digest, source (to load it again), dim
    imagery: str  # imagery key: the pixels the overhead encoder saw
    grid: LatLonGrid
    dtype: str
    chunk: int

    def metadata(self) -> dict:
        g = self.grid
        return {
            "format": FORMAT,
            "content": CONTENT,
            "model": self.model,
            "imagery": self.imagery,
            "crs": CRS,
            "grid": {
                "resolution": g.resolution,
                "col0": g.col0,
                "row0": g.row0,
                "ncols": g.ncols,
                "nrows": g.nrows,
            },  # fmt: skip
            "chunk": {"rows": self.chunk, "cols": self.chunk},
            "dtype": self.dtype,
            "quantisation": quantize.scheme(self.dtype),
        }

    @classmethod
    def from_metadata(cls, meta: dict) -> FieldSpec:
        g = meta["grid"]
        grid = LatLonGrid(float(g["resolution"]), int(g["col0"]), int(g["row0"]),
                          int(g["ncols"]), int(g["nrows"]))  # fmt: skip
        return cls(dict(meta["model"]), str(meta["imagery"]), grid, str(meta["dtype"]),
                   int(meta["chunk"]["rows"]))  # fmt: skip

    def differences(self, other: FieldSpec) -> list[str]:
        """What differs from ``other`` in ways that change the stored values."""
        pairs = {
            "model": (self.model["weights_digest"], other.model["weights_digest"]),
            "imagery": (self.imagery, other.imagery),
            "grid": (self.grid, other.grid),
            "dtype": (self.dtype, other.dtype),
            "chunk": (self.chunk, other.chunk),
        }
        return [f"{name} {a} vs {b}" for name, (a, b) in pairs.items() if a != b]


def _digest(stored: np.ndarray, scale: np.ndarray | None) -> str:
    return array_digest(stored) if scale is None else array_digest(stored, scale)


class Field:
    """An embedding field on disk: metadata, chunk geometry, verified chunk I/O."""

    def __init__(self, path: Path, spec: FieldSpec, group, writable: bool):
        self.path, self.spec, self.writable = path, spec, writable
        self._o = group["o"]
        self._scale = group["scale"] if spec.dtype == "int8" else None
        self._chunks: LRUCache[np.ndarray] = LRUCache(4096, CHUNK_CACHE_BYTES, lambda a: a.nbytes)
        self._content_digest: str | None = None

    # -- opening -----------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike, writable: bool = False) -> Field:
        import zarr

        path = Path(path)
        if not (path / "zarr.json").is_file():
            if path.exists():
                raise DataError(f"{path} is not an omnimap field (it has no zarr.json)")
            raise DataError(f"field {path} does not exist; build it with: omnimap field build")
        try:
            group = zarr.open_group(store=str(path), mode="r+" if writable else "r")
            meta = group.attrs.get(ATTR)
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise DataError(f"{path} is a Zarr group but not an omnimap field ({FORMAT})")
            return cls(path, FieldSpec.from_metadata(meta), group, writable)
        except (KeyError, ValueError, TypeError, OSError) as exc:
            raise DataError(f"field {path} is corrupt: {type(exc).__name__}: {exc}") from None

    @classmethod
    def create(cls, path: str | os.PathLike, spec: FieldSpec) -> Field:
        """A new empty field at ``path``, or the one already there if it has the same
        spec (a resumed build)."""
        path = Path(path)
        if not (path / "zarr.json").is_file():
            if path.exists() and (not path.is_dir() or any(path.iterdir())):
                raise InputError(f"{path} exists and is not an omnimap field; choose another --out")
            try:
                cls._create_new(path, spec)
            except OSError:
                if not (path / "zarr.json").is_file():  # not just a concurrent creator
                    raise
        field = cls.open(path, writable=True)
        diffs = field.spec.differences(spec)
        if diffs:
            raise InputError(
                f"{path} holds a field built with other options ({'; '.join(diffs)}); "
                "use another --out or delete it"
            )
        return field

    @staticmethod
    def _create_new(path: Path, spec: FieldSpec) -> None:
        import zarr

        # Made in a temp dir and renamed into place: a field directory always has its
        # metadata and arrays, so the only partial state is unbuilt chunks.
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            g, c, dim = spec.grid, spec.chunk, int(spec.model["dim"])
            group = zarr.open_group(store=str(tmp), mode="w")
            group.create_array("o", shape=(g.nrows, g.ncols, dim), chunks=(c, c, dim),
                               dtype=spec.dtype, compressors=None, fill_value=0,
                               dimension_names=("lat", "lon", "feature"))  # fmt: skip
            if spec.dtype == "int8":
                group.create_array("scale", shape=(g.nrows, g.ncols), chunks=(c, c),
                                   dtype="float32", compressors=None, fill_value=0,
                                   dimension_names=("lat", "lon"))  # fmt: skip
            group.attrs[ATTR] = spec.metadata()
            (tmp / "done").mkdir()
            if path.is_dir():
                path.rmdir()  # an empty directory the user made for it
            os.rename(tmp, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # -- geometry ----------------------------------------------------------------

    @property
    def grid(self) -> LatLonGrid:
        return self.spec.grid

    @property
    def dim(self) -> int:
        return int(self.spec.model["dim"])

    def chunk_ids(self) -> list[ChunkId]:
        c, g = self.spec.chunk, self.grid
        return [(i, j) for i in range(-(-g.nrows // c)) for j in range(-(-g.ncols // c))]

    def chunk_bounds(self, cid: ChunkId) -> tuple[int, int, int, int]:
        """(row0, row1, col0, col1) of a chunk, in field cells."""
        c, g = self.spec.chunk, self.grid
        i, j = cid
        return i * c, min(g.nrows, (i + 1) * c), j * c, min(g.ncols, (j + 1) * c)

    def subgrid(self, r0: int, r1: int, c0: int, c1: int) -> LatLonGrid:
        """The field cells [r0, r1) x [c0, c1) as a grid on the same global lattice."""
        g = self.grid
        return LatLonGrid(g.resolution, g.col0 + c0, g.row0 + r0, c1 - c0, r1 - r0)

    # -- chunk I/O ---------------------------------------------------------------

    def _record_path(self, cid: ChunkId) -> Path:
        return self.path / "done" / f"{cid[0]}_{cid[1]}.json"

    def done(self) -> set[ChunkId]:
        """Chunks with a done record (temp files of atomic writes start with '.')."""
        out = set()
        try:
            names = os.listdir(self.path / "done")
        except OSError as exc:
            raise DataError(f"field {self.path} is corrupt: its done/ directory is unreadable "
                            f"({exc.strerror}); {self.repair_hint()}") from None  # fmt: skip
        for name in names:
            match = _RECORD.match(name)
            if match:
                out.add((int(match[1]), int(match[2])))
        return out

    def repair_command(self) -> str:
        """The build command that finishes or repairs this field (same options)."""
        g, spec = self.grid, self.spec
        west, south, east, north = g.bounds
        east = east - 360.0 if east > 180.0 else east
        bbox = ",".join(f"{v:.9g}" for v in (west, south, east, north))
        return (f"omnimap field build --out {shlex.quote(str(self.path))} --resolution "
                f"{g.resolution:.9g} --bbox={bbox} --model {shlex.quote(str(spec.model['source']))} "
                f"--dtype {spec.dtype} --chunk {spec.chunk}")  # fmt: skip

    def repair_hint(self) -> str:
        return f"rebuild it with: {self.repair_command()}"

    def _chunk_files(self, cid: ChunkId) -> list[tuple[Path, int]]:
        """(file, expected bytes) of a chunk's stored values: uncompressed Zarr chunks
        are always full size, edge chunks padded."""
        c = self.spec.chunk
        o = self.path / "o" / self._o.metadata.encode_chunk_key((*cid, 0))
        files = [(o, c * c * self.dim * np.dtype(self.spec.dtype).itemsize)]
        if self._scale is not None:
            scale = self.path / "scale" / self._scale.metadata.encode_chunk_key(cid)
            files.append((scale, c * c * 4))
        return files

    def _record(self, cid: ChunkId) -> dict:
        """A chunk's done record; FileNotFoundError if it has none, DataError if it is
        not a record of this chunk."""
        raw = self._record_path(cid).read_bytes()
        try:
            record = json.loads(raw.decode("utf-8"))
            if not isinstance(record, dict) or record.get("chunk") != list(cid):
                raise ValueError("not this chunk's record")
            if not isinstance(record.get("digest"), str):
                raise ValueError("no digest")
        except ValueError:
            raise self._damage(cid, "unreadable", "has an unreadable done record") from None
        return record

    def _damage(self, cid: ChunkId, kind: str, what: str) -> ChunkDamaged:
        return ChunkDamaged(kind, f"chunk {cid} of field {self.path} {what}; {self.repair_hint()}")

    def _stored(self, cid: ChunkId) -> tuple[np.ndarray, np.ndarray | None]:
        """A recorded chunk's stored values, checked against the record (DataError
        naming the damage: missing, truncated, digest mismatch)."""
        record = self._record(cid)
        for path, size in self._chunk_files(cid):
            try:
                actual = path.stat().st_size
            except FileNotFoundError:
                raise self._damage(cid, "missing", "is missing (its file was deleted)") from None
            if actual != size:
                raise self._damage(cid, "truncated", f"is truncated ({actual} of {size} bytes)")
        r0, r1, c0, c1 = self.chunk_bounds(cid)
        try:
            stored = self._o[r0:r1, c0:c1]
            scale = self._scale[r0:r1, c0:c1] if self._scale is not None else None
        except (ValueError, OSError) as exc:
            raise self._damage(cid, "unreadable", f"is unreadable ({type(exc).__name__})") from None
        if _digest(stored, scale) != record["digest"]:
            raise self._damage(cid, "corrupt", "is corrupt (digest mismatch)")
        return stored, scale

    def verify_built(self, progress=None) -> dict[ChunkId, str]:
        """Check every recorded chunk against its files; drop the records of damaged
        ones (so a build recomputes them). Returns what was wrong with each."""
        damaged = {}
        for cid in sorted(self.done()):
            try:
                self._stored(cid)
            except FileNotFoundError:
                continue  # its record went meanwhile
            except ChunkDamaged as exc:
                damaged[cid] = exc.kind
                self._record_path(cid).unlink(missing_ok=True)
                self._chunks.pop(cid)
            if progress is not None:
                progress(cid)
        return damaged

    def write_chunk(self, cid: ChunkId, o: np.ndarray) -> None:
        """Store a chunk's float32 embeddings (cells row-major, D), then record it."""
        r0, r1, c0, c1 = self.chunk_bounds(cid)
        stored, scale = quantize.encode(o.reshape(r1 - r0, c1 - c0, self.dim), self.spec.dtype)
        self._o[r0:r1, c0:c1] = stored
        if scale is not None:
            self._scale[r0:r1, c0:c1] = scale
        self._write_record(cid, {"chunk": list(cid), "digest": _digest(stored, scale)})
        self._chunks.pop(cid)

    def _write_record(self, cid: ChunkId, record: dict) -> None:
        write_json_atomic(self._record_path(cid), record)

    def read_chunk(self, cid: ChunkId) -> np.ndarray:
        """A built chunk's embeddings (rows, cols, D), verified against its record:
        float16 and float32 as stored, int8 decoded to float32. Read-only (shared)."""
        return self._chunks.get_or_compute(cid, lambda: self._read_chunk(cid))

    def _read_chunk(self, cid: ChunkId) -> np.ndarray:
        try:
            stored, scale = self._stored(cid)
        except FileNotFoundError:
            built, total = len(self.done()), len(self.chunk_ids())
            raise DataError(
                f"field {self.path} is incomplete ({built} of {total} chunks built; chunk "
                f"{cid} is needed); finish it with: {self.repair_command()}"
            ) from None
        values = quantize.decode(stored, scale) if scale is not None else np.asarray(stored)
        values.flags.writeable = False
        return values

    def tiles(
        self, r0: int, r1: int, c0: int, c1: int
    ) -> Iterator[tuple[int, int, int, int, np.ndarray]]:
        """(row0, row1, col0, col1, embeddings) of the window [r0, r1) x [c0, c1), one
        piece per chunk it touches; only those chunks are read."""
        c = self.spec.chunk
        for i in range(r0 // c, (r1 - 1) // c + 1):
            for j in range(c0 // c, (c1 - 1) // c + 1):
                cr0, cr1, cc0, cc1 = self.chunk_bounds((i, j))
                a0, a1, b0, b1 = max(r0, cr0), min(r1, cr1), max(c0, cc0), min(c1, cc1)
                tile = self.read_chunk((i, j))
                yield a0, a1, b0, b1, tile[a0 - cr0 : a1 - cr0, b0 - cc0 : b1 - cc0]

    def content_digest(self) -> str:
        """Digest of every chunk's record: changes whenever any stored value does.
        Raises DataError if the field is incomplete. Memoised on a read-only field."""
        if not self.writable and self._content_digest is not None:
            return self._content_digest
        ids = self.chunk_ids()
        missing = len(set(ids) - self.done())
        if missing:
            raise DataError(
                f"field {self.path} is incomplete ({len(ids) - missing} of {len(ids)} chunks "
                f"built); finish it with: {self.repair_command()}"
            )
        h = hasher()
        for cid in ids:
            h.update(self._record_path(cid).read_bytes())
        self._content_digest = h.hexdigest()
        return self._content_digest

    # -- building ----------------------------------------------------------------

    @contextlib.contextmanager
    def build_lock(self) -> Iterator[None]:
        """Held by the process driving a build: one build per field at a time, which
        also makes it safe to delete temp files left by a crashed one."""
        with open(self.path / ".build.lock", "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise InputError(f"field {self.path} is being built by another process") from None
            # Temp files of a killed build: Zarr's chunk writes and fileio's records.
            for stale in [*self.path.rglob("*.partial"), *(self.path / "done").glob(".*")]:
                stale.unlink(missing_ok=True)
            yield


def build_chunk(embedder: Embedder, field: Field, cid: ChunkId) -> int:
    """Compute and store one chunk with the field's model;
    returns its number of cells (the local and Ray engines both run this)."""
    grid = field.subgrid(*field.chunk_bounds(cid))
    field.write_chunk(cid, embedder.overhead(*grid.centers()))
    return grid.size
