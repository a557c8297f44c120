"""Sat2Cap training: exact resume, cached teacher embeddings, DDP equals one process."""

import json

import numpy as np
import pytest
import torch

from omnimap.core.errors import InputError
from omnimap.datasets.crossview import open_pairs
from omnimap.examples.sat2cap import build_data
from omnimap.models.checkpoint import load_checkpoint
from omnimap.teachers.registry import get_teacher
from omnimap.teachers.tiny import make_tiny_clip
from omnimap.train.config import Sat2CapConfig
from omnimap.train.loop import train
from omnimap.train.recipes import run_recipe
from omnimap.train.recipes.sat2cap import Sat2CapRecipe


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("sat2cap-train")
    paths = build_data(root, n_train=64, n_test=8)
    return {
        "table": paths["train"],
        "clip": make_tiny_clip(root / "clip"),
        "data": open_pairs(paths["train"]),
    }


def _cfg(setup, **over) -> Sat2CapConfig:
    base = {"pairs": str(setup["table"]), "teacher": str(setup["clip"]), "steps": 6, "batch_size": 16,
            "queue_size": 32, "lr": 1e-3, "checkpoint_every": 2, "log_every": 1, "stats_samples": 32,
            "device": "cpu", "crop_scale": [0.5, 1.0]}  # fmt: skip
    return Sat2CapConfig.from_dict({**base, **over})


def _train(setup, cfg, run_dir, **kwargs):
    return train(Sat2CapRecipe(cfg, data=setup["data"]), run_dir, progress=False, **kwargs)


def _teacher(setup):
    return get_teacher(str(setup["clip"]), "clip", cached=False)  # the instance training uses


def test_killed_and_resumed_run_matches_an_uninterrupted_one(setup, tmp_path):
    cfg = _cfg(setup)
    straight = _train(setup, cfg, tmp_path / "straight")
    first = _train(setup, cfg, tmp_path / "resumed", stop_after=3)
    assert len(first.losses) == 3 and first.model.config["training"]["step"] == 3
    resumed = _train(setup, cfg, tmp_path / "resumed")
    assert len(straight.losses) == len(resumed.losses) == 6
    np.testing.assert_allclose(resumed.losses, straight.losses, rtol=0, atol=1e-6)
    a = load_checkpoint(tmp_path / "straight").student.state_dict()
    b = load_checkpoint(tmp_path / "resumed").student.state_dict()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6
    # Learning happens: the dynamic encoder and the tower moved, the temperature is learnt.
    assert straight.model.config["temperature"] != pytest.approx(0.07, abs=1e-6)
    saved = json.loads((tmp_path / "straight" / "train_config.json").read_text())
    assert saved["steps"] == 6 and saved["recipe"] == "sat2cap"
    assert [h["step"] for h in straight.history] == list(range(6))


def test_a_run_directory_belongs_to_one_config(setup, tmp_path):
    _train(setup, _cfg(setup, steps=1), tmp_path / "run")
    with pytest.raises(InputError, match="another config.*steps"):
        _train(setup, _cfg(setup, steps=2), tmp_path / "run")


def test_teacher_embeddings_are_stored_once_and_match_the_teacher_on_the_fly(
    setup, tmp_path, monkeypatch
):
    teacher = _teacher(setup)
    stored = setup["data"].teacher_vectors(teacher)
    assert stored.shape == (64, 32)
    assert list((setup["table"].parent / "teacher").glob("*/*.json"))

    def fail(*args, **kwargs):
        raise AssertionError("the teacher ran although its embeddings are stored")

    with monkeypatch.context() as m:
        m.setattr(type(teacher), "embed_images", fail)
        m.setattr(type(teacher), "embed_pixels", fail)
        cached = _train(setup, _cfg(setup, steps=3), tmp_path / "cached")
    live = _train(setup, _cfg(setup, steps=3, teacher_cache=False), tmp_path / "live")
    teacher.to("cpu")
    np.testing.assert_allclose(live.losses, cached.losses, rtol=0, atol=1e-5)


def test_the_cli_needs_the_pairs_and_refuses_bad_options_in_one_line(setup, tmp_path):
    import contextlib
    import io
    import sys

    from omnimap.cli.main import main

    config = tmp_path / "train.json"
    config.write_text(json.dumps({"pairs": "train.parquet", "crop_scale": [0.9, 0.5]}))
    for args, fragment in [
        ((), "needs 'pairs'"),
        (("--config", str(config)), "crop_scale must be"),
    ]:
        err, argv = io.StringIO(), sys.argv
        sys.argv = ["omnimap", "train", "sat2cap", "--out", str(tmp_path / "run"), *args]
        try:
            with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_info:
                main()
        finally:
            sys.argv = argv
        lines = err.getvalue().strip().splitlines()
        assert exit_info.value.code == 2 and len(lines) == 1 and fragment in lines[0], lines


def test_the_no_dynamic_ablation_never_trains_m(setup, tmp_path):
    run = _train(setup, _cfg(setup, steps=2, use_dynamic=False), tmp_path / "no-dyn")
    last = run.model.student.dynamic.net[-1]
    assert float(last.weight.abs().max()) == 0.0 and float(last.bias.abs().max()) == 0.0


def _ddp_worker(rank: int, cfg_json: dict, run_dir: str, init_file: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        from pathlib import Path

        result = run_recipe("sat2cap", cfg_json, Path(run_dir), progress=False)
        if rank == 0:
            with open(out, "w") as fh:
                json.dump(result.losses, fh)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_give_the_losses_of_one_on_the_same_global_batch(setup, tmp_path):
    import torch.multiprocessing as mp

    cfg = _cfg(setup, steps=4, checkpoint_every=4)
    one = _train(setup, cfg, tmp_path / "one")
    out = tmp_path / "losses.json"
    mp.spawn(
        _ddp_worker,
        args=(cfg.to_json(), str(tmp_path / "two"), str(tmp_path / "pg"), str(out)),
        nprocs=2,
    )
    two = json.loads(out.read_text())
    np.testing.assert_allclose(two, one.losses, rtol=0, atol=1e-5)
    # The queue is sized in global batches and updated with the gathered keys on every rank.
    assert load_checkpoint(tmp_path / "two").config["training"]["queue_size"] % cfg.batch_size == 0


def test_shards_are_the_same_samples_read_by_row(setup, tmp_path):
    from omnimap.datasets.pairs.shards import write_shards

    write_shards(setup["table"], tmp_path / "shards", samples_per_shard=20)
    shards, table = open_pairs(tmp_path / "shards"), setup["data"]
    assert len(shards) == len(table) == 64
    np.testing.assert_array_equal(shards.ids, table.ids)
    np.testing.assert_allclose(shards.meta, table.meta, atol=1e-6)
    rows = np.array([63, 0, 21, 20, 7])  # across shards, any order
    np.testing.assert_array_equal(shards.patches(rows), table.patches(rows))
    assert np.array_equal(np.asarray(shards.photos(rows)[2]), np.asarray(table.photos(rows)[2]))
    assert shards.imagery["key"] == table.imagery["key"]
    teacher = _teacher(setup)
    np.testing.assert_allclose(
        shards.teacher_vectors(teacher), table.teacher_vectors(teacher), atol=1e-6
    )
    assert list((tmp_path / "shards" / "teacher").glob("*/*.bin"))  # stored with the shards
    cfg = _cfg(setup, pairs=str(tmp_path / "shards"), steps=1)
    model = train(Sat2CapRecipe(cfg), tmp_path / "run", progress=False).model
    assert model.config["imagery"]["type"] == "geotiff"
    with pytest.raises(InputError, match="hold 32-pixel patches"):
        shards.patches(rows, size=48)
