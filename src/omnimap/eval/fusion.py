"""``omnimap evaluate fusion``: do observations sharpen the map? The 12 zero-shot
land-cover prompts (eval.prompts) on the held-out blocks, ROC-AUC against MODIS, with
1% and 10% of the held-out cells observed (an atlas description of the place at a
random time, through the teacher) vs none. AUCs count only unobserved cells, so an
observation never grades itself."""

from __future__ import annotations

import numpy as np

from omnimap.core.fileio import write_json_atomic
from omnimap.datasets.atlas.describe import describe
from omnimap.datasets.atlas.facts import compute_facts
from omnimap.datasets.atlas.layers import GroundLayers
from omnimap.datasets.atlas.sampling import HoldOut, sample_times
from omnimap.datasets.gallery import Gallery
from omnimap.eval.atlas import roc_auc
from omnimap.eval.prompts import LAND_COVER_PROMPTS
from omnimap.geo.grid import LatLonGrid
from omnimap.geo.timefeat import LocalTime
from omnimap.maps.engine import MapEngine
from omnimap.maps.fusion import fuse, like_cells, predicted_at
from omnimap.maps.scoring import cosine_scores

FUSION_SEED = 20_241_110
RESOLUTION = 0.2


def _heldout_cells(holdout: HoldOut, layers: GroundLayers, resolution: float):
    lons, lats = [], []
    for box in holdout.bboxes():
        lon, lat = LatLonGrid.from_bbox(box, resolution).centers()
        lons.append(lon.ravel())
        lats.append(lat.ravel())
    lon, lat = np.concatenate(lons).astype(np.float64), np.concatenate(lats).astype(np.float64)
    return lon, lat, layers.land_cover_counts(lon, lat, half=1).argmax(axis=1)


def _observations(engine: MapEngine, layers: GroundLayers, lon, lat, rng) -> Gallery:
    """Atlas descriptions at the given places (random local times), as an in-memory gallery."""
    time = sample_times(len(lon), rng)
    facts = compute_facts(layers, lon, lat, time["month"], time["day_of_year"], time["hour"])
    texts, index = describe(facts, rng.integers(0, 3, len(lon)))
    vectors = engine.teacher.embed("text", texts, progress=True)[index]
    t = LocalTime(time["year"], time["month"], time["day"], time["hour"], time["day_of_year"])
    return Gallery(path=None, lon=lon, lat=lat, time=t, sources=[texts[i] for i in index],
                   embeddings=vectors.astype(np.float16), teacher=engine.teacher.to_config(),
                   modality="text", index=None, index_kind="none")  # fmt: skip


def evaluate_fusion(model: str = "atlas", fractions=(0.01, 0.1), resolution: float = RESOLUTION,
                    out=None) -> dict:  # fmt: skip
    engine = MapEngine(model)
    holdout = HoldOut.from_json(engine.model.config["holdout"])
    layers = GroundLayers()
    lon, lat, truth = _heldout_cells(holdout, layers, resolution)
    cells = engine.embedder.fused(lon, lat, None, "no_time").astype(np.float16)
    prompts = list(LAND_COVER_PROMPTS)
    q = engine.teacher.embed("text", prompts)
    rng = np.random.default_rng(FUSION_SEED)
    order = rng.permutation(len(lon))
    runs = {"none": (cells, np.zeros(len(lon), bool))}
    for f in fractions:
        observed = np.zeros(len(lon), bool)
        observed[order[: int(round(f * len(lon)))]] = True
        g = _observations(engine, layers, lon[observed], lat[observed], rng)
        blended, _ = fuse(cells, lon, lat, g, predicted_at(engine, g, None), like=like_cells(engine, g, None))
        runs[f"{100 * f:g}%"] = (blended, observed)
    result = {"cells": len(lon), "resolution_deg": resolution, "runs": {}}
    for name, (emb, observed) in runs.items():
        scores = cosine_scores(emb, q)
        per = {}
        for i, p in enumerate(prompts):
            keep = ~observed
            per[p] = roc_auc(scores[i][keep], np.isin(truth[keep], LAND_COVER_PROMPTS[p]))
        finite = [v for v in per.values() if np.isfinite(v)]
        result["runs"][name] = {"observed_cells": int(observed.sum()), "mean_auc": float(np.mean(finite)),
                                "prompts": per}  # fmt: skip
    base = result["runs"]["none"]["prompts"]
    for name, run in result["runs"].items():
        if name != "none":
            deltas = [run["prompts"][p] - base[p] for p in prompts if np.isfinite(base[p])]
            run["mean_gain"] = float(np.mean(deltas))
            run["worst_prompt_change"] = float(np.min(deltas))
    if out is not None:
        write_json_atomic(out, result)
    return result


def format_fusion(r: dict) -> str:
    names = list(r["runs"])
    lines = [f"Land-cover ROC-AUC on {r['cells']} held-out cells at {r['resolution_deg']} deg "
             "(unobserved cells only)", f"{'prompt':36s}" + "".join(f"{n:>10s}" for n in names)]  # fmt: skip
    for p in r["runs"]["none"]["prompts"]:
        lines.append(f"{p:36s}" + "".join(f"{r['runs'][n]['prompts'][p]:10.3f}" for n in names))
    lines.append(f"{'mean':36s}" + "".join(f"{r['runs'][n]['mean_auc']:10.3f}" for n in names))
    return "\n".join(lines)
