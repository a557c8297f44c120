"""Photos: GeoCLIP's own photo path (``locate --image --method geoclip``) and the photo
gallery evaluation (``evaluate geolocation --gallery G --queries Q``).

The CLIP here is a tiny random one saved like a hub model, with 768-d projections so
GeoCLIP's shipped image head takes its features; the real ViT-L/14 is never downloaded.
GeoCLIP's GPS gallery is cut to its first 2,000 points (the full 100k takes about a
minute to encode on 2 cores).
"""

import csv
import importlib.util
import json

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image

from faults import run_cli
from omnimap.core.errors import DataError, InputError, OmnimapError
from omnimap.datasets.gallery import open_gallery, read_located_photos
from omnimap.eval.geolocation import THRESHOLDS_KM
from omnimap.eval.geolocation_photos import evaluate_photo_geolocation
from omnimap.geo.sphere import haversine_km
from omnimap.maps.where import locate
from omnimap.models import geoclip as gc
from omnimap.teachers.clip import CLIPTeacher
from omnimap.teachers.tiny import make_tiny_clip

HAS_GEOCLIP = importlib.util.find_spec("geoclip") is not None
needs_geoclip = pytest.mark.skipif(
    not HAS_GEOCLIP, reason="needs pip install --no-deps geoclip==1.3.0"
)
GALLERY_POINTS = 2000
# Four places, each with its own look (colour and stripe direction) in the synthetic photos.
PLACES = {"paris": (2.35, 48.85), "nairobi": (36.82, -1.29), "sydney": (151.21, -33.87),
          "denver": (-104.99, 39.74)}  # fmt: skip
LOOKS = {"paris": ((200, 40, 40), 0), "nairobi": ((40, 180, 60), 1), "sydney": ((40, 60, 220), 2),
         "denver": ((220, 220, 220), 3)}  # fmt: skip


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return make_tiny_clip(tmp_path_factory.mktemp("clip768"), dim=768)


@pytest.fixture()
def small_geoclip_gallery(monkeypatch):
    monkeypatch.setattr(gc, "GALLERY_SIZE", GALLERY_POINTS)


def photo(look, seed: int, size=(48, 40)) -> Image.Image:
    """A synthetic photo: a colour with stripes in one of four directions, plus noise."""
    colour, direction = look
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    coord = (x, y, x + y, x - y)[direction]
    stripes = (np.sin(coord / 3.0) > 0)[..., None]
    base = np.where(stripes, np.array(colour), np.array(colour) // 3)
    noisy = base + rng.normal(0, 12, (h, w, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def write_table(root, name, per_place: int, seed: int, times: bool = True):
    """A CSV of photos near each place (within ~3 km), saved under root/photos/name."""
    rng = np.random.default_rng(seed)
    folder = root / "photos" / name
    folder.mkdir(parents=True)
    rows = []
    for p, (lon, lat) in PLACES.items():
        for i in range(per_place):
            file = folder / f"{p}-{i}.png"
            photo(LOOKS[p], seed * 1000 + len(rows)).save(file)
            month = 1 + (len(rows) * 5) % 12
            rows.append({"lon": f"{lon + rng.normal(0, 0.02):.5f}",
                         "lat": f"{lat + rng.normal(0, 0.02):.5f}",
                         "datetime": f"2023-{month:02d}-10T{8 + i % 8:02d}:30:00" if times else "",
                         "path": f"photos/{name}/{file.name}"})  # fmt: skip
    table = root / f"{name}.csv"
    with open(table, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return table


@pytest.fixture(scope="module")
def photo_gallery(tmp_path_factory, clip_dir):
    """A gallery built by the CLI from a CSV of 24 synthetic photos, and 8 query photos."""
    root = tmp_path_factory.mktemp("photos")
    table = write_table(root, "gallery", per_place=6, seed=1)
    code, out, err = run_cli("gallery", "build", "--pairs", table, "--teacher", clip_dir,
                             "--out", root / "photos.gallery")  # fmt: skip
    assert code == 0, err
    return root / "photos.gallery", write_table(root, "queries", per_place=2, seed=2)


# --- GeoCLIP's photo path --------------------------------------------------------------


def test_preprocessing_is_transformers_clip_image_processor(clip_dir):
    """Our Pillow preprocessing gives the pixels of transformers' CLIP image processor
    (what GeoCLIP's own encoder uses), without torchvision."""
    try:
        from transformers import CLIPImageProcessorPil as Processor
    except ImportError:  # transformers 4: the Pillow processor is CLIPImageProcessor
        from transformers import CLIPImageProcessor as Processor
    teacher = CLIPTeacher(clip_dir)
    processor = Processor.from_pretrained(clip_dir)
    for size in ((48, 40), (23, 61), (32, 32)):
        im = photo(LOOKS["paris"], 0, size)
        ours = teacher.preprocessing.pixels(im).numpy()
        theirs = processor(images=im, return_tensors="pt")["pixel_values"][0].numpy()
        np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_image_features_are_get_image_features(clip_dir):
    from transformers import CLIPModel

    teacher = CLIPTeacher(clip_dir)
    ims = [photo(LOOKS["sydney"], 3), photo(LOOKS["denver"], 4)]
    raw = teacher.image_features(ims)
    assert raw.shape == (2, 768) and raw.dtype == np.float32
    model = CLIPModel.from_pretrained(clip_dir).eval()
    with torch.inference_mode():
        out = model.get_image_features(
            pixel_values=torch.stack([teacher.preprocessing.pixels(i) for i in ims])
        )
    ref = (out if isinstance(out, torch.Tensor) else out.pooler_output).numpy()
    np.testing.assert_allclose(raw, ref, atol=1e-5)
    assert np.abs(np.linalg.norm(raw, axis=1) - 1).max() > 1e-3  # not normalised
    unit = teacher.embed_images(ims)
    np.testing.assert_allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-6)


@needs_geoclip
def test_embed_photos_is_clip_features_through_the_shipped_head(clip_dir):
    model = gc.GeoClip.load()
    ims = [photo(LOOKS["nairobi"], 5), photo(LOOKS["paris"], 6)]
    z = model.embed_photos(ims, clip_dir)
    assert z.shape == (2, 512) and z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1, atol=1e-5)
    raw = CLIPTeacher(clip_dir).image_features(ims)
    np.testing.assert_allclose(z, model.image_head(raw), atol=1e-6)
    np.testing.assert_array_equal(model.embed_photos(ims, clip_dir), z)  # deterministic


@needs_geoclip
def test_a_clip_of_another_width_is_refused(tmp_path):
    narrow = make_tiny_clip(tmp_path / "clip32", dim=32)
    with pytest.raises(InputError, match="768-d ones"):
        gc.photo_clip(narrow)


@needs_geoclip
def test_locate_photo_with_geoclip(clip_dir, tmp_path, small_geoclip_gallery):
    file = tmp_path / "photo.png"
    photo(LOOKS["paris"], 7).save(file)
    post = locate(file, "image", method="geoclip", clip=str(clip_dir), resolution=2)
    assert post.method == "geoclip" and post.prob.shape == (90, 180)
    assert post.prob.dtype == np.float32 and (post.prob >= 0).all()
    assert abs(float(post.prob.sum()) - 1) < 1e-4
    assert 1 <= len(post.hypotheses) <= 5 and [h.rank for h in post.hypotheses] == list(
        range(1, len(post.hypotheses) + 1)
    )
    masses = [h.mass for h in post.hypotheses]
    assert masses == sorted(masses, reverse=True) and 0 < sum(masses) <= 1 + 1e-6
    assert all(h.radius_km > 0 for h in post.hypotheses)
    # The hypotheses are GeoCLIP's top gallery points for this photo's embedding.
    model = gc.GeoClip.load()
    pred = model.predict(model.embed_photos([Image.open(file).convert("RGB")], clip_dir), k=5)
    top = {
        (round(float(a), 6), round(float(b), 6))
        for a, b in zip(pred.lon[0], pred.lat[0], strict=True)
    }
    assert (round(post.best.lon, 6), round(post.best.lat, 6)) in top
    again = locate(file, "image", method="geoclip", clip=str(clip_dir), resolution=2)
    np.testing.assert_array_equal(again.prob, post.prob)  # deterministic
    assert [h.__dict__ for h in again.hypotheses] == [h.__dict__ for h in post.hypotheses]


@needs_geoclip
def test_cli_locate_photo_geoclip_writes_the_posterior(clip_dir, tmp_path, small_geoclip_gallery):
    file = tmp_path / "photo.jpg"
    photo(LOOKS["denver"], 8).save(file)
    out = tmp_path / "where.tif"
    code, stdout, err = run_cli("locate", file, "--image", "--method", "geoclip", "--clip", clip_dir,
                                "--resolution", "2", "--out", out)  # fmt: skip
    assert code == 0, err
    with rasterio.open(out) as src:
        assert src.units == ("probability",)
        assert abs(float(np.nansum(src.read(1))) - 1) < 1e-3
    assert out.with_suffix(".png").stat().st_size > 0
    gj = json.loads(out.with_suffix(".geojson").read_text())
    assert gj["method"] == "geoclip" and 1 <= len(gj["features"]) <= 5
    props = gj["features"][0]["properties"]
    assert props["rank"] == 1 and props["mass"] > 0 and props["radius_km"] > 0
    assert "1. lon" in stdout


@pytest.mark.parametrize("args, message", [
    (["--method", "geoclip", "--clip", "CLIP32"], "768-d ones"),
    (["--method", "knn", "--clip", "CLIP768"], "--clip is used only by --method geoclip"),
])  # fmt: skip
def test_cli_locate_photo_bad_input(args, message, clip_dir, tmp_path, tiny_model_dir):
    if "geoclip" in args and not HAS_GEOCLIP:
        pytest.skip("needs the geoclip package")
    file = tmp_path / "in" / "photo.png"
    file.parent.mkdir()
    photo(LOOKS["paris"], 9).save(file)
    clips = {"CLIP32": make_tiny_clip(tmp_path / "in" / "clip32", dim=32), "CLIP768": clip_dir}
    args = [clips.get(a, a) for a in args]
    out = tmp_path / "out" / "where.tif"
    code, _, err = run_cli(
        "locate", file, "--image", *args, "--model", tiny_model_dir, "--out", out
    )
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.parent.exists()


def test_a_description_with_geoclip_still_needs_a_gallery(tiny_model_dir, tmp_path):
    code, _, err = run_cli("locate", "snow on the peaks", "--method", "geoclip", "--model",
                           tiny_model_dir, "--out", tmp_path / "w.tif")  # fmt: skip
    assert code == 2 and "needs a gallery" in err
    assert list(tmp_path.iterdir()) == []


# --- photo galleries ------------------------------------------------------------------


def test_photo_gallery_from_a_csv_checks_its_clip_teacher(photo_gallery, clip_dir, tmp_path):
    g = open_gallery(photo_gallery[0])
    assert len(g) == 24 and g.modality == "image" and g.dim == 768 and g.time is not None
    teacher = CLIPTeacher(clip_dir)
    g.check_teacher(teacher)  # the same CLIP: its text and image keys match
    with pytest.raises(DataError, match="built by teacher clip768"):
        g.check_teacher(CLIPTeacher(make_tiny_clip(tmp_path / "other", dim=768, seed=1)))
    photos = read_located_photos(photo_gallery[1])
    assert len(photos) == 8 and photos.ids is None and photos.time()["month"].shape == (8,)
    # The gallery's vectors are the teacher's unit vectors of its photos.
    first = teacher.embed_images(photos.images(0, 1))  # a query, not in the gallery
    scores, ids = g.search(first, 6)
    assert all(g.sources[i].endswith(tuple(f"paris-{k}.png" for k in range(6))) for i in ids[0])
    np.testing.assert_allclose(scores[0, 0], float(first[0] @ g.embeddings[ids[0, 0]].astype(np.float32)),
                               atol=1e-3)  # fmt: skip


# --- evaluate geolocation --gallery --queries -----------------------------------------


def test_cli_evaluate_photo_geolocation(photo_gallery, tmp_path, small_geoclip_gallery):
    gallery, queries = photo_gallery
    out = tmp_path / "m.json"
    code, stdout, err = run_cli("evaluate", "geolocation", "--gallery", gallery, "--queries", queries,
                                "--out", out)  # fmt: skip
    assert code == 0, err
    m = json.loads(out.read_text())
    assert (
        m["queries"] == 8 and m["gallery_size"] == 24 and m["thresholds_km"] == list(THRESHOLDS_KM)
    )
    assert m["teacher"]["name"].startswith("clip768")
    expected = {"baseline: a random gallery photo", "knn, time-free", "knn, time given"}
    if HAS_GEOCLIP:  # a 768-d CLIP teacher: geoclip is on by default, from the same features
        expected.add("geoclip (photo head), time-free")
        assert m["geoclip_clip"] == m["teacher"]["name"]
    assert set(m["rows"]) == expected
    for row in m["rows"].values():
        assert row["n"] == 8 and set(row) >= {f"{t}km" for t in THRESHOLDS_KM} | {"median_km"}
        pct = [row[f"{t}km"] for t in THRESHOLDS_KM]
        assert pct == sorted(pct) and 0 <= pct[0] and pct[-1] <= 100
        assert all(p * 8 / 100 == pytest.approx(round(p * 8 / 100)) for p in pct)  # whole queries
    # Each place looks different: knn finds every query's own place (its photos lie
    # within ~3 km of it); the random-photo baseline gets about a quarter.
    knn = m["rows"]["knn, time-free"]
    assert knn["25km"] == 100.0 and knn["median_km"] < 10
    assert m["rows"]["baseline: a random gallery photo"]["25km"] < 60
    assert m["rows"]["knn, time given"]["with_time"] == 8
    assert "knn, time-free" in stdout and f"written {out}" in stdout
    if HAS_GEOCLIP:  # the batch path agrees with GeoCLIP on each photo alone
        photos = read_located_photos(queries)
        model = gc.GeoClip.load()
        pred = model.predict(
            model.embed_photos(photos.images(), CLIPTeacher(open_gallery(gallery).teacher["name"])),
            k=1,
        )
        err_km = haversine_km(pred.lon[:, 0], pred.lat[:, 0], photos.lon, photos.lat)
        assert m["rows"]["geoclip (photo head), time-free"]["median_km"] == pytest.approx(
            np.median(err_km), rel=1e-6
        )


def test_evaluate_photo_geolocation_methods_and_cells(photo_gallery, tmp_path):
    from omnimap.maps.cells import save_cell_head, train_cell_head

    gallery, queries = photo_gallery
    m = evaluate_photo_geolocation(gallery, queries, methods=("knn",))
    assert set(m["rows"]) == {
        "baseline: a random gallery photo",
        "knn, time-free",
        "knn, time given",
    }
    with pytest.raises(InputError, match="photo queries are located by knn, cells, geoclip"):
        evaluate_photo_geolocation(gallery, queries, methods=("field",))
    with pytest.raises(InputError, match="no trained cell head"):
        evaluate_photo_geolocation(gallery, queries, methods=("cells",))
    copy = tmp_path / "g2"
    import shutil

    shutil.copytree(gallery, copy)
    g = open_gallery(copy)
    save_cell_head(g, train_cell_head(g, t1=6, t2=2))
    m = evaluate_photo_geolocation(copy, queries, methods=("knn", "cells"))
    cells = m["rows"]["cells (PlaNet), time-free"]
    assert cells["n"] == 8 and 0 <= cells["2500km"] <= 100


def _damage(kind, root, queries, clip_dir):
    """A bad queries table (or teacher), and the words its one-line error must hold."""
    if kind == "empty":
        bad = root / "empty.csv"
        bad.write_text("lon,lat,path\n")
        return ["--queries", bad], "has no rows"
    if kind == "corrupt":
        bad = root / "corrupt.parquet"
        bad.write_bytes(b"PAR1 this is not parquet")
        return ["--queries", bad], "cannot read pairs table"
    if kind == "not-a-table":
        bad = root / "garbage.csv"
        bad.write_bytes(b"\x00\x01 binary\n\xff")
        return ["--queries", bad], "is not UTF-8"
    rows = list(csv.DictReader(open(queries, encoding="utf-8")))
    if kind == "missing-image":
        rows[3]["path"] = "photos/queries/nowhere.png"
        words = "photos/queries/nowhere.png listed in bad.csv does not exist"
    elif kind == "out-of-range":
        rows[2]["lat"] = "95.0"
        words = "line 4: impossible position lon="
    else:  # another teacher than the gallery's
        other = make_tiny_clip(root / "other-clip", dim=768, seed=1)
        return ["--queries", queries, "--teacher", other], "built by teacher clip768"
    bad = root / "bad.csv"
    with open(bad, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return ["--queries", bad], words


@pytest.mark.parametrize("kind", ["empty", "corrupt", "not-a-table", "missing-image", "out-of-range",
                                  "other-teacher"])  # fmt: skip
def test_cli_evaluate_photo_bad_input(kind, photo_gallery, clip_dir, tmp_path):
    gallery, queries = photo_gallery
    root = queries.parent  # beside the query photos, so relative paths resolve
    args, words = _damage(kind, root, queries, clip_dir)
    out = tmp_path / "metrics" / "m.json"
    code, stdout, err = run_cli(
        "evaluate", "geolocation", "--gallery", gallery, *args, "--out", out
    )
    assert code == 2, (stdout, err)
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and words in err, err
    assert not out.parent.exists()


def test_cli_evaluate_photos_needs_a_photo_gallery(tmp_path, tiny_model_dir):
    code, _, err = run_cli("evaluate", "geolocation", "--queries", tmp_path / "q.csv",
                           "--out", tmp_path / "m.json")  # fmt: skip
    assert code == 2 and "--queries needs --gallery" in err
    assert list(tmp_path.iterdir()) == []


def test_a_text_gallery_is_refused_for_photo_queries(photo_gallery, tiny_model_dir, tmp_path):
    from omnimap.datasets.gallery import Observations, build_from_texts
    from omnimap.maps.engine import MapEngine

    engine = MapEngine(str(tiny_model_dir))
    text = build_from_texts(tmp_path / "t.gallery", Observations([1.0], [2.0], ["snow"]),
                            engine.teacher, progress=False)  # fmt: skip
    with pytest.raises(OmnimapError, match="holds text observations"):
        evaluate_photo_geolocation(text, photo_gallery[1], out=tmp_path / "m.json")
    assert not (tmp_path / "m.json").exists()
