"""Embedding fields: format, quantisation, resumable atomic builds, maps and search."""

import json

import numpy as np
import pytest
import zarr
from zarr.storage import LocalStore

import omnimap.fields.build as build_mod
from omnimap import api
from omnimap.core.errors import DataError, InputError
from omnimap.eval.field_quality import EVAL_PROMPTS, spearman_by_prompt
from omnimap.fields import quantize
from omnimap.fields.build import build_field
from omnimap.fields.ray_engine import build_with_ray
from omnimap.fields.store import Field
from omnimap.geo.bbox import BBox
from omnimap.geo.grid import LatLonGrid
from omnimap.geo.timefeat import When
from omnimap.maps import index
from omnimap.maps.engine import MapEngine
from omnimap.maps.index import load_or_build
from omnimap.models.checkpoint import load_checkpoint
from omnimap.models.embedder import Embedder


def map_from_field(field, prompt, **place):
    return api.zero_shot_map(prompt, field=field, **place)


def search_field(field, prompt, **options):
    return api.search(prompt, field=field, **options)


def score_field(field, prompts, when=None):
    """(P, rows, cols) maps of the whole field, through the engine's field path."""
    field = field if isinstance(field, Field) else Field.open(field)
    engine = MapEngine(None, field=field, use_cache=False)
    return engine.score(list(prompts), field.grid, when), field.grid


def engine_for(field):
    return MapEngine(None, field=field)


REGION = "-20,30,40,60"  # 60 x 30 cells at 1 deg: 4 x 8 chunks of 8 x 8
RES, CHUNK = 1.0, 8
BUILD_CHUNK = build_mod.build_chunk  # the real one, before any test patches it


def build(out, model_dir, dtype="float16", **kw):
    kw = {"bbox": REGION, "resolution": RES, "chunk": CHUNK, **kw}
    return build_field(out, model=str(model_dir), dtype=dtype, progress=False, **kw)


@pytest.fixture(scope="module")
def fields(tiny_model_dir, tmp_path_factory):
    """One field per dtype over REGION, shared by the read-only tests."""
    root = tmp_path_factory.mktemp("fields")
    for dtype in quantize.DTYPES:
        build(root / f"{dtype}.field", tiny_model_dir, dtype)
    return {dtype: root / f"{dtype}.field" for dtype in quantize.DTYPES}


@pytest.fixture(scope="module")
def other_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny architecture with other weights."""
    import torch

    from omnimap.models.checkpoint import save_checkpoint
    from omnimap.models.student import build_student

    config = json.loads((tiny_model_dir / "config.json").read_text())
    torch.manual_seed(7)
    return save_checkpoint(build_student(config), config, tmp_path_factory.mktemp("other"))


def raw(path):
    """The stored arrays of a field, as written (no decoding)."""
    group = zarr.open_group(str(path), mode="r")
    return {name: group[name][...] for name in ("o", "scale") if name in group}


# -- format ------------------------------------------------------------------------


def test_metadata_records_model_grid_crs_and_quantisation(fields, tiny_model_dir):
    model = load_checkpoint(tiny_model_dir)
    grid = LatLonGrid.from_bbox(BBox.parse(REGION), RES)
    for dtype, path in fields.items():
        group = zarr.open_group(str(path), mode="r")
        meta = group.attrs["omnimap_field"]
        assert meta["format"] == "omnimap.field/1" and meta["crs"] == "EPSG:4326"
        assert meta["model"]["key"] == model.key
        assert meta["model"]["weights_digest"] == model.config["weights_digest"]
        assert meta["grid"] == {"resolution": RES, "col0": grid.col0, "row0": grid.row0,
                                "ncols": 60, "nrows": 30}  # fmt: skip
        assert meta["dtype"] == dtype and meta["chunk"] == {"rows": CHUNK, "cols": CHUNK}
        assert group["o"].shape == (30, 60, 16) and group["o"].dtype == np.dtype(dtype)
        assert group["o"].chunks == (CHUNK, CHUNK, 16)
        if dtype == "int8":
            assert meta["quantisation"]["scheme"] == "symmetric-per-cell"
            assert group["scale"].shape == (30, 60) and group["scale"].dtype == np.float32
        else:
            assert "scale" not in group
        assert len(Field.open(path).done()) == 32


def test_stored_o_is_the_overhead_embedding(fields, tiny_model_dir):
    field = Field.open(fields["float32"])
    expected = Embedder(load_checkpoint(tiny_model_dir)).overhead(*field.grid.centers())
    stored = np.empty((30, 60, 16), np.float32)
    for r0, r1, c0, c1, o in field.tiles(0, 30, 0, 60):
        stored[r0:r1, c0:c1] = o
    np.testing.assert_allclose(stored.reshape(-1, 16), expected, rtol=1e-5, atol=1e-6)
    f16 = Field.open(fields["float16"]).read_chunk((1, 2))
    np.testing.assert_array_equal(f16, field.read_chunk((1, 2)).astype(np.float16))


def test_int8_is_symmetric_per_cell_within_half_a_step():
    o = (
        np.random.default_rng(0).normal(size=(50, 384)).astype(np.float32)
        * np.linspace(0.01, 10, 50)[:, None]
    )
    o[7] = 0.0
    q, scale = quantize.encode(o, "int8")
    assert q.dtype == np.int8 and scale.shape == (50,) and np.abs(q).max() == 127
    np.testing.assert_allclose(scale, np.abs(o).max(axis=1) / 127, rtol=1e-6)
    err = np.abs(quantize.decode(q, scale) - o)
    assert (err <= scale[:, None] / 2 + 1e-6).all()
    assert (quantize.decode(q, scale)[7] == 0).all()
    assert np.array_equal(quantize.encode(-o, "int8")[0], -q)


# -- maps --------------------------------------------------------------------------


@pytest.mark.parametrize("when", [None, "2024-01-15T09:00+01:00"])
def test_map_from_field_equals_the_engine_map(fields, tiny_model_dir, when):
    # The engine rounds o to float16 too, so a float16 field gives the same map.
    result = map_from_field(fields["float16"], "sand dunes", bbox="0,40,10,50", when=when)
    moment = When.parse(when) if when else None
    grid = LatLonGrid.from_bbox(BBox(0, 40, 10, 50), RES)
    expected = MapEngine(str(tiny_model_dir), use_cache=False).score("sand dunes", grid, moment)
    assert result.grid == grid and result.scores.shape == (10, 10)
    np.testing.assert_allclose(result.scores, expected, atol=1e-5)
    assert result.model == "tiny" and result.when == moment


def test_world_field_maps_across_the_antimeridian(tiny_model_dir, tmp_path):
    build(tmp_path / "world.field", tiny_model_dir, bbox=None, resolution=10.0)
    result = map_from_field(tmp_path / "world.field", "sea", bbox="150,-30,-160,20")
    grid = LatLonGrid.from_bbox(BBox(150, -30, -160, 20), 10.0)
    expected = MapEngine(str(tiny_model_dir), use_cache=False).score("sea", grid)
    assert result.grid == grid and grid.ncols == 5  # 150..200: two runs of field columns
    np.testing.assert_allclose(result.scores, expected, atol=1e-5)


def test_map_reads_only_the_chunks_the_region_needs(fields, monkeypatch):
    field = Field.open(fields["int8"])
    reads = []
    original = LocalStore.get

    async def counting_get(self, key, *args, **kwargs):
        reads.append(key)
        return await original(self, key, *args, **kwargs)

    monkeypatch.setattr(LocalStore, "get", counting_get)
    # Field rows 10..20 and columns 20..30: chunks (1..2, 2..3) of 4 x 8.
    result = map_from_field(field, "forest", bbox="0,40,10,50")
    assert np.isfinite(result.scores).all()
    chunks = sorted(k for k in reads if "/c/" in k)
    assert chunks == sorted(f"{a}/c/{i}/{j}" + ("/0" if a == "o" else "")
                            for a in ("o", "scale") for i in (1, 2) for j in (2, 3))  # fmt: skip


def test_region_outside_the_field_is_one_clear_error(fields):
    with pytest.raises(InputError, match="not inside field") as err:
        map_from_field(fields["float16"], "sea", bbox="35,50,45,55")  # east of 40
    assert "\n" not in str(err.value) and "-20,30,40,60" in str(err.value)
    with pytest.raises(InputError, match="not inside field"):
        map_from_field(fields["float16"], "sea", region="Japan", when="2024-01-01T00:00")
    with pytest.raises(DataError, match="does not exist"):
        map_from_field(fields["float16"].parent / "nothing.field", "sea")


def test_a_map_of_the_whole_field_obeys_the_map_size_limit(fields, monkeypatch):
    monkeypatch.setenv("OMNIMAP_MAX_CELLS", "1000")  # the field has 1,800
    with pytest.raises(InputError, match="more than a map may have"):
        map_from_field(fields["float16"], "sea")
    assert map_from_field(fields["float16"], "sea", bbox="0,40,10,50").scores.shape == (10, 10)


def test_another_model_is_refused(fields, other_model_dir):
    with pytest.raises(DataError, match="was built with model"):
        map_from_field(fields["float16"], "sea", model=str(other_model_dir))


def test_quantised_fields_keep_the_maps(fields):
    rho16 = spearman_by_prompt(fields["float32"], fields["float16"])
    rho8 = spearman_by_prompt(fields["float32"], fields["int8"])
    print(f"Spearman vs float32 over {len(EVAL_PROMPTS)} prompts: float16 min {rho16.min():.5f}, "
          f"int8 min {rho8.min():.5f} mean {rho8.mean():.5f}")  # fmt: skip
    assert len(EVAL_PROMPTS) == 20 and len(set(EVAL_PROMPTS)) == 20
    assert rho16.min() >= 0.99
    assert rho8.min() >= 0.95


# -- resumable, atomic builds ------------------------------------------------------


def crash_after(monkeypatch, k):
    """Make the local engine die after k chunks; returns the chunks it computed."""
    computed = []

    def dying(embedder, field, cid):
        if len(computed) == k:
            raise RuntimeError("killed")
        computed.append(cid)
        return BUILD_CHUNK(embedder, field, cid)

    monkeypatch.setattr(build_mod, "build_chunk", dying)
    return computed


def count_chunks(monkeypatch):
    computed = []
    monkeypatch.setattr(build_mod, "build_chunk",
                        lambda e, f, cid: computed.append(cid) or BUILD_CHUNK(e, f, cid))  # fmt: skip
    return computed


def test_killed_build_resumes_with_only_the_remaining_chunks(
    fields, tiny_model_dir, tmp_path, monkeypatch
):
    out = tmp_path / "resumed.field"
    first = crash_after(monkeypatch, 5)
    with pytest.raises(RuntimeError, match="killed"):
        build(out, tiny_model_dir, "int8")
    assert Field.open(out).done() == set(first)
    second = count_chunks(monkeypatch)
    report = build(out, tiny_model_dir, "int8")
    assert (report.chunks_total, report.chunks_skipped, report.chunks_built) == (32, 5, 27)
    assert set(second) == set(Field.open(out).chunk_ids()) - set(first) and len(second) == 27
    uninterrupted = raw(fields["int8"])
    for name, values in raw(out).items():
        np.testing.assert_array_equal(values, uninterrupted[name])
    assert build(out, tiny_model_dir, "int8").chunks_built == 0


def test_chunk_without_its_record_is_never_read(tiny_model_dir, tmp_path, monkeypatch):
    out = tmp_path / "torn.field"
    real = Field._write_record
    calls = []

    def die_before_third_record(self, cid, record):
        calls.append(cid)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed between the values and the record
        real(self, cid, record)

    monkeypatch.setattr(Field, "_write_record", die_before_third_record)
    with pytest.raises(KeyboardInterrupt):
        build(out, tiny_model_dir)
    torn = calls[2]
    assert (out / "o" / "c" / str(torn[0]) / str(torn[1]) / "0").is_file()  # values there
    assert torn not in Field.open(out).done()
    with pytest.raises(DataError, match=r"incomplete \(2 of 32 chunks built"):
        score_field(out, ["sea"])
    with pytest.raises(DataError, match="incomplete"):
        search_field(out, "sea")
    monkeypatch.setattr(Field, "_write_record", real)
    assert build(out, tiny_model_dir).chunks_built == 30
    assert np.isfinite(score_field(out, ["sea"])[0]).all()


def test_damaged_chunk_is_detected_and_rebuilt(fields, tiny_model_dir, tmp_path):
    import shutil

    out = tmp_path / "damaged.field"
    shutil.copytree(fields["float16"], out)
    chunk = out / "o" / "c" / "1" / "2" / "0"
    data = bytearray(chunk.read_bytes())
    data[100] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"chunk \(1, 2\) .* is corrupt"):
        score_field(Field.open(out, writable=True), ["sea"])
    report = build(out, tiny_model_dir)  # the same build checks and repairs
    assert (report.chunks_built, report.repaired) == (1, {"corrupt": 1})
    np.testing.assert_array_equal(raw(out)["o"], raw(fields["float16"])["o"])


def test_resuming_with_other_options_is_refused(fields, tiny_model_dir, tmp_path):
    with pytest.raises(InputError, match="dtype float16 vs int8"):
        build(fields["float16"], tiny_model_dir, "int8")
    with pytest.raises(InputError, match="grid"):
        build(fields["float16"], tiny_model_dir, bbox="-20,30,40,61")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not an omnimap field"):
        build(tmp_path / "taken", tiny_model_dir)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"dtype": "bfloat16"}, "dtype must be"), ({"engine": "spark"}, "engine must be"),
     ({"workers": 2}, "applies to --engine ray"), ({"chunk": 0}, "--chunk"),
     ({"resolution": 0.0}, "resolution")],
)  # fmt: skip
def test_build_input_errors(tiny_model_dir, tmp_path, kwargs, match):
    with pytest.raises(InputError, match=match):
        build(tmp_path / "x.field", tiny_model_dir, **kwargs)


# -- search ------------------------------------------------------------------------


def brute_force_top_k(path, prompt, when, k):
    scores = score_field(path, [prompt], when=When.parse(when) if when else None)[0][0].ravel()
    order = np.lexsort((np.arange(scores.size), -scores))[:k]
    return order, scores[order], scores


@pytest.mark.parametrize("when", [None, "2024-07-01T22:00+00:00"])
def test_exact_search_is_the_brute_force_top_k(fields, when):
    result = search_field(fields["int8"], "city lights at night", when=when, k=25)
    ids, scores, all_scores = brute_force_top_k(fields["int8"], "city lights at night", when, 25)
    assert [h.row * 60 + h.col for h in result.hits] == ids.tolist()
    assert [h.score for h in result.hits] == scores.tolist()  # the same arithmetic
    grid = Field.open(fields["int8"]).grid
    top = result.hits[0]
    assert (top.lon, top.lat) == (grid.lons()[top.col], grid.lats()[top.row])
    assert top.score == all_scores.max() and [h.rank for h in result.hits] == list(range(1, 26))


def overlap(a, b):
    return len({(h.row, h.col) for h in a} & {(h.row, h.col) for h in b}) / len(b)


def test_indexed_search_recall(fields):
    path = fields["float16"]
    exact = search_field(path, "snow on the mountains", k=20).hits
    flat = search_field(path, "snow on the mountains", k=20, method="flat").hits
    field = Field.open(path)
    nlist = load_or_build(engine_for(field), field.grid, None, "ivf").nlist
    ivf = {n: search_field(path, "snow on the mountains", k=20, method="ivf", nprobe=n).hits
           for n in (1, nlist)}  # fmt: skip
    recall = {
        "flat": overlap(flat, exact),
        **{f"ivf/{n}": overlap(h, exact) for n, h in ivf.items()},
    }
    print(f"recall@20 vs exact ({nlist} IVF lists): {recall}")
    # Both scan every vector here; only the float16 rounding of fused vectors differs.
    assert recall["flat"] >= 0.95 and recall[f"ivf/{nlist}"] >= 0.95
    np.testing.assert_allclose([h.score for h in flat], [h.score for h in exact][: len(flat)],
                               atol=2e-3)  # fmt: skip
    assert recall["ivf/1"] <= recall[f"ivf/{nlist}"]
    with pytest.raises(InputError, match="--nprobe must be between 1 and"):
        search_field(path, "sea", method="ivf", nprobe=nlist + 1)


def test_index_is_cached_per_time_and_verified(fields, monkeypatch):
    path = fields["int8"]
    engine = api.get_engine(None, str(path))  # the engine api.search uses
    fusing = []
    real_dynamic = engine.embedder.dynamic
    monkeypatch.setattr(engine.embedder, "dynamic", lambda m: fusing.append(1) or real_dynamic(m))
    monkeypatch.setattr(engine, "_fused", type(engine._fused)(1, 1))  # no fused embeddings kept

    def indexes():  # this field's, among those of other tests in the same cache
        mine = engine.field.content_digest()
        return [k for k in engine.store.keys() if k.startswith("index|") and mine in k]

    first = search_field(path, "a quiet village in winter", k=5, method="flat")
    assert fusing
    fusing.clear()
    search_field(path, "sea", k=5, method="flat")  # in memory
    index._loaded.clear()
    again = search_field(path, "a quiet village in winter", k=5, method="flat")  # from the store
    assert not fusing and again.hits == first.hits
    assert len(indexes()) == 1
    data, _ = engine.store._paths(indexes()[0])
    data.write_bytes(data.read_bytes()[:-8] + bytes(8))  # damaged: rebuilt
    index._loaded.clear()
    assert search_field(path, "a quiet village in winter", k=5, method="flat").hits == first.hits
    assert fusing
    fusing.clear()
    search_field(path, "sea", when="2024-01-01T00:00", method="flat")  # a new time: new index
    assert fusing and len(indexes()) == 2


def test_search_writes_geojson_and_checks_its_inputs(fields, tmp_path):
    result = search_field(fields["float16"], "sea", k=3)
    doc = json.loads(result.write_geojson(tmp_path / "hits.geojson").read_text())
    assert doc["type"] == "FeatureCollection" and doc["prompt"] == "sea"
    assert [f["properties"]["rank"] for f in doc["features"]] == [1, 2, 3]
    assert doc["features"][0]["geometry"]["coordinates"] == [
        round(result.hits[0].lon, 6), round(result.hits[0].lat, 6)]  # fmt: skip
    assert "rank" in result.table() and len(result.table().splitlines()) == 5
    for kwargs, match in [({"k": 0}, "--k"), ({"method": "hnsw"}, "method"),
                          ({"nprobe": 3}, "--nprobe applies"), ({"when": "soon"}, "bad date")]:  # fmt: skip
        with pytest.raises(InputError, match=match):
            search_field(fields["float16"], "sea", **kwargs)


# -- Ray ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_ray_build_equals_local_and_finishes_a_killed_one(
    local_ray, fields, tiny_model_dir, other_model_dir, tmp_path, monkeypatch
):
    on_ray = build(tmp_path / "ray.field", tiny_model_dir, "float32", engine="ray", workers=2)
    # Every chunk computed once: the engine reports each chunk's cells as it finishes.
    assert (on_ray.chunks_built, on_ray.cells_built) == (32, 60 * 30)
    np.testing.assert_allclose(raw(on_ray.path)["o"], raw(fields["float32"])["o"],
                               rtol=1e-5, atol=1e-6)  # fmt: skip

    out = tmp_path / "mixed.field"
    crash_after(monkeypatch, 7)
    with pytest.raises(RuntimeError, match="killed"):
        build(out, tiny_model_dir, "int8")
    report = build(out, tiny_model_dir, "int8", engine="ray", workers=2)
    assert (report.chunks_skipped, report.chunks_built) == (7, 25)
    ours, local = raw(out), raw(fields["int8"])
    np.testing.assert_allclose(ours["scale"], local["scale"], rtol=1e-5)
    assert np.abs(ours["o"].astype(int) - local["o"]).max() <= 1  # a rounding step at most

    capped = build(tmp_path / "big.field", tiny_model_dir, engine="ray", workers=3)  # 2 run
    assert capped.chunks_built == 32
    # A worker's own user error reaches the driver as itself (one line), not as a Ray error.
    with pytest.raises(DataError, match="is not the one field"):
        build_with_ray(out, str(other_model_dir), [(0, 0)], 1, print)
