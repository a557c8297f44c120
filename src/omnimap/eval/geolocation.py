"""``omnimap evaluate geolocation``: where and when, on the atlas's spatial hold-out.

Queries are held-out atlas descriptions (places inside the held-out blocks; the truth is
the sample's coordinates and local solar time). The knn/geoclip gallery holds atlas
observations from outside the blocks and their buffer, so no query's place is in it.

1. Where: % within 1/25/200/750/2,500 km and the median error of the top hypothesis,
   per method, time-free and with the query's time given, beside two baselines drawn the
   same way (a uniform point on land; a point drawn from the population of places).
   The field temperature is fitted (NLL of the true cell) on separate held-out samples.
2. When: at the true place, the posterior over 24 hours x 12 months; hour within +-2 h
   and month within +-1 (circular) vs chance; verification ROC-AUC of the true time vs
   the time shifted by 6 h and by 6 months.
"""

from __future__ import annotations

import logging
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from scipy.special import logsumexp

from omnimap.core.fileio import write_json_atomic
from omnimap.datasets.atlas.dataset import AtlasSet, build_set
from omnimap.datasets.atlas.layers import OCEAN, GroundLayers
from omnimap.datasets.atlas.sampling import HoldOut
from omnimap.datasets.gallery import Gallery, atlas_observations, build_from_texts, open_gallery
from omnimap.eval.atlas import roc_auc
from omnimap.geo.bbox import BBox
from omnimap.geo.grid import LatLonGrid
from omnimap.geo.sphere import cell_area_weights, haversine_km
from omnimap.geo.timefeat import LocalTime, When, local_times
from omnimap.maps.cells import train_cell_head
from omnimap.maps.engine import MapEngine
from omnimap.maps.locate import (
    geoclip_head_for,
    knn_hypotheses,
    knn_points,
    write_calibration,
)  # fmt: skip
from omnimap.maps.scoring import cosine_scores
from omnimap.maps.when import time_scores
from omnimap.models.geoclip import GeoClip

log = logging.getLogger(__name__)
THRESHOLDS_KM = (1, 25, 200, 750, 2500)
GEO_EVAL_SEED = 20_241_107  # differs from training and the atlas evaluation
CALIBRATION_SEED = 20_241_108
GALLERY_SEED = 20_241_109
TEMPERATURES = np.geomspace(0.004, 0.128, 11)  # factor 1.41 steps
# GeoCLIP (NeurIPS 2023), Im2GPS3k, photos: a different task, shown for the layout only.
GEOCLIP_IM2GPS3K = {"1km": 14.1, "25km": 34.5, "200km": 50.7, "750km": 69.7, "2500km": 83.8}
BATCH = 256
HOUR_BIN = 6.0  # time-given field: one world of fused cells per month x 6-hour slot


def accuracy(err_km: np.ndarray) -> dict:
    err = np.asarray(err_km, np.float64)
    row = {f"{t}km": float(100 * np.mean(err <= t)) for t in THRESHOLDS_KM}
    row["median_km"] = float(np.median(err))
    row["n"] = int(len(err))
    return row


def _world(resolution: float) -> LatLonGrid:
    return LatLonGrid.from_bbox(BBox.world(), resolution)


def _true_cells(grid: LatLonGrid, lon, lat) -> np.ndarray:
    col = np.clip(((np.asarray(lon) + 180) / grid.resolution).astype(int), 0, grid.ncols - 1)
    row = np.clip(((90 - np.asarray(lat)) / grid.resolution).astype(int), 0, grid.nrows - 1)
    return row * grid.ncols + col


def _time_groups(local: LocalTime, hour_bin: float = 2.0):
    """Query groups sharing a month and a ``hour_bin``-hour slot: (When at the slot's middle, members)."""
    slot = np.floor(local.hour / hour_bin).astype(int)
    key = local.month.astype(int) * 100 + slot
    for k in np.unique(key):
        month, s = divmod(int(k), 100)
        hour = (s + 0.5) * hour_bin
        yield (
            When(datetime(2020, month, 15, int(hour), int(round((hour % 1) * 60)))),
            np.flatnonzero(key == k),
        )


class _FieldScorer:
    """The student's world cells, time-free or at a local solar time (overhead part read once)."""

    def __init__(self, engine: MapEngine, grid: LatLonGrid):
        self.engine, self.grid = engine, grid
        self.lon, self.lat = (a.ravel() for a in grid.centers())
        _, _, _, o = next(iter(engine.pieces(grid))) if grid.size <= 262_144 else (None,) * 4
        self.overhead = o if o is not None else engine.embedder.overhead(self.lon, self.lat)

    def cells(self, when: When | None) -> np.ndarray:
        if when is None:
            return self.engine.cell_embeddings(self.grid, None)
        local = local_times(when, self.lon)
        return self.engine.embedder.fused(
            self.lon, self.lat, local, "full", overhead=self.overhead
        ).astype(np.float16)


def _fit_temperature(scorer: _FieldScorer, q, truth, local: LocalTime | None) -> tuple[float, list]:
    """The temperature of least NLL of the true cell, and the mean NLL per temperature."""
    nll = np.zeros(len(TEMPERATURES))
    groups = [(None, np.arange(len(q)))] if local is None else list(_time_groups(local, 6.0))
    logarea = torch.from_numpy(np.log(cell_area_weights(scorer.lat)).astype(np.float32))
    for when, idx in groups:
        cells = scorer.cells(when)
        for s in range(0, len(idx), BATCH):
            part = idx[s : s + BATCH]
            scores = torch.from_numpy(cosine_scores(cells, q[part]))
            rows, true_cells = torch.arange(len(part)), torch.from_numpy(truth[part])
            for i, t in enumerate(TEMPERATURES):  # NLL of the true cell, softmax(s / T) x area
                logits = scores / float(t) + logarea
                nll[i] += float((torch.logsumexp(logits, dim=1) - logits[rows, true_cells]).sum())
    log.info(
        "field NLL by temperature: %s",
        dict(zip(TEMPERATURES.round(4).tolist(), nll.round(1).tolist(), strict=True)),
    )
    curve = [[float(t), float(v / len(q))] for t, v in zip(TEMPERATURES, nll, strict=True)]
    return float(TEMPERATURES[int(np.argmin(nll))]), curve


def _field_predictions(
    scorer: _FieldScorer, q, local: LocalTime | None, temperature: float
) -> np.ndarray:
    best = np.empty(len(q), np.int64)
    groups = [(None, np.arange(len(q)))] if local is None else list(_time_groups(local, HOUR_BIN))
    logarea = np.log(np.maximum(np.cos(np.radians(scorer.lat)), 1e-12))
    for when, idx in groups:
        cells = scorer.cells(when)
        for s in range(0, len(idx), BATCH):
            part = idx[s : s + BATCH]
            best[part] = np.argmax(cosine_scores(cells, q[part]) / temperature + logarea, axis=1)
    return best


def knn_predictions(gallery: Gallery, q, hour=None, month=None) -> np.ndarray:
    """(Q, 2) lon, lat of each query's top knn hypothesis; ``hour``/``month`` ((Q,) local
    solar time of each query, NaN where unknown) weight the neighbours by time."""
    if hour is not None:
        hour, month = np.asarray(hour)[:, None], np.asarray(month)[:, None]
    lon, lat, w = knn_points(gallery, q, hour, month)
    out = np.empty((len(q), 2))
    for i in range(len(q)):
        h = knn_hypotheses(lon[i], lat[i], w[i])[0]
        out[i] = h.lon, h.lat
    return out


def _baselines(layers: GroundLayers, n: int, rng: np.random.Generator):
    """(lon, lat) draws: uniform over land (by area); by population of places."""
    lons, lats = [], []
    while sum(map(len, lons)) < n:
        lon = rng.uniform(-180, 180, 4 * n)
        lat = np.degrees(np.arcsin(rng.uniform(-1, 1, 4 * n)))
        land = layers.surface_at(lon, lat) != OCEAN
        lons.append(lon[land])
        lats.append(lat[land])
    uniform = np.concatenate(lons)[:n], np.concatenate(lats)[:n]
    p_lon, p_lat, pop = layers._places
    idx = rng.choice(len(pop), size=n, p=np.maximum(pop, 0) / np.maximum(pop, 0).sum())
    return uniform, (p_lon[idx], p_lat[idx])


def _atlas_gallery(engine: MapEngine, holdout: HoldOut, n: int, work: Path) -> Gallery:
    obs = atlas_observations(n, GALLERY_SEED, accept=lambda lon, lat: ~holdout.near(lon, lat))
    return open_gallery(build_from_texts(work / "atlas-gallery", obs, engine.teacher))


def evaluate_where(engine: MapEngine, layers: GroundLayers, holdout: HoldOut, data: AtlasSet,
                   q: np.ndarray, gallery: Gallery, resolution: float, calibration_samples: int,
                   methods: tuple[str, ...]) -> dict:  # fmt: skip
    grid = _world(resolution)
    local = data.local_time()
    truth_lon, truth_lat = data.lon.astype(np.float64), data.lat.astype(np.float64)
    rows, timing = {}, {}
    rng = np.random.default_rng(GEO_EVAL_SEED)
    (ulon, ulat), (plon, plat) = _baselines(layers, len(q), rng)
    rows["baseline: uniform over land"] = accuracy(haversine_km(ulon, ulat, truth_lon, truth_lat))
    rows["baseline: population-weighted"] = accuracy(haversine_km(plon, plat, truth_lon, truth_lat))
    fitted = {}
    if "field" in methods:
        scorer = _FieldScorer(engine, grid)
        cal = build_set(layers, calibration_samples, seed=CALIBRATION_SEED, accept=holdout.contains)
        cq = engine.teacher.embed("text", cal.texts, progress=True)[cal.text_index]
        ctruth = _true_cells(grid, cal.lon, cal.lat)
        t0 = time.perf_counter()
        fitted["temperature"], fitted["nll_curve"] = _fit_temperature(scorer, cq, ctruth, None)
        # Fitting again at each sample's time costs a world of fused cells per time slot;
        # the time-given posterior uses the time-free temperature.
        fitted["temperature_time"] = fitted["temperature"]
        fitted["calibration_samples"] = len(cal)
        log.info("fitted %s", fitted)
        timing["field calibration"] = time.perf_counter() - t0
        for label, lt, temp in (("time-free", None, fitted["temperature"]),
                                ("time given", local, fitted["temperature_time"])):  # fmt: skip
            t0 = time.perf_counter()
            best = _field_predictions(scorer, q, lt, temp)
            timing[f"field, {label}"] = time.perf_counter() - t0
            lon, lat = scorer.lon[best], scorer.lat[best]
            rows[f"field, {label}"] = accuracy(haversine_km(lon, lat, truth_lon, truth_lat))
            log.info("%s: %s", f"field, {label}", rows[f"field, {label}"])
    if "knn" in methods:
        for label, lt in (("time-free", None), ("time given", local)):
            t0 = time.perf_counter()
            pred = knn_predictions(gallery, q, *((lt.hour, lt.month) if lt is not None else ()))
            timing[f"knn, {label}"] = time.perf_counter() - t0
            rows[f"knn, {label}"] = accuracy(
                haversine_km(pred[:, 0], pred[:, 1], truth_lon, truth_lat)
            )
            log.info("%s: %s", f"knn, {label}", rows[f"knn, {label}"])
    if "cells" in methods:
        t0 = time.perf_counter()
        head = train_cell_head(gallery)
        p = head.probabilities(q)
        best = p.argmax(axis=1)
        timing["cells, train + predict"] = time.perf_counter() - t0
        rows["cells (PlaNet), time-free"] = accuracy(
            haversine_km(head.lon[best], head.lat[best], truth_lon, truth_lat)
        )
        fitted["cells"] = len(head.cells)
        log.info("cells: %s", rows["cells (PlaNet), time-free"])
    if "geoclip" in methods:
        t0 = time.perf_counter()
        geoclip = GeoClip.load()
        head = geoclip_head_for(gallery, geoclip)
        pred = geoclip.predict(head(q), k=1)
        timing["geoclip, time-free"] = time.perf_counter() - t0
        rows["geoclip (text head), time-free"] = accuracy(
            haversine_km(pred.lon[:, 0], pred.lat[:, 0], truth_lon, truth_lat)
        )
    return {"rows": rows, "fitted": fitted, "seconds": timing, "resolution_deg": resolution,
            "reference": {"GeoCLIP on Im2GPS3k photos (published; a different task)": GEOCLIP_IM2GPS3K}}  # fmt: skip


def _circular(a, b, period):
    d = np.abs(np.asarray(a, np.float64) - b) % period
    return np.minimum(d, period - d)


def evaluate_when(engine: MapEngine, data: AtlasSet, q: np.ndarray, n: int) -> dict:
    n = min(n, len(data))
    lon, lat = data.lon[:n].astype(np.float64), data.lat[:n].astype(np.float64)
    local = data.local_time()
    overhead = engine.embedder.overhead(lon, lat)
    hour_hits = month_hits = 0
    true_s, shift_h, shift_m = np.empty(n), np.empty(n), np.empty(n)
    for i in range(n):
        scores = time_scores(
            engine, q[i], lon[i], lat[i], int(data.time["year"][i]), overhead=overhead[i : i + 1]
        )
        m, h = int(local.month[i]) - 1, int(local.hour[i]) % 24
        prob = np.exp(scores / 0.02 - logsumexp(scores / 0.02))
        hour_hits += _circular(prob.sum(0).argmax(), local.hour[i] - 0.5, 24) <= 2
        month_hits += _circular(prob.sum(1).argmax(), m, 12) <= 1
        true_s[i] = scores[m, h]
        shift_h[i] = scores[m, (h + 6) % 24]
        shift_m[i] = scores[(m + 6) % 12, h]
    both = np.concatenate
    return {
        "queries": n,
        "hour_within_2h": {"accuracy": float(hour_hits / n), "chance": 5 / 24},
        "month_within_1": {"accuracy": float(month_hits / n), "chance": 3 / 12},
        "verification_auc": {
            "shift_6h": roc_auc(
                both([true_s, shift_h]), both([np.ones(n, bool), np.zeros(n, bool)])
            ),
            "shift_6months": roc_auc(
                both([true_s, shift_m]), both([np.ones(n, bool), np.zeros(n, bool)])
            ),
        },
    }


def evaluate_geolocation(
    model: str = "atlas", samples: int = 10_000, gallery: str | Path | None = None,
    gallery_samples: int = 30_000, resolution: float = 0.5, calibration_samples: int = 300,
    time_queries: int = 2000, methods: tuple[str, ...] = ("field", "knn", "cells", "geoclip"),
    out: str | Path | None = None, save_calibration: bool = False,
) -> dict:  # fmt: skip
    engine = MapEngine(model)
    holdout = HoldOut.from_json(engine.model.config["holdout"])
    layers = GroundLayers()
    data = build_set(layers, samples, seed=GEO_EVAL_SEED, accept=holdout.contains)
    q = engine.teacher.embed("text", data.texts, progress=True)[data.text_index]
    with tempfile.TemporaryDirectory(prefix="omnimap-geoloc-") as work:
        g = (
            open_gallery(gallery)
            if gallery is not None
            else _atlas_gallery(engine, holdout, gallery_samples, Path(work))
        )
        g.check_teacher(engine.teacher)
        where = evaluate_where(
            engine, layers, holdout, data, q, g, resolution, calibration_samples, methods
        )
    metrics = {
        "model": engine.name, "weights_digest": engine.model.config["weights_digest"],
        "queries": len(data), "distinct_descriptions": len(data.texts), "gallery_size": len(g),
        "where": where, "when": evaluate_when(engine, data, q, time_queries),
    }  # fmt: skip
    if save_calibration and where["fitted"]:
        write_calibration(engine, {"field": where["fitted"], "resolution_deg": resolution})
    if out is not None:
        write_json_atomic(out, metrics)
    return metrics


def table_lines(rows: dict) -> list[str]:
    """The % within each threshold and the median error, one line per method."""
    head = (
        f"{'method':40s}"
        + "".join(f"{f'{t}km':>8}" for t in THRESHOLDS_KM)
        + f"{'median':>10}"
    )
    lines = [head]
    for name, row in rows.items():
        lines.append(
            f"{name:40s}"
            + "".join(f"{row[f'{t}km']:8.1f}" for t in THRESHOLDS_KM)
            + f"{row['median_km']:10.0f}"
        )
    return lines


def format_report(m: dict) -> str:
    w = m["where"]
    lines = [f"Geo-localization of {m['queries']} held-out atlas descriptions (world at {w['resolution_deg']} deg; "
             f"gallery {m['gallery_size']})", *table_lines(w["rows"])]  # fmt: skip
    for name, row in w["reference"].items():
        lines.append(f"{'* ' + name:40s}" + "".join(f"{row[f'{t}km']:8.1f}" for t in THRESHOLDS_KM))
    t = m["when"]
    lines += ["", f"When ({t['queries']} queries): hour +-2h {t['hour_within_2h']['accuracy']:.3f} (chance {t['hour_within_2h']['chance']:.3f}), "
              f"month +-1 {t['month_within_1']['accuracy']:.3f} (chance {t['month_within_1']['chance']:.3f})",
              f"Verification ROC-AUC: true vs +6h {t['verification_auc']['shift_6h']:.3f}, vs +6 months {t['verification_auc']['shift_6months']:.3f}"]  # fmt: skip
    return "\n".join(lines)
