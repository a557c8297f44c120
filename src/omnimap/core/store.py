"""The one store of computed arrays: content-keyed entries, written atomically, verified
on read, bounded in size. Every cache of omnimap uses it (cell embeddings, text and
other teacher embeddings, XYZ tiles, the GeoCLIP gallery); the server uses its
in-memory twin, :class:`MemoryStore`.

An entry is a data file (the named arrays, back to back) and a JSON manifest (key,
arrays with shape/dtype/offset, xxh3 digest of the data file), both renamed into
place, manifest last, so a crash never leaves anything that reads as valid. Reading
checks the digest; a damaged entry is removed and its caller recomputes.

A cache is an optimisation, so nothing here ever breaks a map: a directory that
cannot be written (read-only, full disk) turns writing off for the process with one
warning; reads that fail are misses. Temp files of killed writers are removed (each
live writer holds a lock on its temp file, so two processes never remove each
other's). The store keeps its total size under a limit (``OMNIMAP_CACHE_MAX_BYTES``,
default :data:`DEFAULT_LIMIT_BYTES`), evicting the least recently used entries.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnimap.core.digest import hasher, text_digest
from omnimap.core.errors import InputError
from omnimap.core.lru import LRUCache
from omnimap.core.paths import cache_dir

log = logging.getLogger(__name__)

FORMAT = "omnimap.store/1"
DEFAULT_LIMIT_BYTES = 4 * 1024**3
LIMIT_ENV = "OMNIMAP_CACHE_MAX_BYTES"
# One entry may take at most this share of the limit: the float16 overhead part of the
# world at 0.1 deg (5 GB) is streamed, not cached.
ENTRY_SHARE = 0.5
_TEMP = re.compile(r"^\..+\.tmp$")
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_READ_BLOCK = 64 * 1024**2


class CorruptEntry(Exception):
    """An entry whose bytes do not match its recorded digest."""


def limit_bytes() -> int:
    """The size limit of the on-disk store: ``OMNIMAP_CACHE_MAX_BYTES`` (bytes, or a
    number with K, M, G or T), else :data:`DEFAULT_LIMIT_BYTES`."""
    raw = os.environ.get(LIMIT_ENV, "").strip().upper().removesuffix("B")
    if not raw:
        return DEFAULT_LIMIT_BYTES
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)I?", raw)
    if match is None:
        raise InputError(f"{LIMIT_ENV} must be a size such as 2G or 500M, got {raw!r}")
    return int(float(match[1]) * _UNITS[match[2]])


@dataclass(frozen=True)
class ArraySpec:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize


@dataclass(frozen=True)
class Entry:
    """A stored entry. ``read`` checks the digest in the same pass; ``verify`` then
    ``read_rows`` serve entries too big to read whole."""

    path: Path
    arrays: dict[str, ArraySpec]
    digest: str

    @property
    def shape(self) -> tuple[int, ...]:
        return self.arrays["data"].shape

    def read_all(self) -> dict[str, np.ndarray]:
        try:
            raw = np.fromfile(self.path, dtype=np.uint8)
        except OSError as exc:
            raise CorruptEntry(f"{self.path}: {exc}") from None
        h = hasher()
        h.update(memoryview(raw))
        if h.hexdigest() != self.digest:
            raise CorruptEntry(str(self.path))
        return {
            s.name: raw[s.offset : s.offset + s.nbytes].view(s.dtype).reshape(s.shape)
            for s in self.arrays.values()
        }

    def read(self, name: str = "data") -> np.ndarray:
        return self.read_all()[name]

    def verify(self) -> None:
        h = hasher()
        try:
            with open(self.path, "rb") as fh:
                for block in iter(lambda: fh.read(_READ_BLOCK), b""):
                    h.update(block)
        except OSError as exc:
            raise CorruptEntry(f"{self.path}: {exc}") from None
        if h.hexdigest() != self.digest:
            raise CorruptEntry(str(self.path))

    def read_rows(self, start: int, stop: int, name: str = "data") -> np.ndarray:
        """Rows [start, stop) by plain reads (no memory map: a huge entry never counts
        against resident memory). Unchecked: call ``verify`` first."""
        s = self.arrays[name]
        count = (stop - start) * s.row_bytes // s.dtype.itemsize
        try:
            with open(self.path, "rb") as fh:
                fh.seek(s.offset + start * s.row_bytes)
                flat = np.fromfile(fh, dtype=s.dtype, count=count)
        except OSError as exc:
            raise CorruptEntry(f"{self.path}: {exc}") from None
        if flat.size != count:
            raise CorruptEntry(f"{self.path} is truncated")
        return flat.reshape((stop - start, *s.shape[1:]))


class _Writer:
    """Appends row blocks of one array to a locked temp file while hashing them. A
    failed write (full disk) is logged once and makes the entry be dropped."""

    def __init__(self, fh, shape: tuple[int, ...], dtype: np.dtype):
        self._fh, self.shape, self.dtype = fh, shape, dtype
        self._hash = hasher()
        self.rows_written = 0
        self.failed: OSError | None = None

    def write(self, rows: np.ndarray) -> None:
        data = np.ascontiguousarray(rows, dtype=self.dtype)
        if data.shape[1:] != self.shape[1:]:
            raise ValueError(f"rows of shape {data.shape[1:]} do not fit entry {self.shape}")
        self.rows_written += len(data)
        if self._fh is None or self.failed is not None:
            return
        buf = memoryview(data).cast("B")
        try:
            self._fh.write(buf)
        except OSError as exc:
            self.failed = exc
            return
        self._hash.update(buf)

    @property
    def digest(self) -> str:
        return self._hash.hexdigest()


class ArrayStore:
    """Entries under ``root/namespace`` (default root: omnimap's cache directory)."""

    persistent = True  # survives the process (what is only in memory need not go here)
    _warned: set[str] = set()
    _cleaned: set[str] = set()
    _lock = threading.Lock()

    def __init__(self, namespace: str, root: str | os.PathLike | None = None,
                 limit: int | None = None, bounded: bool | None = None):  # fmt: skip
        """``limit`` bounds this namespace alone (e.g. a tile server's cache); without
        it the store is bounded by the whole cache's limit when it lives in the cache
        (``bounded`` says otherwise: stores beside a data set are never evicted)."""
        self.root = Path(root) if root is not None else cache_dir()
        self.namespace = namespace
        self.directory = self.root / namespace
        self.limit = limit
        self.bounded = (root is None) if bounded is None else bounded
        self.writable = True

    # -- keys and files -----------------------------------------------------------

    def _paths(self, key: str) -> tuple[Path, Path]:
        name = text_digest(key)
        return self.directory / f"{name}.bin", self.directory / f"{name}.json"

    def _limit(self) -> int | None:
        return self.limit if self.limit is not None else (limit_bytes() if self.bounded else None)

    def fits(self, shape: tuple[int, ...], dtype, limit: int | None = None) -> bool:
        """Whether an array of this size is worth storing (under the entry limit)."""
        if not self.writable:
            return False
        whole = self._limit()
        bound = int(whole * ENTRY_SHARE) if whole is not None else 2**62
        bound = bound if limit is None else min(limit, bound)
        return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize <= bound

    # -- reading ------------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        """The entry, or None when missing or malformed (malformed ones are removed).
        Its digest is checked when it is read. A hit marks it recently used."""
        data_path, meta_path = self._paths(key)
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("format") != FORMAT or meta["key"] != key:
                raise ValueError("not this entry")
            arrays = {
                a["name"]: ArraySpec(a["name"], tuple(int(v) for v in a["shape"]),
                                     np.dtype(a["dtype"]), int(a["offset"]))
                for a in meta["arrays"]
            }  # fmt: skip
            size = sum(a.nbytes for a in arrays.values())
            if data_path.stat().st_size != size:
                raise ValueError("size mismatch")
            entry = Entry(data_path, arrays, str(meta["digest"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            self.remove(key)
            return None
        with contextlib.suppress(OSError):  # a read-only cache still serves hits
            os.utime(meta_path)
        return entry

    def read(self, key: str) -> dict[str, np.ndarray] | None:
        """Every array of an entry, verified; None if missing or damaged (removed)."""
        entry = self.get(key)
        if entry is None:
            return None
        try:
            return entry.read_all()
        except CorruptEntry:
            log.warning("cache entry %s failed its check; it will be recomputed", key)
            self.remove(key)
            return None

    # -- writing ------------------------------------------------------------------

    def _disable(self, exc: OSError) -> None:
        self.writable = False
        where = str(self.root)
        with self._lock:
            if where in self._warned:
                return
            self._warned.add(where)
        # Shown once per process: the map goes on without the cache.
        log.warning("omnimap: cache off, cannot write %s (%s)", where, exc.strerror or exc)

    def _prepare(self) -> bool:
        if not self.writable:
            return False
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._disable(exc)
            return False
        self._clean_stale_once()
        return True

    def _commit(self, key: str, specs: list[dict], digest: str) -> None:
        _, meta_path = self._paths(key)
        manifest = {"format": FORMAT, "key": key, "arrays": specs, "digest": digest}
        with _TempFile(meta_path) as tmp:
            tmp.fh.write(json.dumps(manifest).encode("utf-8"))
            tmp.commit()

    def put(self, key: str, arrays: dict[str, np.ndarray]) -> bool:
        """Store named arrays under ``key``; False if the store is not writable now."""
        if not self._prepare():
            return False
        data_path, _ = self._paths(key)
        specs, offset, h = [], 0, hasher()
        try:
            with _TempFile(data_path) as tmp:
                for name, array in arrays.items():
                    a = np.ascontiguousarray(array)
                    buf = memoryview(a).cast("B")
                    tmp.fh.write(buf)
                    h.update(buf)
                    specs.append({"name": name, "shape": list(a.shape), "dtype": a.dtype.str,
                                  "offset": offset})  # fmt: skip
                    offset += a.nbytes
                tmp.commit()
            self._commit(key, specs, h.hexdigest())
        except OSError as exc:
            self.remove(key)
            self._disable(exc)
            return False
        self._bound()
        return True

    @contextlib.contextmanager
    def writer(self, key: str, shape: tuple[int, ...], dtype) -> Iterator[_Writer]:
        """Stream one array ("data") row block by row block. It becomes an entry only
        if every row was written and the block raised nothing; a failing disk never
        stops the caller (its rows are still taken, then dropped)."""
        dtype, shape = np.dtype(dtype), tuple(int(v) for v in shape)
        data_path, _ = self._paths(key)
        tmp = None
        if self._prepare():
            try:
                tmp = _TempFile(data_path).open()
            except OSError as exc:
                self._disable(exc)
        writer = _Writer(tmp.fh if tmp else None, shape, dtype)
        try:
            yield writer
            if tmp is None:
                return
            if writer.failed is not None:
                self._disable(writer.failed)
            elif writer.rows_written == shape[0]:
                try:
                    tmp.commit()
                    spec = {"name": "data", "shape": list(shape), "dtype": dtype.str, "offset": 0}
                    self._commit(key, [spec], writer.digest)
                except OSError as exc:
                    self.remove(key)
                    self._disable(exc)
                    return
                self._bound()
        finally:
            if tmp is not None:
                tmp.close()

    def keys(self) -> list[str]:
        """The keys of this namespace's entries (unreadable manifests are skipped)."""
        out = []
        for meta_path in sorted(self.directory.glob("*.json")) if self.directory.is_dir() else []:
            try:
                out.append(str(json.loads(meta_path.read_text(encoding="utf-8"))["key"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return out

    def remove(self, key: str) -> None:
        for p in self._paths(key):
            with contextlib.suppress(OSError):
                p.unlink()

    # -- size, listing, cleaning --------------------------------------------------

    def _manifests(self, everywhere: bool = True) -> list[tuple[Path, int, float]]:
        """(manifest, data bytes, last use) of the entries of this store's namespace,
        or of every namespace under the root."""
        out = []
        base = self.root if everywhere else self.directory
        try:
            found = list(base.rglob("*.json")) if base.is_dir() else []
        except OSError:  # an unreadable directory: nothing to count or evict
            return out
        for meta_path in found:
            data_path = meta_path.with_suffix(".bin")
            try:
                out.append((meta_path, data_path.stat().st_size, meta_path.stat().st_mtime))
            except OSError:
                continue
        return out

    def _bound(self) -> None:
        """Evict the least recently used entries until the store fits its limit (the
        namespace's own, else the whole cache's)."""
        limit = self._limit()
        if limit is None:
            return
        entries = self._manifests(everywhere=self.limit is None)
        total = sum(size for _, size, _ in entries)
        for meta_path, size, _ in sorted(entries, key=lambda e: e[2]):
            if total <= limit:
                break
            for p in (meta_path, meta_path.with_suffix(".bin")):  # manifest first
                with contextlib.suppress(OSError):
                    p.unlink()
            total -= size

    def info(self) -> dict:
        entries = self._manifests()
        by_ns: dict[str, list[int]] = {}
        for meta_path, size, _ in entries:
            ns = meta_path.parent.relative_to(self.root).as_posix()
            by_ns.setdefault(ns, [0, 0])
            by_ns[ns][0] += 1
            by_ns[ns][1] += size
        return {
            "root": str(self.root),
            "entries": len(entries),
            "bytes": sum(size for _, size, _ in entries),
            "limit_bytes": limit_bytes(),
            "temp_bytes": self.temp_bytes(),
            "namespaces": {ns: {"entries": n, "bytes": b} for ns, (n, b) in sorted(by_ns.items())},
        }

    def clear(self) -> int:
        """Remove every entry under the root (every namespace); returns how many."""
        removed = 0
        for meta_path, _, _ in self._manifests():
            for p in (meta_path, meta_path.with_suffix(".bin")):
                with contextlib.suppress(OSError):
                    p.unlink()
            removed += 1
        self._clean_stale(self.root)
        return removed

    def _clean_stale_once(self) -> None:
        where = str(self.directory)
        with self._lock:
            if where in self._cleaned:
                return
            self._cleaned.add(where)
        self._clean_stale(self.directory)

    @staticmethod
    def _clean_stale(base: Path) -> int:
        """Remove temp files whose writer is gone (no lock held on them)."""
        removed = 0
        try:
            temps = list(base.rglob(".*.tmp")) if base.is_dir() else []
        except OSError:
            return removed
        for path in temps:
            if not _TEMP.match(path.name):
                continue
            try:
                with open(path, "rb") as fh:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    if _same_file(path, fh):  # not renamed or replaced meanwhile
                        path.unlink()
                        removed += 1
            except OSError:
                continue  # a live writer holds it (BlockingIOError), or it is gone
        return removed

    def temp_bytes(self) -> int:
        """Bytes in temp files under the root (live writers' and killed ones')."""
        total = 0
        for path in self.root.rglob(".*.tmp") if self.root.is_dir() else []:
            with contextlib.suppress(OSError):
                total += path.stat().st_size
        return total


def _same_file(path: str | os.PathLike, fh) -> bool:
    """Whether ``path`` still names the open file ``fh``."""
    try:
        st, fst = os.stat(path), os.fstat(fh.fileno())
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


class _TempFile:
    """A temp file beside ``final``, locked while open (so a cleaner can tell a live
    writer's file from a killed one's), renamed onto ``final`` by ``commit`` and
    removed by ``close`` if it never was."""

    def __init__(self, final: Path):
        self.final, self.path, self.fh = final, None, None

    def open(self) -> _TempFile:
        while True:
            fd, self.path = tempfile.mkstemp(
                prefix=f".{self.final.name}.", suffix=".tmp", dir=self.final.parent
            )
            fh = os.fdopen(fd, "wb")
            fcntl.flock(fh, fcntl.LOCK_EX)
            # A cleaner may have taken the lock between mkstemp and flock and removed
            # the file as a dead writer's: then start over with a new one.
            if _same_file(self.path, fh):
                self.fh = fh
                return self
            fh.close()

    def commit(self) -> None:
        self.fh.flush()
        os.replace(self.path, self.final)
        self.path = None

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
        if self.path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    def __enter__(self) -> _TempFile:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


class _MemoryEntry:
    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays_data = arrays
        self.shape = arrays["data"].shape if "data" in arrays else ()

    def read_all(self) -> dict[str, np.ndarray]:
        return self.arrays_data

    def read(self, name: str = "data") -> np.ndarray:
        return self.arrays_data[name]

    def verify(self) -> None:
        """Nothing to check: the entry never left this process's memory."""

    def read_rows(self, start: int, stop: int, name: str = "data") -> np.ndarray:
        return self.arrays_data[name][start:stop]


class MemoryStore:
    """The in-memory twin of :class:`ArrayStore` (same ``get``/``put``/``writer``), in
    a bounded LRU: for a server, whose browsing touches many small grids that would
    grow a disk cache without end, and which must leave nothing behind when killed.
    Entries are read-only arrays shared by every reader."""

    writable = True
    persistent = False

    def __init__(self, max_bytes: int, max_entries: int = 1024, entry_share: float = 0.125):
        self.max_entry_bytes = int(max_bytes * entry_share)
        self._entries: LRUCache[_MemoryEntry] = LRUCache(
            max_entries, max_bytes, lambda e: sum(a.nbytes for a in e.arrays_data.values())
        )

    @property
    def nbytes(self) -> int:
        return self._entries.nbytes

    def fits(self, shape: tuple[int, ...], dtype, limit: int | None = None) -> bool:
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        bound = self.max_entry_bytes if limit is None else min(limit, self.max_entry_bytes)
        return size <= bound

    def get(self, key: str) -> _MemoryEntry | None:
        return self._entries.get(key)

    def read(self, key: str) -> dict[str, np.ndarray] | None:
        entry = self.get(key)
        return None if entry is None else entry.read_all()

    def put(self, key: str, arrays: dict[str, np.ndarray]) -> bool:
        frozen = {}
        for name, a in arrays.items():
            a = np.array(a, copy=True)
            a.flags.writeable = False
            frozen[name] = a
        self._entries.put(key, _MemoryEntry(frozen))
        return True

    @contextlib.contextmanager
    def writer(self, key: str, shape: tuple[int, ...], dtype) -> Iterator[_Writer]:
        array = np.empty(tuple(shape), dtype=np.dtype(dtype))
        writer = _ArrayWriter(array)
        yield writer
        if writer.rows_written == shape[0]:
            array.flags.writeable = False  # shared by every later reader
            self._entries.put(key, _MemoryEntry({"data": array}))

    def keys(self) -> list[str]:
        return [str(k) for k in self._entries.keys()]

    def remove(self, key: str) -> None:
        self._entries.pop(key)


class _ArrayWriter:
    def __init__(self, array: np.ndarray):
        self.array, self.rows_written = array, 0

    def write(self, rows: np.ndarray) -> None:
        stop = self.rows_written + len(rows)
        self.array[self.rows_written : stop] = rows
        self.rows_written = stop
