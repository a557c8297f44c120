"""The atlas weights shipped before the architecture change still load, and today's
scoring path gives the maps the old code gave (recorded by
tests/data/record_atlas_v1_maps.py at commit d6191d2: 20 prompts, 3 times, 2 grids)."""

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from omnimap.geo.grid import LatLonGrid
from omnimap.geo.timefeat import When
from omnimap.maps.engine import MapEngine

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def recorded():
    import importlib.util

    spec = importlib.util.spec_from_file_location("record", DATA / "record_atlas_v1_maps.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, np.load(DATA / "atlas-v1-maps.npz")


def test_atlas_v1_maps_unchanged(recorded):
    module, before = recorded
    engine = MapEngine(str(DATA / "atlas-v1"), use_cache=False)
    for name, (box, res) in module.GRIDS.items():
        grid = LatLonGrid.from_bbox(box, res)
        for t, when in enumerate(module.TIMES):
            now = engine.score(module.PROMPTS, grid, When.parse(when) if when else None)
            old = before[f"{name}_t{t}"]
            assert now.shape == old.shape == (len(module.PROMPTS), *grid.shape)
            # Cells are scored from float16 embeddings now (maps/scoring.py): ~1e-4.
            np.testing.assert_allclose(now, old, atol=5e-4, rtol=0)
            for a, b in zip(now, old, strict=True):
                assert spearmanr(a.ravel(), b.ravel()).statistic > 0.9999
