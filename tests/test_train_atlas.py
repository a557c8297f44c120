"""Training the atlas end to end on a tiny sample, with the real layers and teacher."""

import json

import numpy as np
import pytest

from omnimap.errors import InputError
from omnimap.train.atlas import AtlasTrainConfig, train_atlas


def test_config_rejects_unknown_keys_and_bad_queue():
    with pytest.raises(InputError, match="unknown training option"):
        AtlasTrainConfig.from_dict({"lr": 1e-3, "stepz": 5})
    with pytest.raises(InputError, match="multiple of batch_size"):
        AtlasTrainConfig(batch_size=64, queue_size=100).validate()


@pytest.mark.slow
def test_tiny_training_run_learns_and_saves_a_loadable_model(tmp_path):
    from omnimap.geo.bbox import BBox
    from omnimap.geo.grid import LatLonGrid
    from omnimap.maps.cache import ArrayCache
    from omnimap.maps.engine import MapEngine

    cfg = AtlasTrainConfig(samples=3000, steps=120, batch_size=128, queue_size=512, restart_period=60, warmup_steps=10)
    model = train_atlas(cfg, tmp_path / "run", progress=False)
    history = model.config["training"]["loss_history"]
    first, last = history[0]["loss"], np.mean([h["loss"] for h in history[-2:]])
    assert last < first - 0.3, history  # it learns
    assert model.config["holdout"]["blocks"] and model.config["teacher"]["dim"] == 384
    assert json.loads((tmp_path / "run" / "examples.json").read_text())[0].endswith(".")
    # The saved run plugs into the map engine unchanged.
    engine = MapEngine(model, cache=ArrayCache(tmp_path / "cells"))
    scores = engine.score("the open ocean", LatLonGrid.from_bbox(BBox(-40, -10, 20, 30), 1.0))
    assert np.isfinite(scores).all() and scores.std() > 0
