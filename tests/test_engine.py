"""The map engine: caching of overhead and fused embeddings, streaming, modes."""

import numpy as np
import pytest

import omnimap.maps.engine as engine_mod
from omnimap.core.errors import InputError
from omnimap.core.store import ArrayStore
from omnimap.geo.bbox import BBox
from omnimap.geo.grid import LatLonGrid
from omnimap.geo.timefeat import When
from omnimap.maps.engine import MapEngine


@pytest.fixture()
def engine(tiny_model_dir, tmp_path):
    return MapEngine(str(tiny_model_dir), store=ArrayStore("cells", root=tmp_path))


@pytest.fixture()
def counted(engine, monkeypatch):
    calls = {"overhead": 0, "dynamic": 0}
    for name in calls:
        original = getattr(engine.embedder, name)

        def wrapper(*args, _name=name, _orig=original, **kwargs):
            calls[_name] += 1
            return _orig(*args, **kwargs)

        monkeypatch.setattr(engine.embedder, name, wrapper)
    return calls


GRID = LatLonGrid.from_bbox(BBox(5, 43, 10, 47), 0.25)


def test_scores_are_cosines_with_the_grid_shape(engine):
    s = engine.score("snow on the mountains", GRID, When.parse("2024-01-15T09:00"))
    assert s.shape == GRID.shape and s.dtype == np.float32
    assert np.isfinite(s).all() and (np.abs(s) <= 1.0 + 1e-5).all()
    assert s.std() > 0  # cells differ


def test_new_time_reuses_overhead_and_second_prompt_reuses_everything(engine, counted):
    jan, jul = When.parse("2024-01-15T09:00"), When.parse("2024-07-15T21:00")
    a = engine.score("snow", GRID, jan)
    assert counted["overhead"] >= 1
    before = dict(counted)
    b = engine.score("snow", GRID, jul)  # new time: only the dynamic encoder runs
    assert counted["overhead"] == before["overhead"] and counted["dynamic"] > before["dynamic"]
    assert not np.allclose(a, b)
    before = dict(counted)
    engine.score("city lights", GRID, jul)  # second prompt: nothing recomputed
    assert counted == before


def test_disk_cache_serves_a_new_process(engine, tiny_model_dir, tmp_path):
    when = When.parse("2024-03-01T12:00")
    first = engine.score("sea", GRID, when)
    fresh = MapEngine(str(tiny_model_dir), store=ArrayStore("cells", root=tmp_path))
    fresh.embedder.overhead = fresh.embedder.dynamic = None  # would fail if called
    np.testing.assert_allclose(fresh.score("sea", GRID, when), first, atol=1e-6)


def test_corrupt_cache_entry_is_detected_and_rebuilt(engine, tiny_model_dir, tmp_path):
    when = When.parse("2024-03-01T12:00")
    first = engine.score("forest", GRID, when)
    entries = sorted((tmp_path / "cells").glob("*.bin"))
    assert len(entries) == 2  # overhead + fused
    for entry in entries:
        data = bytearray(entry.read_bytes())
        data[len(data) // 2] ^= 0xFF
        entry.write_bytes(bytes(data))
    fresh = MapEngine(str(tiny_model_dir), store=ArrayStore("cells", root=tmp_path))
    np.testing.assert_allclose(fresh.score("forest", GRID, when), first, atol=1e-5)
    assert all(fresh.store.get(k) is not None for k in fresh._keys(GRID, when, "full"))


def test_streaming_equals_in_memory(engine, monkeypatch):
    when = When.parse("2024-06-01T06:00+02:00")
    in_memory = engine.score(["snow", "sea"], GRID, when)
    monkeypatch.setattr(engine_mod, "MEMORY_BUDGET_BYTES", 1000)
    monkeypatch.setattr(engine_mod, "CHUNK_CELLS", 100)
    engine._fused.clear()
    streamed = engine.score(["snow", "sea"], GRID, when)
    np.testing.assert_allclose(streamed, in_memory, atol=1e-5)


def test_modes_use_the_right_inputs(engine, counted):
    engine.use_cache = False
    engine.score("sea", GRID, When.parse("2024-01-01T00:00"), mode="location_only")
    assert counted["overhead"] == 0 and counted["dynamic"] > 0
    engine.score("sea", GRID, None, mode="imagery_only")
    assert counted["overhead"] > 0
    with_time = engine.score("sea", GRID, When.parse("2024-01-01T00:00"), mode="full")
    no_time = engine.score("sea", GRID, None)
    assert not np.allclose(with_time, no_time)


def test_time_free_map_ignores_the_time_key(engine):
    a = engine._keys(GRID, When.parse("2024-01-01T00:00"), "no_time")
    b = engine._keys(GRID, None, "no_time")
    assert a == b


@pytest.mark.parametrize("prompt", ["", "   ", "x" * 1001])
def test_bad_prompts(engine, prompt):
    with pytest.raises(InputError):
        engine.score(prompt, GRID)
