"""Fault injection, the cache: unwritable or full, a map is still made with one warning;
temp files of killed writers are cleaned (safely, with two processes at once); the
cache stays under its size limit, evicting the least recently used entries."""

import errno
import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from faults import failing_store_disk, fresh_engines, map_files, run_cli, temp_files
from omnimap.core import store as store_mod
from omnimap.core.store import ArrayStore
from omnimap.fields.build import build_field
from omnimap.teachers.store import CachedTeacher
from omnimap.teachers.text import TextTeacher

ALPS = ("--region", "Alps", "--resolution", "0.5")


def cache_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "cache off" in r.getMessage()]


@pytest.fixture(autouse=True)
def _fresh_engines():
    fresh_engines()
    yield
    fresh_engines()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("OMNIMAP_CACHE_DIR", str(path))
    return path


def assert_map_made(code, err, tif):
    assert code == 0, err
    assert "Traceback" not in err
    assert map_files(tif) == [
        tif.with_suffix(s) for s in (".tif", ".png", ".geojson", ".stac.json")
    ]


def test_cache_under_a_file_still_makes_the_map(tiny_model_dir, tmp_path, monkeypatch, caplog):
    (tmp_path / "a-file").write_text("not a directory")
    monkeypatch.setenv("OMNIMAP_CACHE_DIR", str(tmp_path / "a-file" / "cache"))
    tif = tmp_path / "out" / "m.tif"
    with caplog.at_level(logging.WARNING):
        code, _, err = run_cli("map", "snow", *ALPS, "--model", tiny_model_dir, "--out", tif)
    assert_map_made(code, err, tif)
    assert len(cache_warnings(caplog)) == 1, caplog.text


def test_read_only_cache_dir_still_makes_the_map(tiny_model_dir, tmp_path, cache, caplog):
    if os.geteuid() == 0:
        pytest.skip("chmod does not stop root; test_store_refusing_files covers it with a shim")
    cache.mkdir()
    cache.chmod(0o500)
    try:
        tif = tmp_path / "m.tif"
        with caplog.at_level(logging.WARNING):
            code, _, err = run_cli("map", "snow", *ALPS, "--model", tiny_model_dir, "--out", tif)
        assert_map_made(code, err, tif)
        assert len(cache_warnings(caplog)) == 1
    finally:
        cache.chmod(0o700)


@pytest.mark.parametrize(
    ("room", "code"), [(0, errno.EACCES), (0, errno.ENOSPC), (5000, errno.ENOSPC)]
)
def test_store_refusing_files_still_makes_the_map(tiny_model_dir, tmp_path, cache, monkeypatch,
                                                   caplog, room, code):  # fmt: skip
    """Permission denied, a full disk at once, a disk that fills mid-entry."""
    failing_store_disk(monkeypatch, room=room, code=code)
    tif = tmp_path / "m.tif"
    with caplog.at_level(logging.WARNING):
        code_, _, err = run_cli("map", "snow", *ALPS, "--when", "2024-01-15T09:00",
                                "--model", tiny_model_dir, "--out", tif)  # fmt: skip
    assert_map_made(code_, err, tif)
    warnings = cache_warnings(caplog)
    assert len(warnings) == 1 and os.strerror(code) in warnings[0]
    assert temp_files(tmp_path) == []
    # What did fit is whole: every data file has its manifest and passes its check.
    bins, manifests = sorted(tmp_path.rglob("*.bin")), sorted(tmp_path.rglob("*.json"))
    assert [p.stem for p in bins] == [p.stem for p in manifests if p.parent != tmp_path]


def test_full_disk_under_a_field_map(tiny_model_dir, tmp_path, cache, monkeypatch, caplog):
    field = tmp_path / "eu.field"
    build_field(field, bbox="-10,35,30,60", resolution=2.0, chunk=8, model=str(tiny_model_dir),
                progress=False)  # fmt: skip
    failing_store_disk(monkeypatch, room=100)
    tif = tmp_path / "f.tif"
    with caplog.at_level(logging.WARNING):
        code, _, err = run_cli("map", "sea", "--field", field, "--when", "2024-07-01T12:00",
                               "--out", tif)  # fmt: skip
    assert_map_made(code, err, tif)
    assert len(cache_warnings(caplog)) == 1


def test_text_embeddings_with_a_full_disk(tiny_teacher_dir, tmp_path, monkeypatch, caplog):
    plain = TextTeacher(str(tiny_teacher_dir)).embed("text", ["snow", "sea"])
    failing_store_disk(monkeypatch, room=0)
    cached = CachedTeacher(TextTeacher(str(tiny_teacher_dir)), ArrayStore("t", root=tmp_path))
    with caplog.at_level(logging.WARNING):
        for _ in range(3):  # every new prompt: still embedded, still one warning
            np.testing.assert_allclose(cached.embed("text", ["snow", "sea"]), plain, atol=1e-6)
            cached.embed("text", ["forest"])
    assert len(cache_warnings(caplog)) == 1


# -- temp files of killed writers ------------------------------------------------------

KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from omnimap.core.store import ArrayStore
    store = ArrayStore("cells", root=sys.argv[1])
    with store.writer("big", (1000, 64), np.float32) as w:
        w.write(np.ones((10, 64)))
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 mid-entry
    """
)


def test_temps_of_killed_writers_are_removed_live_ones_kept(tmp_path):
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(tmp_path)], check=False)
    assert proc.returncode == -9
    (dead,) = temp_files(tmp_path)
    store = ArrayStore("cells", root=tmp_path)
    with store.writer("live", (2, 3), np.float32) as w:  # its temp is locked while open
        w.write(np.ones((1, 3)))
        (live,) = temp_files(tmp_path)  # the first write here removed the dead one
        assert live != dead
        assert ArrayStore._clean_stale(tmp_path) == 0  # a live writer's is never taken
        assert temp_files(tmp_path) == [live]
        w.write(np.ones((1, 3)))
    assert store.read("live")["data"].shape == (2, 3) and temp_files(tmp_path) == []
    assert store.info()["temp_bytes"] == 0


CONCURRENT_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from omnimap.core.store import ArrayStore
    store = ArrayStore("cells", root=sys.argv[1])
    ok = [store.put(f"k{i}", {"data": np.full((64, 16), i, np.float32)}) for i in range(300)]
    sys.exit(0 if all(ok) else 3)
    """
)


def test_cleaning_while_another_process_writes_loses_nothing(tmp_path):
    (tmp_path / "cells").mkdir()
    writer = subprocess.Popen([sys.executable, "-c", CONCURRENT_WRITER, str(tmp_path)])
    while writer.poll() is None:  # clean as fast as possible while it writes
        ArrayStore._clean_stale(tmp_path)
    assert writer.returncode == 0  # no put lost its temp file to the cleaner
    store = ArrayStore("cells", root=tmp_path)
    assert all(store.read(f"k{i}")["data"][0, 0] == i for i in range(300))


def test_cleaner_racing_a_new_temp_file(tmp_path, monkeypatch):
    """A cleaner that takes the lock between mkstemp and the writer's flock removes the
    new file; the writer notices and starts over."""
    real_flock, raced = store_mod.fcntl.flock, []

    def flock(fh, op):
        if not raced and op == store_mod.fcntl.LOCK_EX:  # the writer's first lock
            raced.append(ArrayStore._clean_stale(tmp_path))
        return real_flock(fh, op)

    monkeypatch.setattr(store_mod.fcntl, "flock", flock)
    store = ArrayStore("cells", root=tmp_path)
    assert store.put("k", {"data": np.arange(4.0)})
    assert raced == [1] and store.read("k")["data"].tolist() == [0, 1, 2, 3]


# -- size limit -----------------------------------------------------------------------


def test_limit_evicts_least_recently_used(tmp_path, monkeypatch):
    monkeypatch.setenv("OMNIMAP_CACHE_MAX_BYTES", "10K")
    store = ArrayStore("cells", root=tmp_path, bounded=True)
    kib = np.zeros(256, np.float32)  # 1 KiB entries
    for i in range(8):
        store.put(f"k{i}", {"data": kib + i})
        os.utime(store._paths(f"k{i}")[1], (1000 + i, 1000 + i))  # distinct use times
    assert store.get("k0") is not None  # a hit makes k0 the most recent
    for i in range(8, 12):
        store.put(f"k{i}", {"data": kib + i})
    kept = set(store.keys())
    assert store.info()["bytes"] <= 10 * 1024
    assert "k0" in kept and not {"k1", "k2"} & kept and {"k9", "k10", "k11"} <= kept


def test_bad_limit_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("OMNIMAP_CACHE_MAX_BYTES", "lots")
    code, _, err = run_cli("cache", "info")
    assert code == 2 and err.strip().startswith("error: OMNIMAP_CACHE_MAX_BYTES")


def test_cache_info_and_clear(tmp_path, cache):
    store = ArrayStore("cells")
    store.put("a", {"data": np.zeros(1024, np.float32)})
    ArrayStore("embeddings/x").put("b", {"data": np.zeros(256, np.float32)})
    code, out, err = run_cli("cache", "info")
    assert code == 0, err
    assert "entries  2 (5.0 KiB)" in out and "limit    4.0 GiB" in out
    assert "cells" in out and "embeddings/x" in out
    code, out, _ = run_cli("cache", "clear")
    assert code == 0 and "removed 2 entries (5.0 KiB)" in out
    assert ArrayStore("cells").get("a") is None and not list(cache.rglob("*.bin"))


def test_server_answers_new_prompts_when_the_cache_is_full(tiny_model_dir, tmp_path, cache,
                                                          monkeypatch, caplog):  # fmt: skip
    from fastapi.testclient import TestClient

    from omnimap.serve.app import create_app
    from omnimap.serve.service import EngineScorer

    failing_store_disk(monkeypatch, room=40)  # the first small entry fits, then full
    client = TestClient(create_app(scorer=EngineScorer(str(tiny_model_dir)),
                                   static_dir=tmp_path / "not-built"))  # fmt: skip
    with caplog.at_level(logging.WARNING):
        for prompt in ("sand dunes", "city lights at night"):
            r = client.get("/tiles/2/2/1.png", params={"q": prompt})
            assert r.status_code == 200, r.text
    assert len(cache_warnings(caplog)) == 1
