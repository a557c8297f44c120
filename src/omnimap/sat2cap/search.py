"""Text -> overhead retrieval: the places whose student embedding best matches a prompt.

Candidates are the samples of a pairs table / shard folder (each at its own time, or
all at one ``when``), or the cells of a grid over a bbox cut from the model's imagery.
The result is written as a contact sheet (PNG: the top patches, ranked, with scores)
and a GeoJSON of their locations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnimap.errors import InputError
from omnimap.fileio import atomic_path, write_json_atomic
from omnimap.geo.timefeat import When, local_times, metadata_features
from omnimap.models.checkpoint import LoadedModel, load_checkpoint
from omnimap.sat2cap.data import CrossViewData
from omnimap.sat2cap.evaluate import student_parts
from omnimap.sat2cap.teacher import clip_text_encoder


@dataclass
class Candidates:
    lon: np.ndarray
    lat: np.ndarray
    patches: np.ndarray  # (N, 3, P, P) uint8
    meta: np.ndarray  # (N, 12)
    ids: list[str]


def from_pairs(data: CrossViewData, when: When | None = None) -> Candidates:
    """A pairs set's samples, at their own times unless ``when`` is given."""
    meta = (
        data.meta
        if when is None
        else metadata_features(data.lon, data.lat, local_times(when, data.lon))
    )
    return Candidates(
        data.lon, data.lat, data.patches(np.arange(len(data))), meta, [str(i) for i in data.ids]
    )


def from_grid(imagery, grid, when: When | None = None) -> Candidates:
    """The cells of a ``LatLonGrid``, patches cut from ``imagery``; failed cells are left out."""
    lon, lat = grid.centers(0, grid.nrows)
    batch = imagery.read(lon, lat)
    lon, lat = lon[batch.ok], lat[batch.ok]
    if not len(lon):
        raise InputError("the imagery covers none of the grid's cells")
    meta = metadata_features(lon, lat, local_times(when, lon) if when is not None else None)
    ids = [f"{x:.5f},{y:.5f}" for x, y in zip(lon, lat, strict=True)]
    return Candidates(lon, lat, batch.patches[batch.ok], meta, ids)


def search(
    model: str | Path | LoadedModel, prompt: str, candidates: Candidates, k: int = 16
) -> list[dict]:
    """The ``k`` best candidates for ``prompt``, best first."""
    prompt = (prompt or "").strip()
    if not prompt:
        raise InputError("prompt is empty; describe what to look for, e.g. 'a harbour at night'")
    if k < 1:
        raise InputError("k must be at least 1")
    loaded = model if isinstance(model, LoadedModel) else load_checkpoint(model)
    q = clip_text_encoder(str(loaded.config["teacher"]["name"])).embed([prompt])[0]
    o, m = student_parts(loaded, candidates.patches, candidates.meta)
    s = o + m
    scores = (s / np.maximum(np.linalg.norm(s, axis=1, keepdims=True), 1e-12)) @ q
    order = np.argsort(-scores, kind="stable")[:k]
    return [{"rank": r + 1, "index": int(i), "id": candidates.ids[i], "lon": float(candidates.lon[i]),
             "lat": float(candidates.lat[i]), "score": float(scores[i])} for r, i in enumerate(order)]  # fmt: skip


def contact_sheet(
    patches: np.ndarray, labels: list[str], title: str, out: str | Path, columns: int = 4
) -> Path:
    """A grid of patches with a label under each, written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(1, math.ceil(len(patches) / columns))
    fig, axes = plt.subplots(
        rows, columns, figsize=(2.2 * columns, 2.4 * rows + 0.4), squeeze=False
    )
    for ax in axes.ravel():
        ax.axis("off")
    for ax, patch, label in zip(axes.ravel(), patches, labels, strict=False):
        ax.imshow(np.asarray(patch).transpose(1, 2, 0), interpolation="nearest")
        ax.set_title(label, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return out


def write_results(
    prompt: str, hits: list[dict], candidates: Candidates, out_stem: str | Path
) -> dict[str, Path]:
    """``<stem>.png`` (contact sheet) and ``<stem>.geojson`` (points with rank and score)."""
    stem = Path(out_stem)
    labels = [f"#{h['rank']} {h['score']:.3f}\n{h['lon']:.4f}, {h['lat']:.4f}" for h in hits]
    png = contact_sheet(
        candidates.patches[[h["index"] for h in hits]],
        labels,
        f'"{prompt}"',
        stem.with_suffix(".png"),
    )
    features = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [h["lon"], h["lat"]]},
                 "properties": {k: h[k] for k in ("rank", "id", "score")}} for h in hits]  # fmt: skip
    geojson = stem.with_suffix(".geojson")
    write_json_atomic(
        geojson,
        {"type": "FeatureCollection", "properties": {"prompt": prompt}, "features": features},
    )
    return {"png": png, "geojson": geojson}
