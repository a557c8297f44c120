"""``omnimap evaluate soundscape``: the soundscape model on places and weeks it never saw.

The truth for species is BirdNET V2.4's occurrence ("meta") model: a model, not
observations, so every number here is against a **pseudo-truth**. Samples are places in
the spatial hold-out blocks at the held-out weeks (both recorded in the model config).

1. Species, seen: mean ROC-AUC of species maps (``species`` queries) against meta-model
   presence (p >= 0.1) over 200 species that trained; beside it a proximity-aware AUC
   (the LD-SDM idea: a false positive next to the true range costs less than one far
   away; here each absence is weighted by 1 - exp(-d / 500 km), d its distance to the
   nearest presence).
2. Species, zero-shot: the species held out of every training target, queried by the
   text of their names alone (``taxon`` queries), beside a genus-average baseline (the
   mean map of the seen species of the same genus).
3. Seasons: for 20 migratory species of the north (range at week 30, mostly absent at
   week 6 by the meta model), does the map's mean over the range rise from week 6 to
   week 30?
4. Retrieval both ways (1-based ranks, R@10, R@100, median rank) between the student
   and the biophony block, and the caption block (an identical caption counts as a
   match), with time and without (the ablation).
5. Text queries worded unlike any caption, by ROC-AUC against the facts they name.
"""

from __future__ import annotations

import logging

import numpy as np

from omnimap.datasets.atlas import facts as F
from omnimap.datasets.atlas.layers import OCEAN, GroundLayers
from omnimap.datasets.atlas.sampling import HoldOut
from omnimap.datasets.soundscape import (
    FOREST,
    PRESENT,
    WETLAND,
    biophony_mix,
    build_soundscape_set,
    sample_places_and_times,
    week_dates,
)
from omnimap.eval.atlas import roc_auc
from omnimap.eval.retrieval import both_directions
from omnimap.geo.bbox import BBox
from omnimap.geo.grid import LatLonGrid
from omnimap.geo.timefeat import LocalTime
from omnimap.maps.scoring import cosine_scores
from omnimap.models.checkpoint import load_checkpoint
from omnimap.models.embedder import Embedder
from omnimap.teachers.birdnet import BirdNetMeta
from omnimap.teachers.registry import get_teacher
from omnimap.teachers.soundscape import SoundscapeTeacher

log = logging.getLogger(__name__)

EVAL_SEED = 20_241_111  # differs from any training seed
PSEUDO_TRUTH = "BirdNET V2.4 meta model (pseudo-truth: a model, not observations)"
N_SEEN, N_MIGRANTS = 200, 20
MIN_CLASS = 20  # presences and absences a species needs to be scored
PROXIMITY_KM = 500.0
WINTER_WEEK, SUMMER_WEEK = 6, 30  # both held out of training
SEASON_GRID_DEG = 2.0
EARTH_KM = 6371.0

# Text queries worded unlike any training caption (a test checks), by the fact they name.
SOUND_QUERIES: dict[str, tuple[str, ...]] = {
    "coast": ("the roar of breaking waves", "breakers crashing against rocky cliffs"),
    "city": ("honking cars in heavy rush-hour jams", "a noisy downtown full of buses"),
    "wetland": ("croaking toads in a swamp", "bullfrogs beside reeds and ponds"),
    "forest": ("rustling leaves under tall trees", "a thrush warbling in shady groves"),
}


def fact_truth(facts) -> dict[str, np.ndarray]:
    land = facts.surface == F.SURF_LAND
    return {
        "coast": facts.coast == F.COASTAL,
        "city": land & (facts.settlement >= F.CITY),
        "wetland": (land & ((facts.land_cover == WETLAND) | (facts.second_cover == WETLAND)))
        | (facts.surface == F.SURF_LAKE),
        "forest": land & np.isin(facts.land_cover, FOREST),
    }


def distances_km(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """(N, N) great-circle distances."""
    lo, la = np.radians(lon.astype(np.float64)), np.radians(lat.astype(np.float64))
    xyz = np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=1)
    return EARTH_KM * np.arccos(np.clip(xyz @ xyz.T, -1.0, 1.0))


def proximity_auc(scores: np.ndarray, positive: np.ndarray, dist: np.ndarray,
                  scale_km: float = PROXIMITY_KM) -> float:  # fmt: skip
    """ROC-AUC with each absence weighted by 1 - exp(-d / scale_km), d its distance to
    the nearest presence (ties count half)."""
    positive = np.asarray(positive, bool)
    pos, neg = scores[positive], scores[~positive]
    if not len(pos) or not len(neg):
        return float("nan")
    d = dist[np.ix_(~positive, positive)].min(axis=1)
    w = 1.0 - np.exp(-d / scale_km)
    if w.sum() <= 0:
        return float("nan")
    p = np.sort(pos)
    above = len(p) - np.searchsorted(p, neg, side="right")
    ties = np.searchsorted(p, neg, side="right") - np.searchsorted(p, neg, side="left")
    return float(np.sum(w * (above + 0.5 * ties)) / (len(p) * w.sum()))


def _local(points: dict) -> LocalTime:
    month, day, doy = week_dates(points["week"], points["year"])
    return LocalTime(points["year"], month, day, points["hour"].astype(np.float64), doy)


def _species_aucs(scores: np.ndarray, present: np.ndarray, dist: np.ndarray) -> dict:
    auc = [roc_auc(s, p) for s, p in zip(scores, present, strict=True)]
    prox = [proximity_auc(s, p, dist) for s, p in zip(scores, present, strict=True)]
    return {"species": len(auc), "mean_auc": float(np.nanmean(auc)) if auc else float("nan"),
            "mean_proximity_auc": float(np.nanmean(prox)) if prox else float("nan")}  # fmt: skip


def evaluate_soundscape(model: str = "soundscape", samples: int = 2_000, seed: int = EVAL_SEED,
                        layers: GroundLayers | None = None, meta: BirdNetMeta | None = None) -> dict:  # fmt: skip
    """All five tables (see the module docstring) as one JSON-ready dict."""
    loaded = load_checkpoint(model)
    cfg = loaded.config
    teacher: SoundscapeTeacher = get_teacher(cfg["teacher"]["name"], "soundscape", cached=False)
    embedder = Embedder(loaded)
    layers = layers if layers is not None else GroundLayers()
    meta = meta if meta is not None else BirdNetMeta()
    holdout = HoldOut.from_json(cfg["holdout"])
    labels = teacher.labels
    is_species = np.array([labels[i].is_species for i in range(len(labels))])
    held = np.zeros(len(labels), bool)
    held[labels.indices(cfg.get("holdout_species", []))] = True
    rng = np.random.default_rng(seed)

    points = sample_places_and_times(layers, samples, rng, accept=holdout.contains,
                                     weeks=np.asarray(cfg["holdout_weeks"]))  # fmt: skip
    lon, lat = points["lon"].astype(np.float64), points["lat"].astype(np.float64)
    local = _local(points)
    o = embedder.overhead(lon, lat)
    student = {
        mode: embedder.fused(lon, lat, local, mode, overhead=o) for mode in ("full", "no_time")
    }
    probs = meta.occurrence(lon, lat, points["week"])
    present = probs >= PRESENT
    counts = present.sum(axis=0)
    scorable = is_species & (counts >= MIN_CLASS) & (len(lon) - counts >= MIN_CLASS)
    dist = distances_km(lon, lat)
    out: dict = {"pseudo_truth": PSEUDO_TRUTH, "samples": int(len(lon)),
                 "weeks": list(cfg["holdout_weeks"]), "holdout_blocks": len(holdout.blocks)}  # fmt: skip

    # 1. seen species
    seen = np.flatnonzero(scorable & ~held)
    seen = np.sort(rng.choice(seen, size=min(N_SEEN, len(seen)), replace=False))
    seen_scores = cosine_scores(student["full"], teacher.embed("species", seen.tolist()))
    out["species_seen"] = _species_aucs(seen_scores, present[:, seen].T, dist)
    no_time = cosine_scores(student["no_time"], teacher.embed("species", seen.tolist()))
    out["species_seen"]["mean_auc_no_time"] = _species_aucs(no_time, present[:, seen].T, dist)[
        "mean_auc"
    ]

    # 2. zero-shot species, with the genus-average baseline where a seen congener exists
    zero = np.flatnonzero(scorable & held)
    zs_scores = cosine_scores(
        student["full"], teacher.compose(len(zero), taxon=teacher.taxon_matrix[zero])
    )
    out["species_zero_shot"] = _species_aucs(zs_scores, present[:, zero].T, dist)
    genus_of = np.array([labels[i].genus for i in range(len(labels))])
    with_mates, genus_rows = [], []
    for j, c in enumerate(zero):
        mates = np.flatnonzero((genus_of == genus_of[c]) & is_species & ~held)
        if len(mates):
            with_mates.append(j)
            genus_rows.append(
                cosine_scores(student["full"], teacher.embed("species", mates.tolist())).mean(0)
            )
    if with_mates:
        sub = zero[with_mates]
        out["species_zero_shot"]["with_seen_congener"] = {
            "zero_shot": _species_aucs(zs_scores[with_mates], present[:, sub].T, dist),
            "genus_average": _species_aucs(np.stack(genus_rows), present[:, sub].T, dist),
        }

    # 3. seasons
    out["seasons"] = _seasons(embedder, teacher, meta, layers, is_species & ~held)

    # 4. retrieval
    keep = is_species & ~held
    bio, _, rich = biophony_mix(meta, lon, lat, points["week"], teacher.species_matrix,
                                teacher.taxon_matrix, keep)  # fmt: skip
    data = build_soundscape_set(layers, points, rich, 3, np.random.default_rng(seed + 1))
    captions = teacher.compose(
        len(lon), caption=teacher.text_vectors(data.texts)[data.caption_index]
    )
    gallery = {"biophony": teacher.compose(len(lon), biophony=bio), "captions": captions}
    retrieval = {}
    for name, vectors in gallery.items():
        lab = data.caption_index if name == "captions" else None
        for mode, s in student.items():
            both = both_directions(s, vectors, ks=(10, 100), labels=lab)
            retrieval[f"{name}/{mode}"] = {"overhead_to_sound": both["forward"],
                                           "sound_to_overhead": both["backward"]}  # fmt: skip
    out["retrieval"] = retrieval
    out["distinct_captions"] = len(data.texts)

    # 5. text queries against facts
    truth = fact_truth(data.facts)
    text = {}
    for fact, queries in SOUND_QUERIES.items():
        scores = cosine_scores(student["full"], teacher.embed("text", list(queries)))
        for q, s in zip(queries, scores, strict=True):
            text[q] = {
                "fact": fact,
                "auc": roc_auc(s, truth[fact]),
                "positives": int(truth[fact].sum()),
            }
    out["text_queries"] = text
    out["text_queries_mean_auc"] = float(np.nanmean([v["auc"] for v in text.values()]))
    return out


def _seasons(embedder: Embedder, teacher: SoundscapeTeacher, meta: BirdNetMeta,
             layers: GroundLayers, candidates: np.ndarray) -> dict:  # fmt: skip
    """Migrants of the north: range = land cells above 20N with p >= 0.1 at week 30;
    the 20 whose meta-model mean over it rises most from week 6 (at least 5x)."""
    lon, lat = LatLonGrid.from_bbox(BBox(-180, 20, 180, 80), SEASON_GRID_DEG).centers()
    land = layers.surface_at(lon, lat) != OCEAN
    lon, lat = lon[land], lat[land]
    summer = meta.occurrence(lon, lat, SUMMER_WEEK)
    winter = meta.occurrence(lon, lat, WINTER_WEEK)
    rng_mask = summer >= PRESENT
    size = rng_mask.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        s_mean = np.where(size > 0, (summer * rng_mask).sum(0) / size, 0)
        w_mean = np.where(size > 0, (winter * rng_mask).sum(0) / size, 0)
    ok = candidates & (size >= 15) & (s_mean >= 5 * w_mean)
    chosen = np.flatnonzero(ok)[np.argsort(-(s_mean - w_mean)[ok])][:N_MIGRANTS]
    q = teacher.embed("species", chosen.tolist())
    rows, right = [], 0
    o = embedder.overhead(lon, lat)
    means = {}
    for week in (WINTER_WEEK, SUMMER_WEEK):
        pts = {"week": np.full(len(lon), week), "year": np.full(len(lon), 2024),
               "hour": np.full(len(lon), 12.0)}  # fmt: skip
        means[week] = cosine_scores(embedder.fused(lon, lat, _local(pts), "full", overhead=o), q)
    for k, c in enumerate(chosen):
        m = rng_mask[:, c]
        a, b = float(means[WINTER_WEEK][k, m].mean()), float(means[SUMMER_WEEK][k, m].mean())
        right += b > a
        rows.append({"species": teacher.labels[int(c)].scientific, "range_cells": int(m.sum()),
                     "meta_winter": float(w_mean[c]), "meta_summer": float(s_mean[c]),
                     "map_winter": a, "map_summer": b, "right": bool(b > a)})  # fmt: skip
    return {"right": int(right), "of": len(chosen), "weeks": [WINTER_WEEK, SUMMER_WEEK],
            "species": rows}  # fmt: skip


def format_report(m: dict) -> str:
    s, z = m["species_seen"], m["species_zero_shot"]
    lines = [f"truth: {m['pseudo_truth']}; {m['samples']} held-out samples, weeks {m['weeks']}",
             f"seen species ({s['species']}): AUC {s['mean_auc']:.3f} (no time {s['mean_auc_no_time']:.3f}), "
             f"proximity-aware {s['mean_proximity_auc']:.3f}",
             f"zero-shot species from text ({z['species']}): AUC {z['mean_auc']:.3f}, "
             f"proximity-aware {z['mean_proximity_auc']:.3f}"]  # fmt: skip
    if "with_seen_congener" in z:
        w = z["with_seen_congener"]
        lines.append(f"  with a seen congener ({w['zero_shot']['species']}): zero-shot "
                     f"{w['zero_shot']['mean_auc']:.3f} vs genus average {w['genus_average']['mean_auc']:.3f}")  # fmt: skip
    se = m["seasons"]
    lines.append(
        f"seasons: {se['right']}/{se['of']} migrants rise from week {se['weeks'][0]} to {se['weeks'][1]}"
    )
    lines.append("retrieval (R@10 / R@100 / median rank, overhead->sound | sound->overhead):")
    for name, r in m["retrieval"].items():
        f, b = r["overhead_to_sound"], r["sound_to_overhead"]
        lines.append(f"  {name:20s} {f['R@10']:.3f} / {f['R@100']:.3f} / {f['median_rank']:.0f} | "
                     f"{b['R@10']:.3f} / {b['R@100']:.3f} / {b['median_rank']:.0f}")  # fmt: skip
    lines.append(f"text queries (mean AUC {m['text_queries_mean_auc']:.3f}):")
    for q, v in m["text_queries"].items():
        lines.append(f"  {v['auc']:.3f}  {q!r} vs {v['fact']} ({v['positives']} positives)")
    return "\n".join(lines)


def render_card(config: dict, metrics: dict) -> str:
    """The soundscape model's card: what it is, its licence, its numbers."""
    t = config.get("training", {})
    return "\n".join([
        "# soundscape (built-in)",
        "",
        "Predicts, for any place, week and hour, a vector in the soundscape space "
        "(BirdNET V2.4 biophony 1024-d | MiniLM taxon text 384-d | MiniLM soundscape caption "
        "384-d), so species, sounds and words about sounds map through one cosine.",
        "",
        f"- Licence: **{config.get('licence', 'CC BY-NC-SA 4.0')}**. Trained on BirdNET's models: "
        "non-commercial use only; maps made with it share that licence.",
        f"- Trained with `omnimap train soundscape`: {t.get('samples')} samples, {t.get('steps')} steps, "
        f"batch {t.get('batch_size')}, {t.get('train_seconds', 0):.0f} s on a CPU; "
        f"{t.get('distinct_captions')} distinct captions.",
        f"- Held out: {len(config.get('holdout', {}).get('blocks', []))} blocks of 10 deg, weeks "
        f"{config.get('holdout_weeks')}, {len(config.get('holdout_species', []))} species.",
        f"- Truth for species: {PSEUDO_TRUTH}.",
        "",
        "## Metrics (`omnimap evaluate soundscape --card`)",
        "",
        "```",
        format_report(metrics),
        "```",
        "",
        "Limits: the biophony is BirdNET's occurrence model, not recordings; captions are "
        "composed from coarse facts, not heard; the overhead image is a 16-pixel Blue Marble patch.",
        "",
    ])  # fmt: skip
