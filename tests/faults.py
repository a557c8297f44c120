"""Shared pieces of the fault-injection tests (tests/test_faults_*.py): a failing
filesystem under the store, and the CLI run in-process."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import sys

from omnimap import api
from omnimap.cli.main import main as cli_main
from omnimap.core import store as store_mod
from omnimap.teachers import registry


class _FailingFile:
    """A file that takes ``room`` bytes, then fails every write like a full disk."""

    def __init__(self, fh, room: int, code: int):
        self._fh, self._room, self._code = fh, room, code

    def write(self, data) -> int:
        n = memoryview(data).nbytes
        if n > self._room:
            raise OSError(self._code, os.strerror(self._code))
        self._room -= n
        return self._fh.write(data)

    def __getattr__(self, name):
        return getattr(self._fh, name)


def failing_store_disk(monkeypatch, room: int = 0, code: int = errno.ENOSPC) -> None:
    """Every file the store writes gets ``room`` bytes, then OSError(``code``): a full
    disk (ENOSPC) mid-write, or, with code EACCES and room 0, a directory that refuses
    new files (for when chmod cannot, as root)."""
    real_open = store_mod._TempFile.open

    def open_(self):
        if code in (errno.EACCES, errno.EROFS) and room == 0:
            raise OSError(code, os.strerror(code))
        real_open(self)
        self.fh = _FailingFile(self.fh, room, code)
        return self

    monkeypatch.setattr(store_mod._TempFile, "open", open_)


def fresh_engines() -> None:
    """Engines and teachers are shared per process, each with the store (cache) it was
    made with: a test that moves the cache needs new ones."""
    api.get_engine.cache_clear()
    registry._shared.cache_clear()


def run_cli(*args) -> tuple[int, str, str]:
    """The CLI in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, ["omnimap", *map(str, args)]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            cli_main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


def temp_files(root) -> list:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name.startswith("."))


MAP_FILES = (".tif", ".png", ".geojson", ".stac.json")


def map_files(tif) -> list:
    """The files of a map that exist (of the four)."""
    return [tif.with_suffix(s) for s in MAP_FILES if tif.with_suffix(s).exists()]
