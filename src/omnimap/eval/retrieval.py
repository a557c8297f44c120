"""Retrieval metrics with 1-based ranks (Sat2Cap protocol, without its two known bugs).

``similarity[i, j]`` scores query i against gallery item j; the true match of query i
is item i. The rank of query i is 1 + the number of gallery items that score strictly
higher than its best match; R@k is the share of queries with rank <= k (not < k) and
the median rank is taken over queries of *this* matrix (not its transpose).
"""

from __future__ import annotations

import numpy as np

from omnimap.maps.scoring import cosine_scores


def ranks(
    similarity: np.ndarray, labels: np.ndarray | None = None, block: int = 1024
) -> np.ndarray:
    """1-based rank of each query's true match. With ``labels``, every gallery item
    whose label equals the query's (e.g. an identical description) counts as a match."""
    sim = np.asarray(similarity)
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"similarity must be square (query i matches item i), got {sim.shape}")
    n = sim.shape[0]
    labels = np.arange(n) if labels is None else np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {labels.shape}")
    out = np.empty(n, dtype=np.int64)
    for start in range(0, n, block):  # row blocks keep the boolean masks small
        rows = sim[start : start + block]
        match = labels[start : start + block, None] == labels[None, :]
        best = np.where(match, rows, -np.inf).max(axis=1)
        out[start : start + block] = ((rows > best[:, None]) & ~match).sum(axis=1) + 1
    return out


def retrieval_metrics(
    similarity: np.ndarray, ks=(1, 5, 10), labels: np.ndarray | None = None
) -> dict[str, float]:
    """{"R@1": ..., "R@5": ..., "R@10": ..., "median_rank": ...} for a similarity matrix."""
    r = ranks(similarity, labels)
    out = {f"R@{k}": float(np.mean(r <= k)) for k in ks}
    out["median_rank"] = float(np.median(r))
    return out


def both_directions(
    a: np.ndarray, b: np.ndarray, ks=(1, 5, 10), labels: np.ndarray | None = None
) -> dict[str, dict]:
    """Metrics a->b (queries a, gallery b) and b->a, for row-paired unit vectors."""
    sim = cosine_scores(b, a)  # (len(a), len(b))
    return {
        "forward": retrieval_metrics(sim, ks, labels),
        "backward": retrieval_metrics(sim.T, ks, labels),
    }
