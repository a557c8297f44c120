"""Maps that use what was observed (near/remote fusion, after RANGE).

An observation j (teacher embedding ``e_j`` at a place where the student predicts
``p_j`` at the observation's own time) tells how wrong the student is there: the
residual ``r_j = (e_j - mean e) - (p_j - mean p)``, the means over the gallery. Each
cell's student embedding ``s`` takes the residuals of the observations near it and like
it:

    w_j   = exp(-d_j^2 / 2h^2) * exp((s . q_j - 1) / tau)   (geodesic x similarity kernel)
    r     = sum_j w_j r_j / W,   W = sum_j w_j
    alpha = W / (W + kappa)                                  (shrinkage toward the student)
    s'    = normalize(s + alpha r)

``q_j`` is the student's embedding of the observation's place at the map's time, so
``s . q_j`` compares like with like and is 1 for the same place.

Why each part (measured on observations and descriptions apart from the evaluation;
docs/where-and-when.md):

- The means are subtracted because the student (trained contrastively) and the teacher
  sit in different parts of the space: the cosine of a description and the student's
  prediction at its place is about 0.25, and the mean residual alone has a squared norm
  of 0.47 of its 1.5. An uncentred residual carries that gap into every observed
  neighbourhood, shifting it as a whole against each prompt (up for some, down for
  others): the AUC losses of the earlier version.
- The similarity is in the weight *and* in the confidence W: the residuals of two
  places share little unless the student sees them as alike (their covariance falls
  from 0.33 to 0.08 as the cosine of the places goes from 1 to below 0.5), so a near
  but unlike observation (a coast beside a desert) moves a cell little, while the
  earlier softmax over the neighbours gave one unlike neighbour its whole weight.
- kappa is the nugget-to-sill ratio of the residuals: one description's residual is
  about two parts what was written (its wording, the sampled clauses) to one part what
  the place adds, so one similar observation at the cell itself counts 1 / (1 + 2).

A cell with no observation within the search radius keeps its student embedding
exactly, and so does every cell when the gallery holds one observation (its centred
residual is zero). Neighbours come from a k-d tree on unit vectors (chord distance), at
most ``k`` per cell.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from omnimap.datasets.gallery import Gallery
from omnimap.geo.grid import LatLonGrid
from omnimap.geo.sphere import EARTH_RADIUS_KM, unit_vectors
from omnimap.geo.timefeat import When, local_times
from omnimap.maps.engine import MapEngine
from omnimap.maps.scoring import cosine_scores
from omnimap.models.embedder import mode_for

BANDWIDTH_KM = 30.0
RADIUS_BANDWIDTHS = 3.0  # neighbours farther than this many bandwidths are ignored
NEIGHBOURS = 16
# The residual covariance of two places against the cosine of their student
# embeddings falls like exp((cos - 1) / 0.5 .. 0.75) (binned pairs within 300 km).
TAU = 0.5
KAPPA = 2.0  # nugget / sill of the centred residuals: 0.65 / 0.37 (docs)
BLOCK = 131_072


def fuse(cells: np.ndarray, lon, lat, gallery: Gallery, predicted: np.ndarray,
         like: np.ndarray | None = None, bandwidth_km: float = BANDWIDTH_KM,
         k: int = NEIGHBOURS, tau: float = TAU, kappa: float = KAPPA,
         ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """((N, D) float16 unit blended embeddings, (N,) alpha) for cells at (lon, lat).

    ``predicted``: (M, D) the student's embeddings at the gallery's observations, at
    their own times (the residuals); ``like``: (M, D) the same places at the map's time,
    as the cells are (the similarity; ``predicted`` when None)."""
    tree = cKDTree(unit_vectors(gallery.lon, gallery.lat))
    radius = RADIUS_BANDWIDTHS * bandwidth_km / EARTH_RADIUS_KM
    chord = 2 * np.sin(radius / 2)
    pred = np.asarray(predicted, np.float32)
    like = pred if like is None else np.asarray(like, np.float32)
    seen = gallery.embeddings.astype(np.float32)
    residual = (seen - seen.mean(axis=0)) - (pred - pred.mean(axis=0))
    k = min(k, len(gallery))
    out = np.array(cells, np.float16, copy=True)
    alpha_all = np.zeros(len(cells), np.float32)
    xyz_all = unit_vectors(lon, lat)
    for s in range(0, len(cells), BLOCK):
        c = cells[s : s + BLOCK].astype(np.float32)
        dist, idx = tree.query(xyz_all[s : s + BLOCK], k=k, distance_upper_bound=chord)
        dist, idx = dist.reshape(len(c), k), idx.reshape(len(c), k)
        found = idx < len(gallery)
        safe = np.where(found, idx, 0)
        d_km = 2 * np.arcsin(np.clip(np.where(found, dist, 0) / 2, 0, 1)) * EARTH_RADIUS_KM
        geo = np.exp(-0.5 * (d_km / bandwidth_km) ** 2)
        sim = np.einsum("nd,nkd->nk", c, like[safe])
        w = np.where(found, geo * np.exp(np.minimum(sim - 1, 0) / tau), 0.0)
        wsum = w.sum(axis=1)
        alpha = (wsum / (wsum + kappa)).astype(np.float32)
        r = np.einsum("nk,nkd->nd", w / np.maximum(wsum[:, None], 1e-30), residual[safe])
        blended = c + alpha[:, None] * r
        blended /= np.maximum(np.linalg.norm(blended, axis=1, keepdims=True), 1e-12)
        moved = wsum > 0  # the others keep the student's embedding bit for bit
        out[s : s + BLOCK][moved] = blended[moved]
        alpha_all[s : s + BLOCK] = alpha
    return out, alpha_all


def predicted_at(engine: MapEngine, gallery: Gallery, when: When | None) -> np.ndarray:
    """The student's prediction for each observation: at its own place and local time when
    the gallery has times (so a residual holds what the place adds, not the hour), else
    at the map's time."""
    if gallery.time is not None and np.isfinite(gallery.time.hour).all():
        return engine.embedder.fused(gallery.lon, gallery.lat, gallery.time, "full")
    return like_cells(engine, gallery, when)


def like_cells(engine: MapEngine, gallery: Gallery, when: When | None) -> np.ndarray:
    """The student's embedding of each observation's place at the map's time, as the
    map's cells are embedded (``fuse``'s similarity)."""
    local = local_times(when, gallery.lon) if when is not None else None
    return engine.embedder.fused(gallery.lon, gallery.lat, local, mode_for(when))


def observed_scores(engine: MapEngine, q: np.ndarray, grid: LatLonGrid, when: When | None,
                    gallery: Gallery) -> np.ndarray:  # fmt: skip
    """(Q, nrows, ncols) cosine maps of query vectors over the blended cell embeddings."""
    gallery.check_teacher(engine.teacher)
    cells = engine.cell_embeddings(grid, when)
    lon, lat = (a.ravel() for a in grid.centers())
    blended, _ = fuse(cells, lon, lat, gallery, predicted_at(engine, gallery, when),
                      like=like_cells(engine, gallery, when))  # fmt: skip
    q = np.atleast_2d(q)
    return cosine_scores(blended, q).reshape(len(q), grid.nrows, grid.ncols)
