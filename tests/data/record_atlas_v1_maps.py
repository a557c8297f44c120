"""How tests/data/atlas-v1-maps.npz was recorded (run once, at commit d6191d2, before
the architecture change): the shipped atlas weights of that commit (copied to
tests/data/atlas-v1) mapped 20 prompts at 3 times on two grids with the code of that
commit. tests/test_regression_atlas_v1.py checks that today's code gives the same maps
from the same weights.
"""

import numpy as np

from omnimap.geo.bbox import BBox
from omnimap.geo.grid import LatLonGrid
from omnimap.geo.timefeat import When
from omnimap.maps.engine import MapEngine

PROMPTS = [
    "snow-covered mountains", "a busy harbour at night", "sand dunes", "rainforest canopy",
    "frozen glaciers", "skyscrapers and traffic", "wheat and corn farms", "waves offshore",
    "savanna with acacias", "pine and spruce taiga", "swamp and marshland", "prairie",
    "a dark night sky with stars", "bright daylight and sunshine", "deep winter snow",
    "a hot summer day", "vineyards on sunny hills", "a quiet village", "rice paddies",
    "the open ocean far from land",
]  # fmt: skip
TIMES = [None, "2024-01-15T09:00", "2024-07-01T23:00+02:00"]
GRIDS = {"world4": (BBox.world(), 4.0), "alps025": (BBox(5, 43, 17, 49), 0.25)}


def main(out: str = "tests/data/atlas-v1-maps.npz") -> None:
    engine = MapEngine("tests/data/atlas-v1", use_cache=False)
    arrays = {}
    for name, (box, res) in GRIDS.items():
        grid = LatLonGrid.from_bbox(box, res)
        for t, when in enumerate(TIMES):
            moment = When.parse(when) if when else None
            arrays[f"{name}_t{t}"] = engine.score(PROMPTS, grid, moment)
    np.savez_compressed(out, **arrays)


if __name__ == "__main__":
    main()
