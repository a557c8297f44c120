"""Fault injection, kill -9: a map or a field build killed at a random point, with a
second process using the same cache at the same time; the next run succeeds, what the
cache holds is valid, and no temp file is left once the cache is cleaned."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from faults import fresh_engines, map_files, run_cli, temp_files
from omnimap.core.store import ArrayStore
from omnimap.fields.build import build_field
from omnimap.fields.store import Field

pytestmark = pytest.mark.slow

MAP = (
    "map",
    "snow",
    "--bbox",
    "-10,35,30,60",
    "--resolution",
    "0.25",
    "--when",
    "2024-01-15T09:00",
)
FIELD = {"bbox": "-20,30,40,60", "resolution": 0.5, "chunk": 16}  # 120 x 60 cells, 32 chunks


def start(cache, *args):
    env = {**os.environ, "OMNIMAP_CACHE_DIR": str(cache)}
    return subprocess.Popen([sys.executable, "-m", "omnimap.cli", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def kill_when(proc, ready, rng, timeout=120.0):
    """SIGKILL ``proc`` a random 0-300 ms after ``ready()`` first holds (or when it
    exits by itself); returns whether it was killed."""
    deadline = time.monotonic() + timeout
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 0.3))
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


def assert_cache_valid(cache):
    """Every entry reads back verified; once cleaned, no temp file is left."""
    ArrayStore._clean_stale(cache)
    assert temp_files(cache) == []
    for manifest in cache.rglob("*.json"):
        ns = manifest.parent.relative_to(cache).as_posix()
        store = ArrayStore(ns, root=cache)
        for key in store.keys():
            assert store.read(key) is not None, (ns, key)


@pytest.fixture
def rng():
    seed = int(os.environ.get("OMNIMAP_FAULT_SEED", time.time_ns() % 10**6))
    print(f"fault seed {seed} (OMNIMAP_FAULT_SEED={seed} repeats it)")
    return random.Random(seed)


@pytest.fixture(autouse=True)
def _fresh_engines():
    fresh_engines()
    yield
    fresh_engines()


def test_map_killed_while_another_writes_the_same_cache(tiny_model_dir, tmp_path, rng, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("OMNIMAP_CACHE_DIR", str(cache))
    victim = start(cache, *MAP, "--model", tiny_model_dir, "--out", tmp_path / "a" / "m.tif")
    other = start(cache, *MAP, "--model", tiny_model_dir, "--out", tmp_path / "b" / "m.tif")
    kill_when(victim, lambda: cache.is_dir() and bool(temp_files(cache)), rng)
    _, err = other.communicate(timeout=300)
    assert other.returncode == 0, err.decode()
    assert len(map_files(tmp_path / "b" / "m.tif")) == 4
    code, _, err = run_cli(*MAP, "--model", tiny_model_dir, "--out", tmp_path / "c" / "m.tif")
    assert code == 0, err
    assert len(map_files(tmp_path / "c" / "m.tif")) == 4
    assert_cache_valid(cache)


def test_field_build_killed_at_a_random_chunk(tiny_model_dir, tmp_path, rng):
    cache, out = tmp_path / "cache", tmp_path / "f.field"
    args = ["field", "build", "--out", out, "--bbox", FIELD["bbox"], "--resolution",
            FIELD["resolution"], "--chunk", FIELD["chunk"], "--model", tiny_model_dir]  # fmt: skip
    victim = start(cache, *args)

    def records():  # as the store counts them: a killed write leaves a '.'-named temp
        return [p for p in (out / "done").glob("*.json") if not p.name.startswith(".")]

    def some_done():
        return (out / "done").is_dir() and len(records()) >= 2

    deadline = time.monotonic() + 120
    while not some_done() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    if victim.poll() is None:  # a second build of the same field meanwhile is refused
        code, _, err = run_cli(*args)
        assert code == 2 and "being built by another process" in err
    kill_when(victim, some_done, rng)
    # The kill may land before any chunk, mid-chunk, or after the last one was recorded
    # (a fast machine): the re-run builds exactly the chunks without a record.
    recorded = len(records())
    report = build_field(out, model=str(tiny_model_dir), progress=False, **FIELD)
    assert report.chunks_total == 32 and report.chunks_built + report.chunks_skipped == 32
    assert report.chunks_built == 32 - recorded and report.repaired == {}
    field = Field.open(out, writable=True)
    assert field.verify_built() == {} and field.done() == set(field.chunk_ids())
    assert not [p for p in out.rglob("*") if p.name.startswith(".") and p.name != ".build.lock"]
    assert not list(out.rglob("*.partial"))
    code, _, err = run_cli("map", "sea", "--field", out, "--out", tmp_path / "m.tif")
    assert code == 0, err
