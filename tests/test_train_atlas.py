"""Training the atlas over the one loop, with the real layers: config errors up front
(in Python and through the CLI), exact resume, DDP equals one process, and a run that
learns and plugs into the map engine and the model card."""

import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from omnimap.core.errors import InputError
from omnimap.models.checkpoint import load_checkpoint
from omnimap.train.config import AtlasConfig
from omnimap.train.loop import train
from omnimap.train.recipes import atlas as atlas_recipe
from omnimap.train.recipes.atlas import AtlasRecipe


@pytest.fixture(scope="module")
def layers():
    from omnimap.datasets.atlas.layers import GroundLayers

    return GroundLayers()  # read once for the module: they take seconds


def _tiny(teacher_dir, **over) -> AtlasConfig:
    """Seconds of training: a few steps over 1,000 samples, the tiny BERT as teacher."""
    base = {"teacher": str(teacher_dir), "samples": 1000, "steps": 6, "batch_size": 64,
            "queue_size": 128, "warmup_steps": 2, "checkpoint_every": 2, "log_every": 1,
            "device": "cpu"}  # fmt: skip
    return AtlasConfig.from_dict({**base, **over})


def test_config_rejects_unknown_keys_and_bad_queue():
    with pytest.raises(InputError, match="unknown training option"):
        AtlasConfig.from_dict({"lr": 1e-3, "stepz": 5})
    with pytest.raises(InputError, match="multiple of the global batch_size"):
        AtlasConfig(batch_size=64, queue_size=100).validate()


@pytest.mark.parametrize(
    "options, fragment",
    [
        ({"stepz": 5}, "unknown training option(s): stepz"),
        ({"steps": "many"}, "'steps' must be an integer"),
        ({"lr": True}, "'lr' must be a number"),
        ({"betas": [0.9]}, "'betas' must be a list of 2 numbers"),
        ({"samples": 2000}, "samples 2000 must be at least queue_size 8192"),
        ({"samples": 100, "queue_size": 0}, "samples 100 must be at least batch_size 512"),
        ({"patch_size": 12}, "patch_size 12 must be divisible"),
        ({"time_dropout": 1.5}, "time_dropout must be within 0..1"),
        ({"device": "tpu"}, "device must be"),
        ({"min_lr": 0.1}, "min_lr must be within 0..lr"),
    ],
)
def test_config_errors_are_one_line_input_errors(options, fragment):
    with pytest.raises(InputError) as info:
        AtlasConfig.from_dict(options)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def _run_cli(*args):
    """The CLI in-process; (exit code, stdout, stderr)."""
    from omnimap.cli.main import main

    out, err, argv = io.StringIO(), io.StringIO(), sys.argv
    sys.argv, code = ["omnimap", *args], 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


def test_the_cli_rejects_bad_configs_in_one_line_before_any_data(tmp_path, monkeypatch):
    def no_data(*args, **kwargs):
        raise AssertionError("data were built for a config that cannot train")

    monkeypatch.setattr(atlas_recipe, "GroundLayers", no_data)
    bad_key, bad_type = tmp_path / "key.json", tmp_path / "type.json"
    bad_key.write_text(json.dumps({"steps": 5, "stepz": 5}))
    bad_type.write_text(json.dumps({"queue_size": "big"}))
    cases = [
        (("--samples", "2000"), "samples 2000 must be at least queue_size 8192"),
        (("--config", str(bad_key)), "unknown training option(s): stepz"),
        (("--config", str(bad_type)), "'queue_size' must be an integer"),
    ]
    for args, fragment in cases:
        code, _, err = _run_cli("train", "atlas", "--out", str(tmp_path / "run"), *args)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1, err
        assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    assert not (tmp_path / "run").exists()


def test_killed_and_resumed_run_matches_an_uninterrupted_one(layers, tiny_teacher_dir, tmp_path):
    cfg = _tiny(tiny_teacher_dir)
    straight = train(AtlasRecipe(cfg, layers), tmp_path / "straight", progress=False)
    first = train(AtlasRecipe(cfg, layers), tmp_path / "resumed", progress=False, stop_after=3)
    assert len(first.losses) == 3 and first.model.config["training"]["step"] == 3
    resumed = train(AtlasRecipe(cfg, layers), tmp_path / "resumed", progress=False)
    assert len(straight.losses) == len(resumed.losses) == 6
    np.testing.assert_allclose(resumed.losses, straight.losses, rtol=0, atol=1e-6)
    a = load_checkpoint(tmp_path / "straight").student.state_dict()
    b = load_checkpoint(tmp_path / "resumed").student.state_dict()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6
    assert resumed.history == straight.history and len(straight.history) == 6
    # Another config on the same run directory is refused, in one line.
    with pytest.raises(InputError, match="another config.*steps"):
        train(AtlasRecipe(_tiny(tiny_teacher_dir, steps=7), layers), tmp_path / "straight")


def test_the_checkpoint_config_holds_what_evaluation_and_the_card_read(
    layers, tiny_teacher_dir, tmp_path
):
    from omnimap.datasets.atlas.sampling import HoldOut
    from omnimap.eval.card import render_card

    config = train(AtlasRecipe(_tiny(tiny_teacher_dir, steps=2), layers), tmp_path / "run",
                   progress=False).model.config  # fmt: skip
    t = config["training"]
    assert t["samples"] == 1000 and t["steps"] == 2 and t["distinct_descriptions"] > 1
    assert t["loss_history"][0]["step"] == 0 and t["prep_seconds"] > 0 and t["threads"] >= 1
    assert HoldOut.from_json(config["holdout"]).blocks
    assert config["teacher"]["name"] == str(tiny_teacher_dir) and config["teacher"]["dim"] == 16
    assert config["imagery"]["patch_size"] == 16
    # Sat2Cap's 12 inputs + the 5 climate values, as the card says
    assert config["dynamic"] == {"inputs": 17, "hidden": 64, "climate": True}
    modes = {"full": {d: {"R@1": 0.1, "R@5": 0.2, "R@10": 0.3, "median_rank": 9}
                      for d in ("overhead_to_ground", "ground_to_overhead")}}  # fmt: skip
    metrics = {"retrieval": {"samples": 10, "modes": modes}, "holdout_blocks": 3, "time": [],
               "land_cover": {"cells": 5, "no_time": {"prompts": {}, "mean_auc": 0.5},
                              "imagery_only": {"prompts": {}, "mean_auc": 0.5}}}  # fmt: skip
    card = render_card(config, metrics)
    assert "1,000 samples" in card and "queue of 128" in card and "2 steps of 64" in card


def _ddp_worker(rank, cfg_json, layers, run_dir, init_file, out):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        result = train(
            AtlasRecipe(AtlasConfig.from_dict(cfg_json), layers), run_dir, progress=False
        )
        if rank == 0:
            with open(out, "w") as fh:
                json.dump(result.losses, fh)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_give_the_losses_of_one(layers, tiny_teacher_dir, tmp_path):
    import torch.multiprocessing as mp

    cfg = _tiny(tiny_teacher_dir, steps=4, checkpoint_every=4)
    one = train(AtlasRecipe(cfg, layers), tmp_path / "one", progress=False)
    out = tmp_path / "losses.json"
    # The layers travel loaded: each process would otherwise spend seconds reading them.
    args = (cfg.to_json(), layers, str(tmp_path / "two"), str(tmp_path / "pg"), str(out))
    mp.spawn(_ddp_worker, args=args, nprocs=2)
    np.testing.assert_allclose(json.loads(out.read_text()), one.losses, rtol=0, atol=1e-5)
    a = load_checkpoint(tmp_path / "one").student.state_dict()
    b = load_checkpoint(tmp_path / "two").student.state_dict()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5


@pytest.mark.slow
def test_tiny_training_run_learns_and_saves_a_loadable_model(layers, tmp_path):
    from omnimap.core.store import ArrayStore
    from omnimap.geo.bbox import BBox
    from omnimap.geo.grid import LatLonGrid
    from omnimap.maps.engine import MapEngine

    cfg = AtlasConfig(
        samples=3000, steps=120, batch_size=128, queue_size=512, restart_period=60, warmup_steps=10
    )
    model = train(AtlasRecipe(cfg, layers), tmp_path / "run", progress=False).model
    history = model.config["training"]["loss_history"]
    first, last = history[0]["loss"], np.mean([h["loss"] for h in history[-2:]])
    assert last < first - 0.3, history  # it learns
    assert model.config["holdout"]["blocks"] and model.config["teacher"]["dim"] == 384
    assert json.loads((tmp_path / "run" / "examples.json").read_text())[0].endswith(".")
    # The saved run plugs into the map engine unchanged.
    engine = MapEngine(model, store=ArrayStore("cells", root=tmp_path))
    scores = engine.score("the open ocean", LatLonGrid.from_bbox(BBox(-40, -10, 20, 30), 1.0))
    assert np.isfinite(scores).all() and scores.std() > 0


def test_samples_without_their_time_learn_the_scene_sentence(layers, tiny_teacher_dir, tmp_path,
                                                              monkeypatch):  # fmt: skip
    from omnimap.train import batches
    from omnimap.train import loop as loop_module

    seen = []
    real = loop_module.queue_infonce

    def spy(s, own, *args):
        seen.append(own.detach().clone())
        return real(s, own, *args)

    monkeypatch.setattr(loop_module, "queue_infonce", spy)
    cfg = _tiny(tiny_teacher_dir, steps=3, time_dropout=0.5)
    recipe = AtlasRecipe(cfg, layers)
    train(recipe, tmp_path / "run", progress=False)
    n = len(recipe.data)
    for step, own in enumerate(seen):
        rows = batches.batch_rows(cfg.seed, step, n, cfg.batch_size)
        dropped = batches.dropouts(cfg.seed, step, len(rows), *recipe.dropout_rates()).time
        assert 0 < dropped.sum() < len(rows)
        ids = recipe.text_index[rows]
        want = torch.where(torch.from_numpy(dropped)[:, None], recipe.scene_vectors[ids],
                           recipe.text_vectors[ids])  # fmt: skip
        torch.testing.assert_close(own, want)
        # The two targets differ wherever the description has a moment sentence.
        assert (recipe.scene_vectors[ids] - recipe.text_vectors[ids]).abs().amax(1).gt(1e-3).all()


def test_a_run_started_from_a_model_keeps_its_overhead_and_grows_its_dynamic_encoder(
    layers, tiny_teacher_dir, tmp_path
):
    base = train(AtlasRecipe(_tiny(tiny_teacher_dir, steps=2, climate_inputs=False), layers),
                 tmp_path / "base", progress=False).model.student  # fmt: skip
    cfg = _tiny(tiny_teacher_dir, steps=4, init_from=str(tmp_path / "base"),
                freeze_overhead=True, dynamic_hidden=96)  # fmt: skip
    recipe = AtlasRecipe(cfg, layers)
    tuned = train(recipe, tmp_path / "tuned", progress=False, stop_after=2).model.student
    before = base.state_dict()
    after = tuned.state_dict()
    for k, v in before.items():
        if k.startswith("overhead."):
            assert torch.equal(after[k], v), k  # frozen: not one bit moved
    assert after["dynamic.net.0.weight"].shape == (96, before["dynamic.net.0.weight"].shape[1] + 5)
    assert not torch.equal(after["dynamic.net.2.bias"], before["dynamic.net.2.bias"])  # it trains
    # Frozen on resume as well, and the resumed run ends where a straight one does.
    resumed = train(AtlasRecipe(cfg, layers), tmp_path / "tuned", progress=False).model.student
    straight = train(AtlasRecipe(cfg, layers), tmp_path / "straight", progress=False).model.student
    for k, v in resumed.state_dict().items():
        torch.testing.assert_close(v, straight.state_dict()[k], rtol=0, atol=1e-6)
        if k.startswith("overhead."):
            assert torch.equal(v, before[k]), k


def test_the_anchor_keeps_the_time_free_map_near_the_starting_model(layers, tiny_teacher_dir, tmp_path):
    from omnimap.geo.timefeat import When, local_times
    from omnimap.models.embedder import Embedder

    base_dir = tmp_path / "base"
    train(AtlasRecipe(_tiny(tiny_teacher_dir, steps=2, climate_inputs=False), layers), base_dir,
          progress=False)  # fmt: skip
    base = Embedder(load_checkpoint(str(base_dir)))
    tuned = {}
    for weight in (0.0, 50.0):
        cfg = _tiny(tiny_teacher_dir, steps=8, init_from=str(base_dir), freeze_overhead=True,
                    time_dropout=0.5, lr=3e-3, anchor_weight=weight)  # fmt: skip
        recipe = AtlasRecipe(cfg, layers)
        tuned[weight] = Embedder(train(recipe, tmp_path / f"w{weight:g}", progress=False).model)
    # The anchors are the starting model's own time-free embeddings of the samples.
    lon, lat = recipe.data.lon[:200].astype(np.float64), recipe.data.lat[:200].astype(np.float64)
    start = base.fused(lon, lat, None, "no_time")
    torch.testing.assert_close(recipe.anchors[:200].float(), torch.from_numpy(start), rtol=0, atol=2e-3)

    def kept(e):  # mean cosine of the time-free map to the start's
        return float((e.fused(lon, lat, None, "no_time") * start).sum(1).mean())

    assert kept(tuned[50.0]) > kept(tuned[0.0]) + 0.03  # here 0.994 against 0.911
    # The time-aware map still moves: the anchor holds only the time-free output.
    local = local_times(When.parse("2024-01-15T03:00"), lon)
    noon = local_times(When.parse("2024-01-15T15:00"), lon)
    moved = tuned[50.0].fused(lon, lat, local, "full") - tuned[50.0].fused(lon, lat, noon, "full")
    assert np.abs(moved).max() > 1e-3


def test_a_clause_loss_pulls_each_output_towards_its_own_clause():
    from omnimap.train.batches import Dropouts

    recipe = AtlasRecipe(AtlasConfig.from_dict({"rain_loss_weight": 2.0, "clause_loss_temperature": 0.1}))
    torch.manual_seed(0)
    rain = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)  # four rain phrases
    codes = torch.tensor([0, 1, 2, 2, 3, -1])  # two phrasings of code 2; the last: untimed
    phrase = torch.tensor([0, 1, 2, 3, 0, 0])
    batch = {"rain_clauses": rain[phrase], "rain_codes": codes}
    keep = Dropouts(False, np.zeros(6, bool), np.zeros(6, bool))
    s = torch.nn.functional.normalize(torch.randn(6, 8), dim=1).requires_grad_()
    loss = recipe._clause_loss("rain", 2.0, s, batch, keep, torch.device("cpu"))
    loss.backward()
    moved = torch.nn.functional.normalize(s - 0.5 * s.grad, dim=1).detach()
    before, after = (s.detach() @ rain.T), (moved @ rain.T)
    for i in range(5):  # closer to its own phrase, against the phrases of other codes
        others = [j for j in range(4) if codes[j] != codes[i]]  # phrase j is row j's
        gain = (after[i, phrase[i]] - after[i, others].mean()) - (before[i, phrase[i]] - before[i, others].mean())
        assert gain > 0, i
    assert s.grad[5].abs().max() == 0  # no rain clause: untouched
    # The same code's other phrasing is not a negative: rows 2 and 3 agree, so with
    # only them and a row of another code the loss is that of two-way choices.
    both = recipe._clause_loss("rain", 2.0, rain[[2, 3, 0]],
                               {"rain_clauses": rain[[2, 3, 0]], "rain_codes": torch.tensor([2, 2, 0])},
                               Dropouts(False, np.zeros(3, bool), np.zeros(3, bool)), torch.device("cpu"))  # fmt: skip
    logits = 10.0 * rain[[2, 3, 0]] @ rain[[2, 3, 0]].T
    want = [torch.log1p(torch.exp(logits[0, 2] - logits[0, 0])), torch.log1p(torch.exp(logits[1, 2] - logits[1, 1])),
            torch.log(1 + torch.exp(logits[2, 0] - logits[2, 2]) + torch.exp(logits[2, 1] - logits[2, 2]))]  # fmt: skip
    torch.testing.assert_close(both, 2.0 * torch.stack(want).mean())
    # Samples whose time is dropped, or a batch without place and time, add nothing.
    timeless = Dropouts(False, np.ones(6, bool), np.zeros(6, bool))
    assert recipe._clause_loss("rain", 2.0, s, batch, timeless, torch.device("cpu")) is None
    assert recipe.extra_loss(s, {}, {**batch, "dropouts": Dropouts(True, keep.time, keep.overhead)},
                             torch.device("cpu")) is None  # fmt: skip


def test_an_atlas_trains_with_the_clause_losses(layers, tiny_teacher_dir, tmp_path):
    from omnimap.datasets.atlas.describe import CLAUSE_CODES

    every = AtlasConfig(rain_loss_weight=1.0, warmth_loss_weight=1.0, season_loss_weight=1.0)
    assert set(every.clause_loss_weights()) == set(CLAUSE_CODES)  # one option per clause kind
    recipe = AtlasRecipe(_tiny(tiny_teacher_dir, rain_loss_weight=1.0, warmth_loss_weight=0.5,
                               season_loss_weight=0.5), layers)  # fmt: skip
    result = train(recipe, tmp_path / "run", progress=False)
    assert set(recipe.clauses) == {"rain", "warmth", "season"}
    for vectors, codes in recipe.clauses.values():
        assert vectors.shape == (len(recipe.data.texts), recipe.teacher.dim)
        timed = codes >= 0
        assert timed.any() and torch.allclose(vectors[timed].norm(dim=1), torch.ones(int(timed.sum())), atol=1e-4)
        assert (vectors[~timed] == 0).all()
    assert np.isfinite(result.history[-1]["loss"])


def test_a_grown_dynamic_encoder_starts_as_the_one_it_grew_from():
    from omnimap.models.dynamic import DynamicEncoder

    torch.manual_seed(0)
    small, big = DynamicEncoder(16, n_inputs=12, hidden=8), DynamicEncoder(16, n_inputs=17, hidden=32)
    big.start_from(small)
    x = torch.randn(50, 17)
    torch.testing.assert_close(big(x), small(x[:, :12]))  # the new inputs and units add nothing yet
    with pytest.raises(ValueError, match="cannot start"):
        DynamicEncoder(16, n_inputs=10, hidden=32).start_from(small)


@pytest.mark.parametrize(
    "options, fragment",
    [({"freeze_overhead": True}, "freeze_overhead needs init_from"),
     ({"dynamic_hidden": 0}, "dynamic_hidden must be at least 1"),
     ({"anchor_weight": 1.0}, "anchor_weight needs init_from"),
     ({"anchor_weight": -1.0, "init_from": "atlas"}, "anchor_weight must be at least 0"),
     ({"rain_loss_weight": -1.0}, "season_loss_weight must be at least 0"),
     ({"warmth_loss_weight": -1.0}, "season_loss_weight must be at least 0"),
     ({"season_loss_weight": -1.0}, "season_loss_weight must be at least 0"),
     ({"clause_loss_temperature": 0.0}, "clause_loss_temperature must be above 0")],
)  # fmt: skip
def test_fine_tuning_options_are_checked(options, fragment):
    with pytest.raises(InputError, match=fragment):
        AtlasConfig.from_dict(options)


def test_starting_from_a_model_of_another_teacher_is_refused(layers, tiny_teacher_dir, tmp_path):
    v1 = Path(__file__).parent / "data" / "atlas-v1"  # trained against MiniLM
    cfg = _tiny(tiny_teacher_dir, init_from=str(v1))
    with pytest.raises(InputError, match="another teacher"):
        train(AtlasRecipe(cfg, layers), tmp_path / "run", progress=False)
