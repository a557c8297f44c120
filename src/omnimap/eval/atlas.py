"""``omnimap evaluate atlas``: the model on blocks of the globe it never saw.

1. Retrieval (Sat2Cap protocol): held-out samples, student embedding vs teacher
   embedding of the sample's description, both directions, one row per input mode.
   Ranks are 1-based; an identical description counts as a match.
2. Zero-shot land cover: time-free maps of prompts worded unlike any training
   description, scored by ROC-AUC against MODIS class masks on the held-out blocks.
3. Time: maps that change only in ``when`` move the right way for night, daylight,
   winter and summer prompts.
4. Climate: on held-out land cells at 0.5 deg, Spearman of a heat prompt's map with
   that month's ERA5 temperature (January, July), of a rain prompt's map with the
   precipitation, and of (July map - January map) with (July - January temperature).
5. Tropics: world maps of season prompts at 0.5 deg; the mean absolute change between
   adjacent rows across 23.44 N/S over the median row-to-row change elsewhere (a hard
   line at the tropics gives a large ratio).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from scipy.stats import rankdata, spearmanr

from omnimap.core.fileio import write_json_atomic
from omnimap.datasets.atlas.dataset import build_set
from omnimap.datasets.atlas.layers import GroundLayers
from omnimap.datasets.atlas.sampling import HoldOut
from omnimap.eval.classes import igbp_agreement, transient_day_night
from omnimap.eval.prompts import (
    CLIMATE_TIMES,
    HEAT_PROMPT,
    LAND_COVER_PROMPTS,
    PROMPT_MAX_ABS_LAT,
    RAIN_PROMPT,
    SEASON_PROMPTS,
    SEASON_TIMES,
    TIME_PROMPTS,
)  # fmt: skip
from omnimap.eval.retrieval import both_directions
from omnimap.geo.bbox import BBox
from omnimap.geo.grid import LatLonGrid
from omnimap.geo.timefeat import LocalTime, When, local_times
from omnimap.maps.classes import BUILTIN_SETS
from omnimap.maps.scoring import cosine_scores
from omnimap.models.checkpoint import load_checkpoint
from omnimap.models.embedder import MODES, Embedder
from omnimap.resources import climate
from omnimap.teachers.registry import teacher_from_config

log = logging.getLogger(__name__)
EVAL_SEED = 20_240_601  # differs from any training seed
MAP_RESOLUTION = 0.1


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U), ties counted half."""
    positive = np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(scores)
    return float((r[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def prompt_truth(prompt: str, truth: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positive, counted) masks for a land-cover prompt (see atlas.prompts)."""
    positive = np.isin(truth, LAND_COVER_PROMPTS[prompt])
    counted = np.ones(len(truth), bool)
    band = PROMPT_MAX_ABS_LAT.get(prompt)
    if band is not None:
        counted = ~positive | (np.abs(lat) <= band)
        positive &= counted
    return positive, counted


def retrieval_rows(embedder: Embedder, data, teacher_vectors: np.ndarray) -> dict[str, dict]:
    overhead = embedder.overhead(data.lon.astype(np.float64), data.lat.astype(np.float64))
    local = data.local_time()
    rows = {}
    for mode in MODES:
        student = embedder.fused(data.lon, data.lat, local, mode, overhead=overhead)
        both = both_directions(student, teacher_vectors, labels=data.text_index)
        rows[mode] = {"overhead_to_ground": both["forward"], "ground_to_overhead": both["backward"]}
    return rows


def _heldout_cells(holdout: HoldOut, layers: GroundLayers):
    """Cell centres of every held-out block at MAP_RESOLUTION, and their truth class."""
    lons, lats = [], []
    for box in holdout.bboxes():
        lon, lat = LatLonGrid.from_bbox(box, MAP_RESOLUTION).centers()
        lons.append(lon)
        lats.append(lat)
    lon, lat = np.concatenate(lons), np.concatenate(lats)
    truth = layers.land_cover_counts(lon, lat, half=1).argmax(axis=1)  # majority of 3x3 MODIS px
    return lon, lat, truth


def _scores(
    embedder: Embedder, lon, lat, queries: np.ndarray, when: When | None, mode: str, overhead
) -> np.ndarray:
    local = local_times(when, lon) if when is not None else None
    out = np.empty((len(queries), len(lon)), dtype=np.float32)
    step = 100_000
    for s in range(0, len(lon), step):
        part = _slice(local, s, step) if local is not None else None
        emb = embedder.fused(
            lon[s : s + step], lat[s : s + step], part, mode, overhead[s : s + step]
        )
        out[:, s : s + step] = cosine_scores(emb, queries)
    return out


def _slice(local: LocalTime, start: int, step: int) -> LocalTime:
    return LocalTime(
        *(
            getattr(local, f)[start : start + step]
            for f in ("year", "month", "day", "hour", "day_of_year")
        )
    )


def land_cover_auc(embedder: Embedder, teacher, lon, lat, truth, overhead) -> dict:
    prompts = list(LAND_COVER_PROMPTS)
    queries = teacher.embed("text", prompts)
    out = {}
    for mode in ("no_time", "imagery_only"):
        scores = _scores(embedder, lon, lat, queries, None, mode, overhead)
        per_prompt = {}
        for i, prompt in enumerate(prompts):
            positive = np.isin(truth, LAND_COVER_PROMPTS[prompt])
            per_prompt[prompt] = {
                "auc": roc_auc(scores[i], positive),
                "positives": int(positive.sum()),
            }
        aucs = [v["auc"] for v in per_prompt.values() if np.isfinite(v["auc"])]
        out[mode] = {"mean_auc": float(np.mean(aucs)), "prompts": per_prompt}
    out["cells"] = len(lon)
    return out


def time_response(embedder: Embedder, teacher, lon, lat, truth, overhead) -> list[dict]:
    land = truth != 0
    results = []
    for prompt, when_a, when_b, hemisphere, sign in TIME_PROMPTS:
        if hemisphere == "all":
            cells = np.ones(len(lon), bool)
        else:
            cells = land & ((lat >= 23.44) if hemisphere == "north" else (lat <= -23.44))
        q = teacher.embed("text", [prompt])
        means = []
        for when in (when_a, when_b):
            s = _scores(
                embedder, lon[cells], lat[cells], q, When.parse(when), "full", overhead[cells]
            )
            means.append(float(s.mean()))
        delta = means[1] - means[0]
        results.append({
            "prompt": prompt, "cells": hemisphere, "n_cells": int(cells.sum()), "when_a": when_a, "when_b": when_b,
            "mean_a": means[0], "mean_b": means[1], "delta": delta, "expected_sign": sign, "ok": bool(np.sign(delta) == sign),
        })  # fmt: skip
    return results


CLIMATE_RESOLUTION = 0.5
TROPIC_LAT = 23.44


def _holdout_land_cells(holdout: HoldOut, layers: GroundLayers, res: float):
    """Centres of held-out land cells at ``res`` deg (MODIS majority not water)."""
    lons, lats = [], []
    for box in holdout.bboxes():
        lon, lat = LatLonGrid.from_bbox(box, res).centers()
        lons.append(lon)
        lats.append(lat)
    lon, lat = np.concatenate(lons), np.concatenate(lats)
    land = layers.land_cover_counts(lon, lat, half=2).argmax(axis=1) != 0
    return lon[land], lat[land]


def _spearman(a, b) -> float:
    return float(spearmanr(a, b).statistic)


def climate_response(embedder: Embedder, teacher, holdout: HoldOut, layers: GroundLayers) -> dict:
    """Spearman of heat/rain prompt maps with the ERA5 normals on held-out land."""
    lon, lat = _holdout_land_cells(holdout, layers, CLIMATE_RESOLUTION)
    overhead = embedder.overhead(lon, lat)
    queries = teacher.embed("text", [HEAT_PROMPT, RAIN_PROMPT])
    normals = climate.climate_normals()
    out: dict = {"cells": len(lon), "resolution": CLIMATE_RESOLUTION, "heat_prompt": HEAT_PROMPT,
                 "rain_prompt": RAIN_PROMPT}  # fmt: skip
    heat = {}
    temps = {}
    for name, when in CLIMATE_TIMES.items():
        month = climate.month_of(np.datetime64(when))
        scores = _scores(embedder, lon, lat, queries, When.parse(when), "full", overhead)
        temps[name] = normals.temperature_c(lon, lat, month)
        precip = normals.precipitation_mm_day(lon, lat, month)
        heat[name] = scores[0]
        out[name] = {
            "when": when,
            "heat_vs_temperature": _spearman(scores[0], temps[name]),
            "rain_vs_precipitation": _spearman(scores[1], precip),
        }
    out["july_minus_january"] = _spearman(
        heat["july"] - heat["january"], temps["july"] - temps["january"]
    )
    return out


def class_sets(embedder: Embedder, teacher, holdout: HoldOut, layers: GroundLayers, lon, lat,
               truth, overhead) -> dict:  # fmt: skip
    """The IGBP class-set map against MODIS, and the transient set at noon and midnight."""
    igbp = teacher.embed("text", list(BUILTIN_SETS["igbp"]))
    scores = _scores(embedder, lon, lat, igbp, None, "no_time", overhead)
    out = {"igbp": igbp_agreement(scores, lon, lat, truth, holdout, layers, MAP_RESOLUTION)}
    land_lon, land_lat = _holdout_land_cells(holdout, layers, CLIMATE_RESOLUTION)
    land_overhead = embedder.overhead(land_lon, land_lat)
    transient = teacher.embed("text", list(BUILTIN_SETS["transient"]))
    out["transient"] = transient_day_night(
        lambda when: _scores(embedder, land_lon, land_lat, transient, When.parse(when), "full",
                             land_overhead), land_lon, land_lat,
        temperature=float(embedder.model.config["temperature"]))  # fmt: skip
    return out


def tropics_steps(embedder: Embedder, teacher) -> list[dict]:
    """Row-to-row change of world season maps at 0.5 deg across the tropics vs elsewhere."""
    grid = LatLonGrid.from_bbox(BBox(-180.0, -90.0, 180.0, 90.0), CLIMATE_RESOLUTION)
    lon, lat = grid.centers()
    overhead = embedder.overhead(lon, lat)
    queries = teacher.embed("text", list(SEASON_PROMPTS))
    rows_lat = lat.reshape(grid.shape)[:, 0]
    edges = (rows_lat[:-1] + rows_lat[1:]) / 2  # latitude between row r and r + 1
    across = np.zeros(len(edges), bool)
    for tropic in (TROPIC_LAT, -TROPIC_LAT):  # the row pairs on either side of the tropic
        across[np.argsort(np.abs(edges - tropic))[:2]] = True
    polar = np.abs(edges) > 80.0  # ice-edge and pole rows are not "other latitudes"
    results = []
    for when in SEASON_TIMES:
        scores = _scores(embedder, lon, lat, queries, When.parse(when), "full", overhead)
        for prompt, s in zip(SEASON_PROMPTS, scores, strict=True):
            rows = s.reshape(grid.shape)
            # Per cell (imagery changes from row to row dominate), and of the row means
            # (which a line along the tropic moves as a whole: the stricter test).
            cell_step = np.abs(np.diff(rows, axis=0)).mean(axis=1)
            mean_step = np.abs(np.diff(rows.mean(axis=1)))
            ratios = {name: float(step[across].mean() / np.median(step[~across & ~polar]))
                      for name, step in (("ratio", cell_step), ("row_mean_ratio", mean_step))}  # fmt: skip
            results.append({"prompt": prompt, "when": when, **ratios,
                            "ok": max(ratios.values()) <= 2.0})  # fmt: skip
    return results


def climate_and_tropics(model: str, holdout: HoldOut, layers: GroundLayers) -> dict:
    """The climate and tropics measures of another model (e.g. the previous weights)
    on this model's hold-out, for comparison in the card."""
    loaded = load_checkpoint(model)
    embedder, teacher = Embedder(loaded), teacher_from_config(loaded.config["teacher"])
    return {
        "model": loaded.name if Path(model).name == model else Path(model).name,
        "weights_digest": loaded.config["weights_digest"],
        "climate": climate_response(embedder, teacher, holdout, layers),
        "tropics": tropics_steps(embedder, teacher),
    }


def evaluate_atlas(
    model: str = "atlas", samples: int = 10_000, out: str | Path | None = None,
    baseline: str | None = None,
) -> dict:  # fmt: skip
    """All measures of the module docstring; ``baseline``: another model whose climate
    and tropics measures are reported beside (on this model's hold-out)."""
    loaded = load_checkpoint(model)
    holdout = HoldOut.from_json(loaded.config["holdout"])
    layers = GroundLayers()
    embedder = Embedder(loaded)
    teacher = teacher_from_config(loaded.config["teacher"])

    phrasings = int(loaded.config.get("training", {}).get("phrasings", 3))
    data = build_set(layers, samples, seed=EVAL_SEED, accept=holdout.contains, variants=phrasings)
    teacher_vectors = data.target_vectors(teacher, progress=True)[data.text_index]
    metrics = {
        "model": loaded.name,
        "weights_digest": loaded.config["weights_digest"],
        "holdout_blocks": len(holdout.blocks),
        "retrieval": {
            "samples": len(data),
            "distinct_descriptions": len(data.texts),
            "modes": retrieval_rows(embedder, data, teacher_vectors),
        },
    }
    lon, lat, truth = _heldout_cells(holdout, layers)
    overhead = embedder.overhead(lon, lat)
    metrics["land_cover"] = land_cover_auc(embedder, teacher, lon, lat, truth, overhead)
    metrics["time"] = time_response(embedder, teacher, lon, lat, truth, overhead)
    metrics["classes"] = class_sets(embedder, teacher, holdout, layers, lon, lat, truth, overhead)
    del overhead
    metrics["climate"] = climate_response(embedder, teacher, holdout, layers)
    metrics["tropics"] = tropics_steps(embedder, teacher)
    if baseline is not None:
        metrics["baseline"] = climate_and_tropics(baseline, holdout, layers)
    if out is not None:
        write_json_atomic(out, metrics)
    return metrics


def format_report(m: dict) -> str:
    lines = [f"model {m['model']} on {m['holdout_blocks']} held-out blocks", ""]
    r = m["retrieval"]
    lines.append(
        f"Retrieval, {r['samples']} held-out samples ({r['distinct_descriptions']} distinct descriptions)"
    )
    lines.append(f"{'inputs':16s} {'overhead->ground':>34s}   {'ground->overhead':>34s}")
    lines.append(
        f"{'':16s} {'R@1':>7s} {'R@5':>7s} {'R@10':>7s} {'med':>8s}   {'R@1':>7s} {'R@5':>7s} {'R@10':>7s} {'med':>8s}"
    )
    for mode, row in r["modes"].items():
        cells = []
        for direction in ("overhead_to_ground", "ground_to_overhead"):
            d = row[direction]
            cells.append(
                f"{d['R@1']:7.3f} {d['R@5']:7.3f} {d['R@10']:7.3f} {d['median_rank']:8.1f}"
            )
        lines.append(f"{mode:16s} {cells[0]}   {cells[1]}")
    lc = m["land_cover"]
    lines += [
        "",
        f"Zero-shot land cover, ROC-AUC on {lc['cells']} held-out cells at {MAP_RESOLUTION} deg (time-free map)",
    ]
    for prompt, v in lc["no_time"]["prompts"].items():
        img = lc["imagery_only"]["prompts"][prompt]["auc"]
        lines.append(
            f"  {prompt:34s} {v['auc']:.3f}  (imagery only {img:.3f}, {v['positives']} positive cells)"
        )
    lines.append(
        f"  {'mean':34s} {lc['no_time']['mean_auc']:.3f}  (imagery only {lc['imagery_only']['mean_auc']:.3f})"
    )
    lines += ["", "Time response (mean score over the cells; only --when changes)"]
    for t in m["time"]:
        mark = "ok" if t["ok"] else "WRONG"
        lines.append(
            f"  {t['prompt']:30s} {t['cells']:5s} {t['when_a']} -> {t['when_b']}: {t['mean_a']:+.4f} -> {t['mean_b']:+.4f}  {mark}"
        )
    c = m.get("climate")
    if c:
        lines += ["", f"Climate, Spearman on {c['cells']} held-out land cells at {c['resolution']} deg"]
        for name in CLIMATE_TIMES:
            lines.append(
                f"  {name:8s} {c['heat_prompt']!r} vs temperature {c[name]['heat_vs_temperature']:+.3f}"
                f"   {c['rain_prompt']!r} vs precipitation {c[name]['rain_vs_precipitation']:+.3f}"
            )
        lines.append(f"  July - January heat map vs temperature change {c['july_minus_january']:+.3f}")
    cl = m.get("classes")
    if cl:
        ig = cl["igbp"]
        lines += ["", f"IGBP class-set map vs MODIS ({len(ig['groups'])} groups, {ig['cells']} held-out cells)"]
        for name, row in ig["methods"].items():
            lines.append(f"  {name:42s} accuracy {row['accuracy']:.3f}  macro-F1 {row['macro_f1']:.3f}")
        tr = cl["transient"]
        lines.append(
            f"  transient set, {tr['cells']} land cells: night+dark top-2 at midnight {tr['night_share']:.3f} "
            f"(top-1 {tr['night_top1_share']:.3f}); daylight+bright at noon {tr['day_share']:.3f} "
            f"(top-1 {tr['day_top1_share']:.3f})"
        )
        if "night_rises_share" in tr:
            lines.append(
                f"  transient set: night and dark both more likely at midnight than at noon on "
                f"{tr['night_rises_share']:.3f}; daylight and bright both more likely at noon on "
                f"{tr['day_rises_share']:.3f}"
            )
    for t in m.get("tropics", []):
        lines.append(
            f"  tropics row-step ratio {t['prompt']!r} {t['when']}: cells {t['ratio']:.2f}, "
            f"row means {t['row_mean_ratio']:.2f}"
        )
    return "\n".join(lines)
