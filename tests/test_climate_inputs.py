"""Climate values as dynamic inputs: known places, time-free zeros, the dropped columns."""

import numpy as np
import pytest

from omnimap.geo.climatefeat import N_CLIMATE, climate_features, model_inputs, time_columns
from omnimap.geo.timefeat import N_FEATURES, LocalTime, metadata_features
from omnimap.models.dynamic import dynamic_config, uses_climate

SAHARA, YAKUTSK, LHASA = (5.0, 25.0), (129.73, 62.03), (91.1, 29.65)


def _local(month, day, doy, n):
    full = lambda v: np.full(n, v)  # noqa: E731
    return LocalTime(full(2024), full(month), full(day), full(15.0), full(doy))


def test_values_at_known_places():
    lon = np.array([p[0] for p in (SAHARA, YAKUTSK, LHASA)])
    lat = np.array([p[1] for p in (SAHARA, YAKUTSK, LHASA)])
    jan, jul = climate_features(lon, lat, _local(1, 15, 15, 3)), climate_features(lon, lat, _local(7, 15, 197, 3))
    assert jan.shape == (3, N_CLIMATE) and jan.dtype == np.float32
    assert jan[0, 0] * 15 > 20 and jan[1, 0] * 15 < -5  # annual means, degC
    assert jan[2, 2] > 3.0 and jan[0, 2] < 1.0  # Lhasa is above 3 km
    assert jan[1, 3] * 10 < -20 and jul[1, 3] * 10 > 15  # Yakutsk's huge annual swing
    np.testing.assert_array_equal(jan[:, :3], jul[:, :3])  # the static part has no time


def test_time_free_inputs_zero_the_time_values():
    lon, lat = np.array([SAHARA[0]]), np.array([SAHARA[1]])
    free = model_inputs(lon, lat, None, True)
    assert free.shape == (1, N_FEATURES + N_CLIMATE)
    assert (free[0, time_columns(free.shape[1])] == 0).all()
    np.testing.assert_array_equal(model_inputs(lon, lat, None, False), metadata_features(lon, lat, None))
    # The columns the trainer zeroes are exactly the ones time-free inputs leave at zero.
    timed = model_inputs(lon, lat, _local(7, 15, 197, 1), True)
    changed = np.flatnonzero(timed[0] != free[0]).tolist()
    assert set(changed) <= set(time_columns(timed.shape[1])) and len(changed) >= 8


def test_config_says_which_inputs():
    assert dynamic_config() == {"inputs": 12, "hidden": 64}
    spec = dynamic_config(climate=True)
    assert spec["inputs"] == 17 and uses_climate({"dynamic": spec})
    assert not uses_climate({"dynamic": {"inputs": 12, "hidden": 64}}) and not uses_climate({})
    assert time_columns(12) == list(range(4, 12))
    assert time_columns(17) == [*range(4, 12), 15, 16]


@pytest.mark.parametrize("climate", [False, True])
def test_embedder_feeds_the_model_its_own_inputs(climate, tiny_model_dir, tmp_path):
    import json
    import shutil

    from omnimap.models.checkpoint import load_checkpoint, save_checkpoint
    from omnimap.models.embedder import Embedder
    from omnimap.models.student import build_student

    config = json.loads((tiny_model_dir / "config.json").read_text())
    config["dynamic"] = {**dynamic_config(hidden=8, climate=climate)}
    student = build_student(config)
    path = tmp_path / "m"
    shutil.rmtree(path, ignore_errors=True)
    save_checkpoint(student, {k: v for k, v in config.items() if k not in ("weights_digest", "format")}, path)
    e = Embedder(load_checkpoint(str(path)))
    lon, lat = np.array([SAHARA[0], YAKUTSK[0]]), np.array([SAHARA[1], YAKUTSK[1]])
    out = e.fused(lon, lat, _local(1, 15, 15, 2), "no_imagery")
    assert out.shape == (2, 16) and np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert e.metadata(lon, lat, None).shape[1] == (17 if climate else 12)
