"""Where and when: galleries, the locate methods, time posteriors and verification."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from omnimap.cli.main import app
from omnimap.core.errors import DataError, InputError, OmnimapError
from omnimap.core.store import ArrayStore
from omnimap.datasets.gallery import Observations, build_from_texts, open_gallery
from omnimap.eval.geolocation import accuracy
from omnimap.geo.bbox import BBox
from omnimap.geo.grid import LatLonGrid
from omnimap.geo.sphere import haversine_km
from omnimap.geo.timefeat import When
from omnimap.maps.engine import MapEngine
from omnimap.maps.locate import (
    density_on_grid,
    fit_geoclip_head,
    knn_points,
    locate_field,
    locate_knn,
    mean_shift,
)  # fmt: skip
from omnimap.maps.when import time_scores, verify_time

TEXTS = ["sand dunes in the desert", "ice and snow on the sea", "a city with lights at night",
         "forest and trees on the hills", "fields of crops in summer"]  # fmt: skip
PLACES = [(25.0, 23.0), (-40.0, 75.0), (2.35, 48.85), (-60.0, -5.0), (-95.0, 40.0)]


@pytest.fixture()
def engine(tiny_model_dir, tmp_path):
    return MapEngine(str(tiny_model_dir), store=ArrayStore("cells", root=tmp_path))


@pytest.fixture()
def gallery_dir(engine, tmp_path):
    lon = np.array([p[0] for p in PLACES])
    lat = np.array([p[1] for p in PLACES])
    n = len(TEXTS)
    time = {"year": np.full(n, 2020), "month": np.array([7, 1, 3, 5, 8]), "day": np.full(n, 15),
            "hour": np.array([12.0, 3.0, 22.0, 9.0, 15.0], np.float32)}  # fmt: skip
    obs = Observations(lon, lat, list(TEXTS), time=time)
    return build_from_texts(tmp_path / "g", obs, engine.teacher, progress=False)


def test_gallery_round_trip_and_search(engine, gallery_dir):
    g = open_gallery(gallery_dir)
    assert len(g) == 5 and g.dim == engine.dim and g.modality == "text"
    np.testing.assert_allclose(g.lon, [p[0] for p in PLACES])
    expected = engine.teacher.embed("text", TEXTS)
    np.testing.assert_allclose(g.embeddings.astype(np.float32), expected, atol=2e-3)
    scores, ids = g.search(expected, 3)
    exact = expected @ g.embeddings.astype(np.float32).T
    np.testing.assert_allclose(scores[:, 0], exact.max(1), atol=1e-5)  # flat index: exact
    np.testing.assert_allclose(np.take_along_axis(exact, ids, 1), scores, atol=1e-5)
    assert g.time is not None and g.time.month.tolist() == [7, 1, 3, 5, 8]
    assert g.time.day_of_year[0] == 197  # 15 July 2020 (leap year)
    g.check_teacher(engine.teacher)


def test_gallery_refuses_damage_other_teachers_and_emptiness(engine, gallery_dir, tmp_path):
    with pytest.raises(DataError, match="built by teacher"):
        open_gallery(gallery_dir).check_teacher(
            type("T", (), {"name": "x", "to_config": lambda self: {"key": "other"}})()
        )
    data = gallery_dir / "embeddings.npy"
    raw = bytearray(data.read_bytes())
    raw[-1] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="digest"):
        open_gallery(gallery_dir)
    with pytest.raises(DataError, match="not a gallery"):
        open_gallery(tmp_path / "nothing")
    with pytest.raises(InputError):
        build_from_texts(tmp_path / "e", Observations([], [], []), engine.teacher)
    assert not (tmp_path / "e").exists()
    with pytest.raises(InputError, match="out of range"):
        Observations([200.0], [0.0], ["x"])


def test_mean_shift_finds_the_heavier_cluster_first():
    rng = np.random.default_rng(0)
    a = np.stack([10 + rng.normal(0, 0.3, 20), 45 + rng.normal(0, 0.3, 20)], 1)
    b = np.stack([-70 + rng.normal(0, 0.3, 10), -30 + rng.normal(0, 0.3, 10)], 1)
    pts = np.concatenate([a, b])
    w = np.concatenate([np.full(20, 0.5 / 20), np.full(10, 0.5 / 10)])
    w[:20] *= 1.5
    modes = mean_shift(pts[:, 0], pts[:, 1], w / w.sum(), bandwidth_km=200)
    assert len(modes) == 2
    (lon0, lat0, m0, members0), (lon1, lat1, m1, _) = modes
    assert m0 > m1 and abs(m0 + m1 - 1) < 1e-9
    assert haversine_km(lon0, lat0, 10, 45) < 60 and haversine_km(lon1, lat1, -70, -30) < 60
    assert members0[:20].all() and not members0[20:].any()


def test_density_on_grid_is_a_distribution_peaking_at_the_points():
    grid = LatLonGrid.from_bbox(BBox(-20, -20, 20, 20), 1.0)
    prob = density_on_grid(grid, np.array([5.0]), np.array([-5.0]), np.array([1.0]), 200)
    assert abs(prob.sum() - 1) < 1e-5
    r, c = np.unravel_index(prob.argmax(), prob.shape)
    assert abs(grid.lons()[c] - 5) <= 1 and abs(grid.lats()[r] + 5) <= 1


def test_knn_locates_a_known_observation(engine, gallery_dir):
    g = open_gallery(gallery_dir)
    grid = LatLonGrid.from_bbox(BBox.world(), 2.0)
    q = engine.teacher.embed("text", [TEXTS[2]])[0]
    post = locate_knn(g, q, grid, None, TEXTS[2])
    assert abs(post.prob.sum() - 1) < 1e-5
    masses = [h.mass for h in post.hypotheses]
    assert masses == sorted(masses, reverse=True) and sum(masses) <= 1 + 1e-9
    # The top hypothesis carries the most similar observation's weight.
    _, _, w = knn_points(g, q[None])
    assert post.best.mass >= w.max() - 1e-9
    # With a time, observations at other hours and months weigh less.
    _, _, w_time = knn_points(g, q[None], np.array([[22.0]]), np.array([[3]]))
    assert w_time[0].max() >= w[0].max() - 1e-9


def test_field_posterior_sums_to_one_and_temperature_sharpens(engine):
    grid = LatLonGrid.from_bbox(BBox(0, 40, 10, 50), 0.5)
    q = engine.embed_queries(["snow on the mountains"])[0]
    hot = locate_field(engine, q, grid, None, "snow", temperature=1.0)
    cold = locate_field(engine, q, grid, None, "snow", temperature=0.001)
    for post in (hot, cold):
        assert abs(post.prob.sum() - 1) < 1e-4 and (post.prob >= 0).all()
    assert cold.prob.max() > hot.prob.max()
    # The MAP cell is the best-scoring cell once areas are equalised (small box).
    scores = engine.score_vectors(q[None], grid)[0]
    assert np.unravel_index(cold.prob.argmax(), grid.shape) == np.unravel_index(
        scores.argmax(), grid.shape
    )
    assert cold.best.radius_km >= 0.5 * 0.5 * 111


def test_posterior_files(engine, tmp_path):
    grid = LatLonGrid.from_bbox(BBox(0, 40, 10, 50), 0.5)
    post = locate_field(
        engine, engine.embed_queries(["snow"])[0], grid, When.parse("2024-01-15T09:00"), "snow"
    )
    paths = post.write(tmp_path / "where.tif")
    assert {"tif", "png", "geojson"} <= set(paths)
    gj = json.loads(paths["geojson"].read_text())
    assert gj["method"] == "field" and gj["features"][0]["properties"]["rank"] == 1
    assert {"mass", "radius_km"} <= set(gj["features"][0]["properties"])
    import rasterio

    with rasterio.open(paths["tif"]) as src:  # a posterior, not similarities
        assert src.units == ("probability",) and "sum to 1" in src.descriptions[0]
        assert abs(float(np.nansum(src.read(1))) - 1.0) < 1e-3


def test_time_scores_and_verification_agree(engine):
    q = engine.embed_queries(["a city with lights at night"])[0]
    scores = time_scores(engine, q, 2.35, 48.85, 2024)
    assert scores.shape == (12, 24) and np.isfinite(scores).all() and scores.std() > 0
    m, h = np.unravel_index(scores.argmax(), scores.shape)
    best = verify_time(engine, q, 2.35, 48.85, When.parse(f"2024-{m + 1:02d}-15T{h:02d}:30"))
    assert best["rank"] == 1 and abs(best["score"] - scores.max()) < 1e-6
    m, h = np.unravel_index(scores.argmin(), scores.shape)
    worst = verify_time(engine, q, 2.35, 48.85, When.parse(f"2024-{m + 1:02d}-15T{h:02d}:30"))
    assert worst["rank"] == 288 and worst["percentile"] == 0.0
    with pytest.raises(InputError):
        time_scores(engine, q, 10.0, 95.0)


class _LinearGeoClip:
    """Stands in for GeoCLIP's location encoder: a fixed linear map of unit vectors."""

    def __init__(self, d):
        self.m = np.random.default_rng(3).normal(size=(3, d))

    def encode_locations(self, lon, lat):
        from omnimap.geo.sphere import unit_vectors

        y = unit_vectors(lon, lat) @ self.m
        return y / np.linalg.norm(y, axis=1, keepdims=True)


def test_geoclip_head_recovers_a_linear_relation():
    rng = np.random.default_rng(0)
    lon, lat = rng.uniform(-180, 180, 400), rng.uniform(-80, 80, 400)
    fake = _LinearGeoClip(8)
    target = fake.encode_locations(lon, lat)
    x = np.concatenate([target @ rng.normal(size=(8, 8)), rng.normal(size=(400, 4)) * 0.01], 1)
    head = fit_geoclip_head(x, lon, lat, fake, ridge=1e-6)
    cos = np.sum(head(x) * target, axis=1)
    assert cos.mean() > 0.99


def test_accuracy_rows():
    row = accuracy(np.array([0.5, 10, 100, 500, 1000, 3000]))
    assert row["1km"] == pytest.approx(100 / 6) and row["2500km"] == pytest.approx(500 / 6)
    assert row["median_km"] == 300 and row["n"] == 6


runner = CliRunner()


@pytest.mark.parametrize("args, message", [
    (["locate", "snow", "--method", "nearest"], "--method"),
    (["locate", "snow", "--method", "knn"], "needs a gallery"),
    (["locate", "snow", "--method", "cells"], "needs a gallery"),
    (["locate", "snow", "--out", "where.png"], "--out must end in .tif"),
    (["when", "snow", "--at", "10,95"], "out of range"),
    (["when", "snow", "--at", "ten"], "LON,LAT"),
    (["verify", "snow", "--at", "200,0", "--when", "2024-01-01T10:00"], "out of range"),
    (["locate", "snow", "--gallery", "no-such-gallery", "--method", "knn"], "not a gallery"),
])  # fmt: skip
def test_cli_bad_input(args, message, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, [*args, "--model", str(tiny_model_dir)])
    assert isinstance(result.exception, OmnimapError), result.output
    assert message in str(result.exception)
    assert list(tmp_path.iterdir()) == []


def test_cli_bad_input_exits_2_with_one_line(tiny_model_dir, tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "omnimap.cli", "locate", "   ", "--model",
                          str(tiny_model_dir), "--out", str(tmp_path / "w.tif")],
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 2 and out.stderr.strip() == (
        "error: prompt is empty; describe what to map, e.g. 'snow-covered mountains'"
    )
    assert list(tmp_path.iterdir()) == []


def test_cli_locate_knn_and_verify(tiny_model_dir, gallery_dir, tmp_path):
    out = tmp_path / "where.tif"
    r = runner.invoke(app, ["locate", TEXTS[0], "--method", "knn", "--gallery", str(gallery_dir),
                            "--resolution", "2", "--model", str(tiny_model_dir), "--out", str(out)])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert (
        out.exists() and out.with_suffix(".png").exists() and out.with_suffix(".geojson").exists()
    )
    r = runner.invoke(app, ["verify", TEXTS[2], "--at", "2.35,48.85", "--when", "2024-03-15T22:00",
                            "--model", str(tiny_model_dir)])  # fmt: skip
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert lines[0].startswith("score: ") and lines[1].startswith("rank: ")
    r = runner.invoke(app, ["when", TEXTS[2], "--at", "2.35,48.85", "--model", str(tiny_model_dir),
                            "--out", str(tmp_path / "when.png")])  # fmt: skip
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "when.json").read_text())
    assert len(data["hour"]) == 24 and abs(sum(data["month"]) - 1) < 1e-4


def _memory_gallery(engine, lon, lat, texts):
    from omnimap.datasets.gallery import Gallery

    vectors = engine.teacher.embed("text", texts).astype(np.float16)
    return Gallery(path=None, lon=np.asarray(lon, float), lat=np.asarray(lat, float), time=None,
                   sources=list(texts), embeddings=vectors, teacher=engine.teacher.to_config(),
                   modality="text", index=None, index_kind="none")  # fmt: skip


def test_fusion_keeps_cells_without_observations_and_leans_on_near_ones(engine, gallery_dir):
    from omnimap.maps.fusion import fuse, like_cells, predicted_at

    g = open_gallery(gallery_dir)
    lon = np.array([2.35, 2.40, 120.0])  # at, near, far from the Paris observation
    lat = np.array([48.85, 48.90, -30.0])
    cells = engine.embedder.fused(lon, lat, None, "no_time")
    blended, alpha = fuse(cells, lon, lat, g, predicted_at(engine, g, None),
                          like=like_cells(engine, g, None))  # fmt: skip
    # No observation within 3 bandwidths: the student's embedding, bit for bit.
    assert alpha[2] == 0 and np.array_equal(blended[2], cells[2].astype(np.float16))
    assert alpha[0] > alpha[1] > 0 and alpha[0] < 0.5  # one observation never outweighs the student
    obs = g.embeddings[2].astype(np.float32) - g.embeddings.astype(np.float32).mean(0)
    assert blended[0].astype(np.float32) @ obs > cells[0] @ obs  # moved towards what was seen
    np.testing.assert_allclose(np.linalg.norm(blended.astype(np.float32), axis=1), 1, atol=1e-3)


def test_fusion_falls_back_to_the_student_when_observations_are_far_or_unlike(engine):
    from omnimap.maps.fusion import fuse, like_cells, predicted_at
    from omnimap.maps.scoring import cosine_scores

    lon, lat = np.linspace(0, 4, 9), np.full(9, 45.0)
    cells = engine.embedder.fused(lon, lat, None, "no_time").astype(np.float16)
    q = engine.teacher.embed("text", ["sand dunes", "snow", "a city at night"])
    student = cosine_scores(cells, q)

    # Observations 2,000 km away: every cell keeps exactly the student's scores.
    far = _memory_gallery(engine, [30.0, 31.0, 32.0], [30.0, 31.0, 32.0], TEXTS[:3])
    blended, alpha = fuse(cells, lon, lat, far, predicted_at(engine, far, None),
                          like=like_cells(engine, far, None))  # fmt: skip
    assert (alpha == 0).all() and np.array_equal(blended, cells)
    assert np.array_equal(cosine_scores(blended, q), student)

    # One observation next to the cells: nothing to centre against, nothing changes.
    one = _memory_gallery(engine, [2.0], [45.0], TEXTS[:1])
    assert np.array_equal(fuse(cells, lon, lat, one, predicted_at(engine, one, None))[0], cells)

    # Observations 70 km north whose places the student sees as unlike the cells (their
    # embeddings at the map's time point away from every cell): the scores move by less
    # than 0.01, while the same observations seen as alike move them more.
    near = _memory_gallery(engine, [1.0, 2.0, 3.0], [45.63, 45.63, 45.63], TEXTS[:3])
    pred = predicted_at(engine, near, None)
    unlike = -np.repeat(cells[4:5].astype(np.float32), 3, axis=0)
    moved, a_unlike = fuse(cells, lon, lat, near, pred, like=unlike)
    assert 0 < a_unlike.max() < 0.01
    assert np.abs(cosine_scores(moved, q) - student).max() < 0.01
    alike = np.repeat(cells[4:5].astype(np.float32), 3, axis=0)
    shifted, a_alike = fuse(cells, lon, lat, near, pred, like=alike)
    assert a_alike.max() > 10 * a_unlike.max()
    assert np.abs(cosine_scores(shifted, q) - student).max() > np.abs(cosine_scores(moved, q) - student).max()

    # Closer and more alike never means less weight.
    at = _memory_gallery(engine, [2.0, 2.0], [45.0, 45.0], TEXTS[:2])
    _, a_at = fuse(cells, lon, lat, at, predicted_at(engine, at, None),
                   like=np.repeat(cells[4:5].astype(np.float32), 2, axis=0))  # fmt: skip
    assert np.all(np.diff(a_at[:5]) >= 0) and np.all(np.diff(a_at[4:]) <= 0)


def test_cli_map_with_observations(tiny_model_dir, gallery_dir, tmp_path):
    out = tmp_path / "m.tif"
    r = runner.invoke(app, ["map", "city lights", "--bbox", "0,46,5,50", "--resolution", "0.5",
                            "--model", str(tiny_model_dir), "--observations", str(gallery_dir),
                            "--out", str(out)])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert out.exists()


def test_locate_endpoint(tiny_model_dir, tmp_path):
    from fastapi.testclient import TestClient

    from omnimap.serve.app import create_app

    client = TestClient(create_app(str(tiny_model_dir), static_dir=tmp_path / "none"))
    r = client.get(
        "/locate", params={"q": "snow on the mountains", "bbox": "0,40,10,50", "resolution": "1"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["type"] == "FeatureCollection" and body["posterior"]["shape"] == [10, 10]
    assert abs(sum(body["posterior"]["prob"]) - 1) < 1e-4
    assert body["features"][0]["properties"]["rank"] == 1
    assert r.headers["content-type"].startswith("application/geo+json")
    assert body["posterior"]["bounds"] == [0, 40, 10, 50] and len(body["posterior"]["prob"]) == 100
    assert min(body["posterior"]["prob"]) >= 0
    masses = [f["properties"]["mass"] for f in body["features"]]
    assert masses == sorted(masses, reverse=True) and 0 < sum(masses) <= 1 + 1e-4
    for f in body["features"]:
        lon, lat = f["geometry"]["coordinates"]
        assert 0 <= lon <= 10 and 40 <= lat <= 50 and f["properties"]["radius_km"] > 0
    # The page sends its time setting: a time-given posterior, still a distribution.
    timed = client.get("/locate", params={"q": "snow on the mountains", "bbox": "0,40,10,50",
                                          "resolution": "1", "when": "2024-01-15T12:00"}).json()  # fmt: skip
    assert abs(sum(timed["posterior"]["prob"]) - 1) < 1e-4
    # Bad input: a 400 with one line for the page to show.
    for bad, words in (({"q": ""}, "empty"), ({"q": "   "}, "empty"),
                       ({"q": "snow", "resolution": "0.01"}, "resolution"),
                       ({"q": "snow", "when": "next tuesday"}, "iso-8601")):  # fmt: skip
        r = client.get("/locate", params=bad)
        assert r.status_code == 400, bad
        detail = r.json()["detail"]
        assert words in detail.lower() and "\n" not in detail, detail


def test_adaptive_cells_split_dense_and_drop_sparse():
    from omnimap.maps.cells import adaptive_cells

    rng = np.random.default_rng(0)
    dense = np.stack([2 + rng.normal(0, 0.5, 400), 48 + rng.normal(0, 0.5, 400)], 1)
    sparse = np.array([[-120.0, -40.0]] * 3)
    pts = np.concatenate([dense, sparse])
    ids, label = adaptive_cells(pts[:, 0], pts[:, 1], t1=50, t2=5)
    assert (label[-3:] == -1).all()  # 3 < t2: dropped
    counts = np.bincount(label[label >= 0])
    assert len(ids) > 1 and counts.min() >= 5  # the dense cluster was split


def test_cells_method_needs_a_trained_head(engine, gallery_dir, tmp_path):
    from omnimap.maps.cells import load_cell_head, save_cell_head, train_cell_head
    from omnimap.maps.where import locate

    g = open_gallery(gallery_dir)
    with pytest.raises(InputError, match="no trained cell head"):
        locate("snow", method="cells", gallery=g, engine=engine, resolution=5)
    head = train_cell_head(g, t1=2, t2=1)
    save_cell_head(g, head)
    assert load_cell_head(g).cells.tolist() == head.cells.tolist()
    post = locate(TEXTS[0], method="cells", gallery=g, engine=engine, resolution=5)
    assert abs(post.prob.sum() - 1) < 1e-5 and post.best.rank == 1
    p = head.probabilities(g.embeddings.astype(np.float32))
    assert p.shape == (5, len(head.cells)) and np.allclose(p.sum(1), 1, atol=1e-5)
