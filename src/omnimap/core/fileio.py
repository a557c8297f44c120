"""Atomic file writes: write to a temp file beside the target, then rename.

A crash or an exception never leaves a half-written file under the final name; files
that belong together (a map's four) are renamed together or not at all.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from omnimap.core.errors import DataError, InputError


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path in the target's directory; rename it onto ``final`` on success.

    The temp name keeps the target's suffix (GDAL picks drivers by extension) unless
    ``suffix`` is given. On any exception the temp file is removed.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".tmp" + final.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix, dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _chmod_default([tmp_path])
        os.replace(tmp_path, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_bytes_atomic(final: str | os.PathLike, data: bytes) -> None:
    with atomic_path(final) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def write_text_atomic(final: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(final, text.encode("utf-8"))


def json_text(obj) -> str:
    """How omnimap writes JSON files: indented, keys in their order, a final newline."""
    return json.dumps(obj, indent=2, sort_keys=False) + "\n"


def write_json_atomic(final: str | os.PathLike, obj) -> None:
    write_text_atomic(final, json_text(obj))


def check_output_file(final: str | os.PathLike, what: str = "--out") -> Path:
    """Fail fast, before any work, if ``final`` cannot be written as a file: it is a
    directory, a parent is a file, or the directory that would hold it is not writable
    (tried with a real temp file: permissions, a read-only or full file system)."""
    final = Path(final)
    if final.is_dir():
        raise InputError(f"{what} {final} is a directory; give a file name in it")
    _check_writable(final, final.parent, what)
    return final


def check_output_dir(final: str | os.PathLike, what: str = "--out") -> Path:
    """The same for an output directory (a field), new or one to finish."""
    final = Path(final)
    if final.exists() and not final.is_dir():
        raise InputError(f"{what} {final} is a file; it must be a directory (or not exist yet)")
    _check_writable(final, final if final.is_dir() else final.parent, what)
    return final


def _check_writable(final: Path, parent: Path, what: str) -> None:
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{what} {final} cannot be made: {parent} is a file, not a directory")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise InputError(f"{what} {final} cannot be written: {parent} is not writable "
                         f"({exc.strerror or exc})") from None  # fmt: skip


@contextlib.contextmanager
def atomic_paths(finals: list[str | os.PathLike]) -> Iterator[list[Path]]:
    """Files written as one unit: a temp path for each, all renamed into place only if
    the block succeeds, else all removed (an earlier run's set stays whole). A failing
    write (e.g. a full disk) is a DataError naming the file."""
    finals = [Path(f) for f in finals]
    stack = contextlib.ExitStack()
    try:
        with stack:
            temps = [stack.enter_context(_temp_path(f)) for f in finals]
            yield temps
            _chmod_default(temps)
            try:
                for tmp, final in zip(temps, finals, strict=True):
                    os.replace(tmp, final)
            except BaseException:
                # Some were replaced: the earlier set is broken too. Never a mixture.
                for final in finals:
                    with contextlib.suppress(OSError):
                        final.unlink()
                raise
    except OSError as exc:
        names = {str(t): f for t, f in zip(locals().get("temps", []), finals, strict=False)}
        where = names.get(str(exc.filename)) or ", ".join(f.name for f in finals)
        raise DataError(f"cannot write {where} in {finals[0].parent}: {exc.strerror or exc}; "
                        "nothing was written") from None  # fmt: skip


@contextlib.contextmanager
def _temp_path(final: Path) -> Iterator[Path]:
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp" + final.suffix,
                               dir=final.parent)  # fmt: skip
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _chmod_default(paths: list[Path]) -> None:
    """mkstemp makes 0600 files; give results the usual umask-based mode."""
    umask = os.umask(0)
    os.umask(umask)
    for p in paths:
        os.chmod(p, 0o666 & ~umask)
