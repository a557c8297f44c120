"""Class-set maps on the atlas hold-out.

1. IGBP: the most likely of the 17 IGBP classes (time-free map) against MODIS on the
   held-out cells, both merged into readable groups; overall accuracy and macro-F1
   beside two baselines that use no model: the most common group of the training
   area, and the class of the nearest training-area cell.
2. Transient attributes at noon and midnight: on held-out land cells where the sun
   is up at noon and down at midnight, how often "night" and "dark" are the two most
   likely attributes at midnight, and "daylight" and "bright" at noon (the issue's
   test); and, as a reading of the time alone, how often both of a pair are more
   likely at their own hour than at the other (the 40 attributes are not exclusive:
   "midday" and "summer" are as true of a June noon as "daylight").
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import log_softmax

from omnimap.datasets.atlas.layers import GroundLayers
from omnimap.datasets.atlas.sampling import HoldOut
from omnimap.geo import solar
from omnimap.geo.bbox import BBox
from omnimap.geo.grid import LatLonGrid
from omnimap.maps.classes import BUILTIN_SETS

# IGBP class -> group (readable, ~8 groups).
GROUPS = ("water", "forest", "shrubland", "savanna and grassland", "wetland", "cropland",
          "urban", "snow and ice", "barren")  # fmt: skip
IGBP_GROUP = np.array([0, 1, 1, 1, 1, 1, 2, 2, 3, 3, 3, 4, 5, 6, 5, 7, 8])
REFERENCE_RESOLUTION = 0.25  # training-area cells for the nearest-cell baseline
TRANSIENT_TIMES = ("2024-06-15T00:00", "2024-06-15T12:00")  # midnight, noon (local solar)


def accuracy_and_macro_f1(pred: np.ndarray, truth: np.ndarray, n: int) -> dict:
    """Overall accuracy and the mean F1 over the groups present in the truth."""
    f1 = []
    for g in range(n):
        t, p = truth == g, pred == g
        if not t.any():
            continue
        tp = float((t & p).sum())
        precision = tp / max(float(p.sum()), 1.0)
        recall = tp / float(t.sum())
        f1.append(0.0 if tp == 0 else 2 * precision * recall / (precision + recall))
    return {"accuracy": float((pred == truth).mean()), "macro_f1": float(np.mean(f1))}


def _unit_xyz(lon, lat) -> np.ndarray:
    lon, lat = np.radians(lon), np.radians(lat)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)


def training_reference(holdout: HoldOut, layers: GroundLayers):
    """(lon, lat, IGBP class) of training-area cells at REFERENCE_RESOLUTION."""
    grid = LatLonGrid.from_bbox(BBox(-180.0, -90.0, 180.0, 90.0), REFERENCE_RESOLUTION)
    lon, lat = grid.centers()
    keep = ~holdout.near(lon, lat)
    lon, lat = lon[keep], lat[keep]
    return lon, lat, layers.land_cover_counts(lon, lat, half=1).argmax(axis=1)


def igbp_agreement(scores: np.ndarray, lon, lat, truth, holdout: HoldOut, layers: GroundLayers,
                   resolution: float) -> dict:  # fmt: skip
    """``scores``: (17, N) time-free maps of the IGBP class set on held-out cells."""
    truth_g = IGBP_GROUP[truth]
    model_g = IGBP_GROUP[np.argmax(scores, axis=0)]
    ref_lon, ref_lat, ref_class = training_reference(holdout, layers)
    ref_g = IGBP_GROUP[ref_class]
    majority = int(np.bincount(ref_g, minlength=len(GROUPS)).argmax())
    _, nearest = cKDTree(_unit_xyz(ref_lon, ref_lat)).query(_unit_xyz(lon, lat))
    n = len(GROUPS)
    return {
        "cells": len(lon),
        "resolution": resolution,
        "groups": list(GROUPS),
        "methods": {
            "class-set map (most likely IGBP class)": accuracy_and_macro_f1(model_g, truth_g, n),
            f"majority group ({GROUPS[majority]})": accuracy_and_macro_f1(
                np.full_like(truth_g, majority), truth_g, n
            ),
            "nearest training cell": accuracy_and_macro_f1(ref_g[nearest], truth_g, n),
        },
    }


def transient_day_night(score_at, lon, lat, temperature: float = 1.0) -> dict:
    """``score_at(when) -> (40, N)`` transient-set cosine maps at held-out land cells;
    ``temperature``: the model's, which turns them into probabilities."""
    names = list(BUILTIN_SETS["transient"])
    doy = 167  # 15 June
    sun_midnight = solar.elevation_at_solar_time(lat, doy, 0.0)
    sun_noon = solar.elevation_at_solar_time(lat, doy, 12.0)
    cells = (sun_midnight < -6.0) & (sun_noon > 10.0)  # a real night and a real day
    out = {"cells": int(cells.sum()), "midnight": TRANSIENT_TIMES[0], "noon": TRANSIENT_TIMES[1]}
    hours = {"night": (TRANSIENT_TIMES[0], ("night", "dark")),
             "day": (TRANSIENT_TIMES[1], ("daylight", "bright"))}  # fmt: skip
    logp = {}
    for key, (when, pair) in hours.items():
        scores = score_at(when)[:, cells]
        top2 = np.argsort(-scores, axis=0)[:2]
        wanted = {names.index(p) for p in pair}
        both = np.array([set(col) == wanted for col in top2.T.tolist()])
        first = np.isin(top2[0], list(wanted))
        out[f"{key}_share"] = float(both.mean()) if len(both) else float("nan")
        out[f"{key}_top1_share"] = float(first.mean()) if len(first) else float("nan")
        # P(class | place, hour) as the class maps give it (softmax at the model's temperature).
        logp[key] = log_softmax(scores / temperature, axis=0)
    for key, other in (("night", "day"), ("day", "night")):
        pair = [names.index(p) for p in hours[key][1]]
        rise = (logp[key][pair] > logp[other][pair]).all(axis=0)
        out[f"{key}_rises_share"] = float(rise.mean()) if rise.size else float("nan")
    return out
