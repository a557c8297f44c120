"""How well the atlas's descriptions themselves can follow rain and heat.

Scores the teacher targets of the descriptions (not the student) of held-out land
cells against the ERA5 normals, for the shipped rain phrases (a ladder, first trained
in candidates 9 and 10) and for the phrases before it (candidate 6 and earlier;
docs/atlas-climate-candidate.md). A student learns these targets, so their
Spearman with the month's precipitation is what the words allow; the student can
go above it (it is trained to tell descriptions apart, not to copy the targets), but
a ladder the teacher reads out of order caps it. The rain queries here are not the
evaluation's (``omnimap.eval.prompts``); the ladder's phrases were chosen on these.

    python docs/atlas_rain_ladder.py [--rain-weight W] [--warmth-weight W]

The weights apply to the phrases before the ladder (candidate 6 had 2 and 1); the
shipped phrases are scored at the shipped weights.

Prints each rain phrase's mean cosine to the queries, then the Spearman table.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import spearmanr

from omnimap.datasets.atlas import describe as D
from omnimap.datasets.atlas import facts as F
from omnimap.datasets.atlas.layers import GroundLayers
from omnimap.datasets.atlas.sampling import HoldOut
from omnimap.eval.atlas import CLIMATE_RESOLUTION, _holdout_land_cells
from omnimap.eval.prompts import HEAT_PROMPT, RAIN_PROMPT
from omnimap.geo.timefeat import When, local_times
from omnimap.models.checkpoint import load_checkpoint
from omnimap.resources import climate
from omnimap.teachers.registry import teacher_from_config

RAIN_QUERIES = ("drenched by storms", "puddles after a cloudburst", "a soggy, drizzly spell",
                "umbrellas up in a squall", "the wettest time of year")  # fmt: skip
TIMES = ("2024-01-15T15:00", "2024-07-15T15:00")
# The phrases before the ladder (candidate 6 and earlier), which the teacher reads out
# of the rain's order; the ladder, now describe.WETNESS, was chosen on the queries above
# and is free of sun and light words (they are said at every hour; candidate 8's
# "mostly sunny days" made midnight look like day).
BEFORE = {
    F.ARID: ["bone-dry air", "parched, dusty ground", "a dry, cloudless sky"],
    F.LITTLE_RAIN: ["dry weather", "mostly dry days", "dry, clear skies"],
    F.USUAL_RAIN: ["occasional showers", "a shower now and then", "some rainy spells"],
    F.RAINY: ["frequent rain", "rainy weather", "regular showers"],
    F.DELUGE: ["heavy rain", "pouring rain most days", "soaking wet weather"],
    F.DRY_SEASON: ["in the dry season", "during the long dry season", "in the parched season"],
    F.MONSOON: ["in the monsoon rains", "during the monsoon", "in the rainy monsoon season"],
}


def _use(wetness: dict, rain_weight: float, warmth_weight: float) -> None:
    D.WETNESS.clear()
    D.WETNESS.update(wetness)
    D.RAIN_PHRASES = frozenset(p for ps in wetness.values() for p in ps) | frozenset(D.SNOWFALL)
    D.RAIN_WEIGHT, D.WARMTH_WEIGHT = rain_weight, warmth_weight


def ceiling(teacher, layers, lon, lat, queries: np.ndarray) -> list[list[float]]:
    """Per time: Spearman of the heat query with temperature, then of each rain query
    with precipitation, for the variant-averaged description targets."""
    normals = climate.climate_normals()
    cache: dict[str, np.ndarray] = {}
    rows = []
    for when in TIMES:
        local = local_times(When.parse(when), lon)
        facts = F.compute_facts(layers, lon, lat, local.month, local.day_of_year, local.hour)
        targets = []
        for variant in range(3):
            d = D.describe_with_parts(facts, np.full(len(lon), variant))
            new = [p for p in d.parts if p not in cache]
            if new:
                cache.update(zip(new, teacher.embed("text", new), strict=True))
            parts = np.stack([cache[p] for p in d.parts])
            targets.append(D.target_vectors(parts, d.part_index, d.part_weights)[d.index])
        scores = np.mean(targets, axis=0) @ queries.T
        month = climate.month_of(np.datetime64(when))
        temp = normals.temperature_c(lon, lat, month)
        rain = normals.precipitation_mm_day(lon, lat, month)
        rows.append([float(spearmanr(scores[:, 0], temp).statistic)]
                    + [float(spearmanr(scores[:, j], rain).statistic) for j in range(1, len(queries))])  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rain-weight", type=float, default=2.0)
    ap.add_argument("--warmth-weight", type=float, default=1.0)
    args = ap.parse_args()
    loaded = load_checkpoint("atlas")
    teacher = teacher_from_config(loaded.config["teacher"])
    layers = GroundLayers()
    lon, lat = _holdout_land_cells(HoldOut.from_json(loaded.config["holdout"]), layers, CLIMATE_RESOLUTION)
    rain_q = teacher.embed("text", list(RAIN_QUERIES))
    shipped = {k: list(v) for k, v in D.WETNESS.items()}
    weights = (D.RAIN_WEIGHT, D.WARMTH_WEIGHT)
    print(f"mean cosine of each rain phrase to {len(RAIN_QUERIES)} rain queries (not the evaluation's)")
    for name, ladder in (("shipped", shipped), ("before", BEFORE)):
        for code, phrases in ladder.items():
            cos = teacher.embed("text", phrases) @ rain_q.T
            print(f"  {name:8s} wetness {code}: {cos.mean():.3f}  " + " | ".join(phrases))
    queries = teacher.embed("text", [HEAT_PROMPT, RAIN_PROMPT, *RAIN_QUERIES])
    print(f"\n{len(lon)} held-out land cells; Spearman of the description targets: heat with the"
          " month's temperature, rain with its precipitation")  # fmt: skip
    print("| phrases | rain / warmth weight | time | heat | rain (evaluation prompt) | rain (mean of the other queries) |")
    print("|---|---|---|---:|---:|---:|")
    for name, ladder, rw, ww in (("shipped", shipped, *weights),
                                 ("before", BEFORE, args.rain_weight, args.warmth_weight)):  # fmt: skip
        _use(ladder, rw, ww)
        for when, r in zip(TIMES, ceiling(teacher, layers, lon, lat, queries), strict=True):
            print(f"| {name} | {rw:g} / {ww:g} | {when} | {r[0]:.2f} | {r[1]:.2f} | {np.mean(r[2:]):.2f} |")
    _use(shipped, *weights)


if __name__ == "__main__":
    main()
