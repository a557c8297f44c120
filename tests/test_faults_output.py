"""Fault injection, output files: an --out that cannot be written is one line before any
work; the four files of a map are written as one unit (all or none, never mixed with
an earlier run's)."""

import errno
import os

import pytest
from matplotlib.figure import Figure

from faults import MAP_FILES, map_files, run_cli
from omnimap import api
from omnimap.core import fileio
from omnimap.maps.result import MapResult

ALPS = ("--region", "Alps", "--resolution", "0.5")


@pytest.fixture
def no_work(monkeypatch):
    """Fails the test if a map is computed: the check must come first."""

    def computed(*args, **kwargs):
        raise AssertionError("the map was computed before --out was checked")

    monkeypatch.setattr(api, "zero_shot_map", computed)
    monkeypatch.setattr(api, "search", computed)


def assert_one_line(code, err, *fragments):
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for f in fragments:
        assert f in err, err


def test_out_under_a_file(tmp_path, no_work):
    (tmp_path / "f").write_text("x")
    code, _, err = run_cli("map", "snow", *ALPS, "--out", tmp_path / "f" / "deeper" / "m.tif")
    assert_one_line(code, err, "is a file, not a directory")


def test_out_onto_a_directory(tmp_path, no_work):
    (tmp_path / "m.tif").mkdir()
    code, _, err = run_cli("map", "snow", *ALPS, "--out", tmp_path / "m.tif")
    assert_one_line(code, err, "is a directory")
    code, _, err = run_cli("search", "snow", "--region", "Alps", "--geojson", tmp_path / "m.tif")
    assert_one_line(code, err, "--geojson", "is a directory")


def test_out_into_a_read_only_directory(tmp_path, no_work, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:  # chmod does not stop root: the file system says no instead
        real = fileio.tempfile.TemporaryFile

        def refuse(*args, dir=None, **kwargs):
            if dir is not None and os.path.samefile(dir, ro):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS))
            return real(*args, dir=dir, **kwargs)

        monkeypatch.setattr(fileio.tempfile, "TemporaryFile", refuse)
    else:
        ro.chmod(0o500)
    try:
        code, _, err = run_cli("map", "snow", *ALPS, "--out", ro / "sub" / "m.tif")
        assert_one_line(code, err, "is not writable")
        code, _, err = run_cli("field", "build", "--out", ro / "f.field", "--resolution", "1")
        assert_one_line(code, err, "is not writable")
    finally:
        ro.chmod(0o700)
    assert list(ro.iterdir()) == []


def test_field_out_onto_a_file(tmp_path):
    (tmp_path / "f.field").write_text("x")
    code, _, err = run_cli("field", "build", "--out", tmp_path / "f.field", "--resolution", "1")
    assert_one_line(code, err, "is a file")


@pytest.fixture
def earlier(tiny_model_dir, tmp_path):
    """A complete map from an earlier run: its four files and their bytes."""
    tif = tmp_path / "out" / "m.tif"
    code, _, err = run_cli("map", "snow", *ALPS, "--model", tiny_model_dir, "--out", tif)
    assert code == 0, err
    return tif, {p: p.read_bytes() for p in map_files(tif)}


def full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("failing", ["png", "tif", "geojson"])
def test_a_failing_file_leaves_the_earlier_set_whole(earlier, tiny_model_dir, monkeypatch, failing):
    tif, before = earlier
    if failing == "png":
        monkeypatch.setattr(Figure, "savefig", full_disk)
    elif failing == "tif":
        monkeypatch.setattr(MapResult, "_write_geotiff_to", full_disk)
    else:
        monkeypatch.setattr("omnimap.maps.result.points_collection", full_disk)
    code, _, err = run_cli("map", "sea", *ALPS, "--when", "2024-07-01T12:00",
                           "--model", tiny_model_dir, "--out", tif)  # fmt: skip
    assert_one_line(code, err, "No space left on device", "nothing was written")
    assert {p: p.read_bytes() for p in map_files(tif)} == before  # untouched, all four
    assert sorted(p.name for p in tif.parent.iterdir()) == sorted(
        tif.with_suffix(s).name for s in MAP_FILES
    )


def test_a_failing_rename_leaves_none(earlier, tiny_model_dir, monkeypatch):
    tif, _ = earlier
    real, calls = fileio.os.replace, []

    def third_fails(src, dst):
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(src))
        real(src, dst)

    monkeypatch.setattr(fileio.os, "replace", third_fails)
    code, _, err = run_cli("map", "sea", *ALPS, "--model", tiny_model_dir, "--out", tif)
    assert_one_line(code, err, "nothing was written")
    assert map_files(tif) == [] and list(tif.parent.iterdir()) == []
