"""Uses of a Sat2Cap student: retrieval evaluation, text search, captions, CLI wiring."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from omnimap import api
from omnimap.cli.main import app
from omnimap.core.errors import InputError
from omnimap.datasets.crossview import open_pairs
from omnimap.eval.crossview import evaluate_retrieval, format_table
from omnimap.eval.retrieval import retrieval_metrics
from omnimap.examples.sat2cap import build_data
from omnimap.maps.captions import BUILTIN_CAPTIONS, read_caption_bank
from omnimap.models.checkpoint import load_checkpoint, save_checkpoint
from omnimap.models.student import build_student
from omnimap.teachers.clip import CLIPTeacher
from omnimap.teachers.tiny import make_tiny_clip
from omnimap.train.recipes.sat2cap import architecture

BMNG = {"type": "bmng", "patch_size": 16}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("sat2cap-uses")
    paths = build_data(root, n_train=32, n_test=16)
    clip = make_tiny_clip(root / "clip")
    return {"root": root, "clip": clip, "teacher": CLIPTeacher(clip), **paths}


def _student_dir(setup, path, use_dynamic=True, imagery=None):
    """An untrained student initialised from the teacher, saved like a run."""
    teacher = setup["teacher"]
    arch = architecture(teacher, teacher.preprocessing.mean, teacher.preprocessing.std)
    torch.manual_seed(0)
    student = build_student(arch)
    student.overhead.init_from_teacher(teacher.vision_state())
    config = {"name": path.name, **arch, "teacher": teacher.to_config(), "imagery": imagery or BMNG,
              "training": {"use_dynamic": use_dynamic}}  # fmt: skip
    save_checkpoint(student, config, path)
    return path


def test_retrieval_rows_are_the_metrics_of_each_embedding_both_ways(setup, tmp_path):
    model = load_checkpoint(_student_dir(setup, tmp_path / "full"))
    ablation = _student_dir(setup, tmp_path / "no-dyn", use_dynamic=False)
    data = open_pairs(setup["test"])
    result = evaluate_retrieval(model, data, gallery=12, ablations={"no dynamic encoder": ablation})
    names = [r["name"] for r in result["rows"]]
    assert names == [
        "full",
        "full, no metadata at test time",
        "CLIP (teacher on the overhead image)",
        "no dynamic encoder",
    ]
    assert result["gallery"] == 12
    rows = np.sort(np.random.default_rng(0).choice(16, 12, replace=False))
    sub = data.subset(rows)
    ground = sub.teacher_vectors(setup["teacher"])
    with torch.no_grad():
        s = model.student(
            torch.from_numpy(sub.patches(np.arange(12))), torch.from_numpy(sub.meta)
        ).numpy()
    sim = s @ ground.T
    full = result["rows"][0]
    assert full["overhead_to_ground"] == pytest.approx(retrieval_metrics(sim))
    assert full["ground_to_overhead"] == pytest.approx(retrieval_metrics(sim.T))
    # The same weights without the dynamic encoder are the "no metadata" row.
    assert result["rows"][3]["overhead_to_ground"] == pytest.approx(
        result["rows"][1]["overhead_to_ground"]
    )
    baseline = setup["teacher"].embed_patches(sub.patches(np.arange(12))) @ ground.T
    assert result["rows"][2]["ground_to_overhead"] == pytest.approx(retrieval_metrics(baseline.T))
    table = format_table(result)
    assert "gallery of 12" in table and "no dynamic encoder" in table and "o->g R@10" in table


def _time_model(setup, path, bank):
    """A student whose overhead part is silent and whose dynamic part points at the
    first caption at midnight and at the second at noon (via cos of the hour)."""
    teacher = setup["teacher"]
    arch = architecture(teacher, teacher.preprocessing.mean, teacher.preprocessing.std)
    student = build_student(arch)
    night, noon = torch.from_numpy(teacher.embed_texts(bank[:2]))
    with torch.no_grad():
        for p in student.parameters():
            p.zero_()
        first, last = student.dynamic.net[0], student.dynamic.net[2]
        first.weight[0, 11], first.weight[1, 11] = 1.0, -1.0  # 11: cos(2 pi hour / 23)
        last.weight[:, 0], last.weight[:, 1] = 5 * night, 5 * noon
    config = {"name": "time", **arch, "teacher": teacher.to_config(), "imagery": BMNG}
    save_checkpoint(student, config, path)
    return path


def rank_captions(model, lon, lat, when=None, bank=None, k=5):
    return api.captions(lon, lat, when=when, bank=bank, k=k, model=str(model))


def test_captions_change_with_the_time_of_day(setup, tmp_path):
    bank = ["a dark street at night", "a bright sunny square at noon", "a sandy beach"]
    model = _time_model(setup, tmp_path / "time", bank)
    at_midnight = rank_captions(model, 9.05, 45.04, when="2021-07-01T00:00", bank=bank, k=3)
    at_noon = rank_captions(model, 9.05, 45.04, when="2021-07-01T12:00", bank=bank, k=2)
    assert at_midnight[0]["caption"] == bank[0] and at_noon[0]["caption"] == bank[1]
    assert [r["rank"] for r in at_midnight] == [1, 2, 3]
    assert at_midnight[0]["score"] > at_midnight[1]["score"]
    assert at_midnight[0]["score"] == pytest.approx(1.0, abs=1e-4)  # m is the caption itself
    builtin = rank_captions(model, 9.05, 45.04, when="2021-07-01T00:00", k=4)
    assert len(builtin) == 4 and builtin[0]["caption"] in BUILTIN_CAPTIONS
    with pytest.raises(InputError, match="out of range"):
        rank_captions(model, 200.0, 0.0)


def test_caption_files_and_the_builtin_bank(tmp_path):
    path = tmp_path / "bank.txt"
    path.write_text("# mine\na harbour\n\n  a glacier \n")
    assert read_caption_bank(path) == ["a harbour", "a glacier"]
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(InputError, match="no captions"):
        read_caption_bank(tmp_path / "empty.txt")
    assert len(set(BUILTIN_CAPTIONS)) == len(BUILTIN_CAPTIONS) >= 40


def test_text_search_writes_a_contact_sheet_and_geojson(setup, tmp_path):
    model_dir = _student_dir(setup, tmp_path / "m")
    model = load_checkpoint(model_dir)
    data = open_pairs(setup["test"])
    result, patches = api.search_pairs("a town at night", setup["test"], model=str(model_dir), k=5)
    hits = result.hits
    scores = [h.score for h in hits]
    assert len(hits) == 5 and scores == sorted(scores, reverse=True)
    q = setup["teacher"].embed_texts(["a town at night"])[0]
    with torch.no_grad():
        s = model.student(
            torch.from_numpy(data.patches(np.arange(len(data)))), torch.from_numpy(data.meta)
        ).numpy()
    assert hits[0].index == int(np.argmax(s @ q))
    assert hits[0].score == pytest.approx(float(np.max(s @ q)), abs=1e-5)
    np.testing.assert_array_equal(patches[0], data.patches(np.array([hits[0].index]))[0])
    png = api.write_contact_sheet(result, tmp_path / "out" / "search.png", patches)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    features = json.loads(result.write_geojson(tmp_path / "out" / "search.geojson").read_text())
    features = features["features"]
    assert [f["properties"]["rank"] for f in features] == [1, 2, 3, 4, 5]
    assert features[0]["geometry"]["coordinates"] == [round(hits[0].lon, 6), round(hits[0].lat, 6)]
    assert features[0]["properties"]["id"] == hits[0].id
    with pytest.raises(InputError, match="prompt is empty"):
        api.search_pairs("  ", setup["test"], model=str(model_dir))


def test_cli_trains_evaluates_searches_and_captions(setup, tmp_path):
    runner = CliRunner()
    cfg = {"pairs": str(setup["train"]), "teacher": str(setup["clip"]), "steps": 2, "batch_size": 16,
           "queue_size": 16, "stats_samples": 16, "device": "cpu"}  # fmt: skip
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    run = tmp_path / "run"
    result = runner.invoke(
        app, ["train", "sat2cap", "--config", str(tmp_path / "cfg.json"), "--out", str(run)]
    )
    assert result.exit_code == 0, result.output
    assert "saved" in result.output and load_checkpoint(run).config["training"]["step"] == 2
    out = tmp_path / "metrics.json"
    args = ["evaluate", "retrieval", "--model", str(run), "--pairs", str(setup["test"]),
            "--gallery", "10", "--out", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["gallery"] == 10 and "CLIP (teacher" in result.output
    result = runner.invoke(app, ["captions", "--model", str(run), "--lon", "9.05", "--lat", "45.04",
                                 "--when", "2021-07-01T21:00", "-k", "2", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [c["rank"] for c in json.loads(result.output)] == [1, 2]
    result = runner.invoke(app, ["search", "a lake", "--model", str(run), "--pairs", str(setup["test"]),
                                 "-k", "3", "--geojson", str(tmp_path / "s.geojson"),
                                 "--sheet", str(tmp_path / "s.png")])  # fmt: skip
    assert result.exit_code == 0, result.output
    features = json.loads((tmp_path / "s.geojson").read_text())["features"]
    assert (tmp_path / "s.png").is_file() and len(features) == 3


def test_cli_user_errors_are_omnimap_errors(setup, tmp_path):
    runner = CliRunner()
    (tmp_path / "bad.json").write_text(json.dumps({"pairs": "x.parquet", "stepz": 1}))
    result = runner.invoke(app, ["train", "sat2cap", "--config", str(tmp_path / "bad.json")])
    assert isinstance(result.exception, InputError) and "stepz" in str(result.exception)
    result = runner.invoke(
        app, ["evaluate", "retrieval", "--model", "m", "--pairs", "p", "--ablation", "oops"]
    )
    assert isinstance(result.exception, InputError) and "NAME=RUN_DIR" in str(result.exception)
    result = runner.invoke(app, ["search", "x", "--pairs", "p", "--bbox", "0,0,1,1"])
    assert isinstance(result.exception, InputError) and "--pairs searches" in str(result.exception)
