"""The offline Sat2Cap example runs end to end and its student learns."""

import json

import numpy as np
import pytest
import rasterio

from omnimap.models.checkpoint import load_checkpoint


@pytest.mark.slow
def test_example_builds_trains_evaluates_and_maps(tmp_path):
    from omnimap.examples.sat2cap import run

    result = run(tmp_path, steps=40)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["gallery"] == 128
    rows = {r["name"]: r for r in metrics["rows"]}
    assert set(rows) == {"sat2cap-example", "sat2cap-example, no metadata at test time",
                         "CLIP (teacher on the overhead image)"}  # fmt: skip
    for row in rows.values():
        for direction in ("overhead_to_ground", "ground_to_overhead"):
            m = row[direction]
            assert 0 <= m["R@1"] <= m["R@5"] <= m["R@10"] <= 1 and 1 <= m["median_rank"] <= 128
    # A few steps already beat chance (R@10 = 10/128) by far, overhead -> ground.
    assert rows["sat2cap-example"]["overhead_to_ground"]["R@10"] > 2 * 10 / 128
    losses = result["losses"]
    assert len(losses) == 40 and np.mean(losses[-5:]) < losses[0] - 0.8
    # The trained run is a normal model: loadable, and mapped by the map engine.
    model = load_checkpoint(tmp_path / "run")
    assert (
        model.config["overhead"]["type"] == "clip_vision"
        and model.config["imagery"]["type"] == "geotiff"
    )
    with rasterio.open(result["map"]["tif"]) as ds:
        scores = ds.read(1)
    assert np.isfinite(scores).all() and scores.std() > 0
    assert json.loads(result["map"]["geojson"].read_text())["features"]
    assert result["search"]["png"].stat().st_size > 1000
    captions = json.loads(result["captions"].read_text())["captions"]
    assert set(captions) == {"2021-07-01T12:00", "2021-07-01T00:00"} and all(
        len(c) == 3 for c in captions.values()
    )
