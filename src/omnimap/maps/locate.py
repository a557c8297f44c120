"""Where was this observed? A query's posterior over the cells of a grid, four ways.

- ``field``: the query scored against the student's embedding of every cell (the one
  scoring path, through the map engine), softmax with a temperature fitted on held-out
  data (``locate.json`` beside the model), times the cell's area;
- ``knn`` (IM2GPS): the nearest gallery observations in the teacher's space, weighted by
  a softmax of their similarity (and by how close their time is to ``when``), then
  mean-shift over their positions on the sphere; clusters ranked by weight;
- ``geoclip``: the query mapped into GeoCLIP's space by a linear head (ridge regression
  from teacher vectors of a gallery to GeoCLIP location embeddings of their positions),
  then GeoCLIP's softmax over its 100k GPS gallery;
- ``cells`` (PlaNet): a classifier over adaptive S2 cells of a gallery (maps/cells.py);
- the posterior of ``knn``, ``cells`` and ``geoclip`` on the grid is a kernel density of their
  weighted points (von Mises-Fisher kernel).

Every method gives a :class:`Posterior`: probabilities over the grid cells (sum 1), and
ranked hypotheses, each with its probability mass and a confidence radius (the distance
from its centre within which 68% of its mass lies).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.special import logsumexp, softmax

from omnimap.core.digest import array_digest
from omnimap.core.errors import DataError, InputError
from omnimap.core.fileio import atomic_path
from omnimap.core.store import ArrayStore
from omnimap.datasets.gallery import Gallery
from omnimap.geo.grid import LatLonGrid
from omnimap.geo.sphere import (
    EARTH_RADIUS_KM,
    cell_area_weights,
    haversine_km,
    to_lonlat,
    unit_vectors,
)
from omnimap.geo.timefeat import When, local_times
from omnimap.maps.cells import CellHead
from omnimap.maps.engine import MapEngine
from omnimap.maps.geojson import write_points
from omnimap.maps.result import MapResult
from omnimap.maps.stac import PROBABILITY
from omnimap.models.geoclip import GeoClip

METHODS = ("field", "knn", "cells", "geoclip")
CALIBRATION_FILE = "locate.json"
DEFAULT_FIELD_TEMPERATURE = 0.02  # used only until a calibration is fitted
KNN_K = 32
KNN_TAU = 0.02  # softmax temperature over neighbour similarities
BANDWIDTH_KM = 250.0  # mean-shift and density kernel
HOUR_SIGMA, MONTH_SIGMA = 2.5, 1.5  # time kernel of knn when ``when`` is given
CONFIDENCE = 0.68
RIDGE = 1e-2
HYPOTHESES = 5


@dataclass
class Hypothesis:
    lon: float
    lat: float
    mass: float
    radius_km: float
    rank: int = 0


@dataclass
class Posterior:
    grid: LatLonGrid
    prob: np.ndarray  # (nrows, ncols) float32, sums to 1
    method: str
    query: str
    hypotheses: list[Hypothesis] = field(default_factory=list)
    when: When | None = None
    model: str = ""

    @property
    def best(self) -> Hypothesis:
        return self.hypotheses[0]

    def write(self, tif: str | Path) -> dict[str, Path]:
        """X.tif (COG) and X.png through the map writer, X.geojson of the hypotheses."""
        tif = Path(tif)
        result = MapResult(scores=self.prob, grid=self.grid, prompt=f"where: {self.query}",
                           when=self.when, place=self.method, model=self.model,
                           values=PROBABILITY)  # fmt: skip
        paths = result.write(tif, geojson=False, stac=False)
        points = [{"lon": h.lon, "lat": h.lat, "rank": h.rank, "mass": h.mass,
                   "radius_km": h.radius_km} for h in self.hypotheses]  # fmt: skip
        paths["geojson"] = write_points(tif.with_suffix(".geojson"), points,
                                        ("rank", "mass", "radius_km"), method=self.method,
                                        query=self.query)  # fmt: skip
        return paths

    def to_json(self) -> dict:
        return {"method": self.method, "query": self.query,
                "hypotheses": [h.__dict__ for h in self.hypotheses]}  # fmt: skip


# -- shared pieces ---------------------------------------------------------------


def cell_lonlat(grid: LatLonGrid) -> tuple[np.ndarray, np.ndarray]:
    lon, lat = grid.centers()
    return np.asarray(lon, np.float64).ravel(), np.asarray(lat, np.float64).ravel()


def hypotheses_from_grid(
    grid: LatLonGrid, prob: np.ndarray, k: int = HYPOTHESES
) -> list[Hypothesis]:
    """Peaks of the posterior; each cell's mass goes to its nearest peak."""
    result = MapResult(scores=prob, grid=grid, prompt="")
    peaks = result.peaks(k)
    return _masses(
        grid, prob, np.array([p["lon"] for p in peaks]), np.array([p["lat"] for p in peaks])
    )


def _masses(
    grid: LatLonGrid, prob: np.ndarray, plon: np.ndarray, plat: np.ndarray
) -> list[Hypothesis]:
    lon, lat = cell_lonlat(grid)
    p = prob.ravel().astype(np.float64)
    keep = p > p.max() * 1e-6
    lon, lat, p = lon[keep], lat[keep], p[keep]
    d = haversine_km(lon[:, None], lat[:, None], plon[None], plat[None])  # (cells, peaks)
    owner = d.argmin(axis=1)
    out = []
    for j in range(len(plon)):
        mine = owner == j
        dist, w = d[mine, j], p[mine]
        out.append(
            Hypothesis(float(plon[j]), float(plat[j]), float(w.sum()), _radius(dist, w, grid))
        )
    out.sort(key=lambda h: -h.mass)
    for rank, h in enumerate(out, start=1):
        h.rank = rank
    return out


def _radius(dist: np.ndarray, w: np.ndarray, grid: LatLonGrid) -> float:
    """Distance within which CONFIDENCE of the weight lies (at least half a cell)."""
    floor = 0.5 * grid.resolution * np.pi / 180 * EARTH_RADIUS_KM
    if w.sum() <= 0:
        return float(floor)
    order = np.argsort(dist)
    cum = np.cumsum(w[order]) / w.sum()
    return float(max(dist[order][np.searchsorted(cum, CONFIDENCE)], floor))


def density_on_grid(
    grid: LatLonGrid, lon, lat, weight, bandwidth_km: float = BANDWIDTH_KM
) -> np.ndarray:
    """(nrows, ncols) probabilities: weighted von Mises-Fisher kernels at the points, times cell area."""
    clon, clat = cell_lonlat(grid)
    cells = unit_vectors(clon, clat)
    pts = unit_vectors(lon, lat)
    kappa = (EARTH_RADIUS_KM / bandwidth_km) ** 2
    w = np.asarray(weight, np.float64)
    logp = np.full(len(cells), -np.inf)
    for s in range(0, len(cells), 65_536):  # bounds the (cells, points) matrix
        block = kappa * (cells[s : s + 65_536] @ pts.T - 1.0) + np.log(np.maximum(w, 1e-300))
        logp[s : s + 65_536] = logsumexp(block, axis=1)
    logp += np.log(cell_area_weights(clat))
    prob = np.exp(logp - logsumexp(logp))
    return prob.reshape(grid.shape).astype(np.float32)


# -- field -----------------------------------------------------------------------


def calibration(engine: MapEngine) -> dict:
    """The model's fitted locate calibration (``locate.json`` beside its weights), or {}."""
    path = Path(engine.model.path) / CALIBRATION_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise DataError(f"{path.name} of model {engine.name} is unreadable") from None
    if data.get("weights_digest") != engine.model.config.get("weights_digest"):
        return {}  # fitted for other weights
    return data


def field_log_posterior(scores: np.ndarray, lat: np.ndarray, temperature: float) -> np.ndarray:
    """(Q, cells) log posteriors from (Q, cells) cosine scores: softmax(s / T) x area."""
    logits = scores / temperature + np.log(cell_area_weights(lat))[None]
    return logits - logsumexp(logits, axis=1, keepdims=True)


def field_temperature(engine: MapEngine | None, when: When | None) -> float:
    """The softmax temperature of the field posterior: fitted on held-out data for the
    model (with and without time), else the default."""
    fitted = calibration(engine).get("field", {}) if engine is not None else {}
    key = "temperature_time" if when is not None else "temperature"
    return float(fitted.get(key, DEFAULT_FIELD_TEMPERATURE))


def posterior_from_scores(grid: LatLonGrid, scores: np.ndarray, temperature: float,
                          when: When | None = None, query: str = "", model: str = "",
                          inside: np.ndarray | None = None) -> Posterior:  # fmt: skip
    """The field posterior of a query's (rows, cols) score map; ``inside`` (a mask)
    keeps it within a country or continent."""
    _, lat = cell_lonlat(grid)
    finite = np.where(np.isfinite(scores), scores, -np.inf)  # nodata cells get no mass
    logp = field_log_posterior(finite.reshape(1, -1), lat, temperature)
    prob = np.exp(logp)[0].reshape(grid.shape)
    if inside is not None:
        prob = np.where(inside, prob, 0.0)
        prob /= max(float(prob.sum()), 1e-300)
    return Posterior(grid, prob.astype(np.float32), "field", query,
                     hypotheses_from_grid(grid, prob), when, model)  # fmt: skip


def locate_field(engine: MapEngine, q: np.ndarray, grid: LatLonGrid, when: When | None,
                 query: str = "", temperature: float | None = None,
                 inside: np.ndarray | None = None) -> Posterior:  # fmt: skip
    """The field posterior of query vector ``q`` (text, photo, sound: any the model's
    teacher embeds); ``inside`` keeps it within a country or continent."""
    if temperature is None:
        temperature = field_temperature(engine, when)
    scores = engine.score_vectors(np.atleast_2d(q), grid, when).reshape(grid.shape)
    return posterior_from_scores(grid, scores, temperature, when, query, engine.name, inside)


# -- knn ---------------------------------------------------------------------------


def time_weights(gallery: Gallery, ids: np.ndarray, hour, month) -> np.ndarray:
    """Kernel weights of the observations ``ids`` by how close their local solar hour and
    month are to ``hour``/``month`` (arrays broadcasting to ``ids``); 1 where unknown."""
    if gallery.time is None:
        return np.ones(ids.shape)
    dh = np.abs(gallery.time.hour[ids] - hour)
    dh = np.minimum(dh, 24 - dh)
    dm = np.abs(gallery.time.month[ids] - month)
    dm = np.minimum(dm, 12 - dm)
    w = np.exp(-0.5 * (dh / HOUR_SIGMA) ** 2 - 0.5 * (dm / MONTH_SIGMA) ** 2)
    return np.where(np.isfinite(w), w, 1.0)


def mean_shift(lon, lat, weight, bandwidth_km: float = BANDWIDTH_KM, iterations: int = 30):
    """Modes of a weighted point set on the sphere: [(lon, lat, weight, member mask)], heaviest first."""
    pts = unit_vectors(lon, lat)
    w = np.asarray(weight, np.float64)
    kappa = (EARTH_RADIUS_KM / bandwidth_km) ** 2
    x = pts.copy()
    for _ in range(iterations):
        k = w[None] * np.exp(kappa * (x @ pts.T - 1.0))  # (starts, points)
        new = k @ pts
        new /= np.linalg.norm(new, axis=1, keepdims=True)
        if np.max(1 - np.sum(new * x, axis=1)) < 1e-12:
            x = new
            break
        x = new
    # Merge modes closer than half the bandwidth; a point belongs to the mode it climbed to.
    merge = np.cos(0.5 * bandwidth_km / EARTH_RADIUS_KM)
    modes: list[np.ndarray] = []
    owner = np.empty(len(x), int)
    for i, v in enumerate(x):
        for j, m in enumerate(modes):
            if v @ m >= merge:
                owner[i] = j
                break
        else:
            owner[i] = len(modes)
            modes.append(v)
    out = []
    for j, m in enumerate(modes):
        members = owner == j
        mlon, mlat = to_lonlat(m)
        out.append((float(mlon), float(mlat), float(w[members].sum()), members))
    out.sort(key=lambda t: -t[2])
    return out


def knn_points(gallery: Gallery, q: np.ndarray, hour=None, month=None, k: int = KNN_K):
    """(lon, lat, weight) of the k nearest observations of each query: (Q, k) arrays;
    with ``hour``/``month`` ((Q, 1) local solar time of each query) weighted by time too."""
    scores, ids = gallery.search(q, k)
    w = softmax(scores / KNN_TAU, axis=1)
    if hour is not None:
        w = w * time_weights(gallery, ids, hour, month)
        w /= np.maximum(w.sum(axis=1, keepdims=True), 1e-300)
    return gallery.lon[ids], gallery.lat[ids], w


def knn_hypotheses(lon, lat, w, bandwidth_km: float = BANDWIDTH_KM) -> list[Hypothesis]:
    out = []
    for rank, (mlon, mlat, mass, members) in enumerate(
        mean_shift(lon, lat, w, bandwidth_km)[:HYPOTHESES], 1
    ):
        d = haversine_km(mlon, mlat, lon[members], lat[members])
        order = np.argsort(d)
        cum = np.cumsum(w[members][order]) / max(w[members].sum(), 1e-300)
        radius = max(float(d[order][np.searchsorted(cum, CONFIDENCE)]), bandwidth_km / 2)
        out.append(Hypothesis(mlon, mlat, mass, radius, rank))
    return out


def locate_knn(gallery: Gallery, q: np.ndarray, grid: LatLonGrid, when: When | None,
               query: str = "", model: str = "") -> Posterior:  # fmt: skip
    hour = month = None
    if when is not None:
        _, ids = gallery.search(q, KNN_K)
        local = local_times(when, gallery.lon[ids])
        hour, month = local.hour, local.month
    lon, lat, w = (a[0] for a in knn_points(gallery, np.atleast_2d(q), hour, month))
    prob = density_on_grid(grid, lon, lat, w)
    return Posterior(grid, prob, "knn", query, knn_hypotheses(lon, lat, w), when, model)


# -- geoclip -----------------------------------------------------------------------


@dataclass(frozen=True)
class GeoClipHead:
    """Linear map (ridge) from a teacher's space into GeoCLIP's 512-d space."""

    weight: np.ndarray  # (D, 512)
    bias: np.ndarray  # (512,)

    def __call__(self, q: np.ndarray) -> np.ndarray:
        z = np.atleast_2d(q).astype(np.float32) @ self.weight + self.bias
        return z / np.linalg.norm(z, axis=1, keepdims=True)


def fit_geoclip_head(
    x: np.ndarray, lon, lat, geoclip: GeoClip, ridge: float = RIDGE
) -> GeoClipHead:
    """Ridge regression of GeoCLIP's location embeddings of (lon, lat) on teacher vectors x."""
    y = geoclip.encode_locations(lon, lat).astype(np.float64)
    x = np.asarray(x, np.float64)
    xm, ym = x.mean(0), y.mean(0)
    xc = x - xm
    w = np.linalg.solve(xc.T @ xc + ridge * len(x) * np.eye(x.shape[1]), xc.T @ (y - ym))
    return GeoClipHead(w.astype(np.float32), (ym - xm @ w).astype(np.float32))


def geoclip_head_for(
    gallery: Gallery, geoclip: GeoClip, store: ArrayStore | None = None
) -> GeoClipHead:
    """The head learned on a gallery (cached in the store by gallery and GeoCLIP digests)."""
    store = store if store is not None else ArrayStore("locate")
    key = f"geoclip-head|{geoclip.digest}|{array_digest(gallery.embeddings, gallery.lon, gallery.lat)}|{RIDGE}"
    cached = store.read(key)
    if cached is not None:
        return GeoClipHead(cached["weight"], cached["bias"])
    head = fit_geoclip_head(
        gallery.embeddings.astype(np.float32), gallery.lon, gallery.lat, geoclip
    )
    store.put(key, {"weight": head.weight, "bias": head.bias})
    return head


def geoclip_points(geoclip: GeoClip, z: np.ndarray, k: int = 256):
    """(lon, lat, prob) of GeoCLIP's top-k GPS gallery points for (Q, 512) queries."""
    pred = geoclip.predict(z, k=k)
    return np.atleast_2d(pred.lon), np.atleast_2d(pred.lat), np.atleast_2d(pred.prob)


def locate_geoclip(geoclip: GeoClip, head: GeoClipHead | None, q: np.ndarray, grid: LatLonGrid,
                   query: str = "", model: str = "") -> Posterior:  # fmt: skip
    z = head(q) if head is not None else np.atleast_2d(q)
    lon, lat, p = (a[0] for a in geoclip_points(geoclip, z))
    prob = density_on_grid(grid, lon, lat, p / p.sum(), bandwidth_km=50.0)
    hyps = _masses(grid, prob, lon[:HYPOTHESES], lat[:HYPOTHESES])
    return Posterior(grid, prob, "geoclip", query, hyps, None, model)


def locate_cells(head: CellHead, q: np.ndarray, grid: LatLonGrid, query: str = "",
                 model: str = "") -> Posterior:  # fmt: skip
    """PlaNet: the cell classifier's probabilities, placed at each cell's observations' mean."""
    p = head.probabilities(q)[0]
    prob = density_on_grid(grid, head.lon, head.lat, p, bandwidth_km=100.0)
    top = np.argsort(-p)[:HYPOTHESES]
    return Posterior(grid, prob, "cells", query, _masses(grid, prob, head.lon[top], head.lat[top]),
                     None, model)  # fmt: skip


def write_calibration(engine: MapEngine, data: dict) -> Path:
    path = Path(engine.model.path) / CALIBRATION_FILE
    payload = {"weights_digest": engine.model.config.get("weights_digest"), **data}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    return path


def check_method(method: str) -> str:
    if method not in METHODS:
        raise InputError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    return method
