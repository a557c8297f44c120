"""PlaNet-style geo-cells: adaptive S2 cells and a classifier over them.

Cells (Weyand, Kostrikov & Philbin 2016): start from S2 cells at ``MIN_LEVEL``; a cell
holding more than ``t1`` gallery observations is split into its four children, down
to ``MAX_LEVEL``; cells left with fewer than ``t2`` are dropped. S2 cell ids come from
the ``s2cell`` library. The head is a linear softmax classifier from teacher vectors
to cells, trained on the gallery (cross-entropy, Adam); a cell's position is the
spherical mean of its observations. The head is saved beside the gallery
(``cells.safetensors``, tied to the gallery's manifest digest): ``--method cells``
needs it (``omnimap gallery train-cells G``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import s2cell
import torch
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from omnimap.core.digest import file_digest
from omnimap.core.errors import DataError, InputError
from omnimap.core.fileio import atomic_path
from omnimap.datasets.gallery import MANIFEST, Gallery
from omnimap.geo.sphere import to_lonlat, unit_vectors

HEAD_FILE = "cells.safetensors"
MIN_LEVEL, MAX_LEVEL = 2, 13
T1, T2 = 100, 10  # split above, drop below (PlaNet: 10,000 and 50 on 126M photos)
EPOCHS, BATCH, LR = 40, 256, 1e-2


def adaptive_cells(lon, lat, t1: int = T1, t2: int = T2) -> tuple[np.ndarray, np.ndarray]:
    """(cell ids (C,) uint64, class of each point (N,) int, -1 where its cell was dropped)."""
    leaf = [
        s2cell.lat_lon_to_cell_id(float(y), float(x), MAX_LEVEL)
        for x, y in zip(lon, lat, strict=True)
    ]
    todo = {}
    for i, c in enumerate(leaf):
        todo.setdefault(s2cell.cell_id_to_parent_cell_id(c, MIN_LEVEL), []).append(i)
    kept: dict[int, list[int]] = {}
    level = MIN_LEVEL
    while todo:
        nxt: dict[int, list[int]] = {}
        for cell, members in todo.items():
            if len(members) > t1 and level < MAX_LEVEL:
                for i in members:
                    nxt.setdefault(s2cell.cell_id_to_parent_cell_id(leaf[i], level + 1), []).append(
                        i
                    )
            elif len(members) >= t2:
                kept[cell] = members
        todo, level = nxt, level + 1
    ids = np.array(sorted(kept), dtype=np.uint64)
    label = np.full(len(leaf), -1, np.int64)
    for k, cell in enumerate(ids.tolist()):
        label[kept[cell]] = k
    return ids, label


@dataclass
class CellHead:
    weight: np.ndarray  # (D, C)
    bias: np.ndarray  # (C,)
    cells: np.ndarray  # (C,) uint64 S2 ids
    lon: np.ndarray  # (C,) spherical mean of each cell's observations
    lat: np.ndarray

    def probabilities(self, q: np.ndarray) -> np.ndarray:
        logits = np.atleast_2d(q).astype(np.float32) @ self.weight + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)


def train_cell_head(gallery: Gallery, t1: int = T1, t2: int = T2, seed: int = 0) -> CellHead:
    ids, label = adaptive_cells(gallery.lon, gallery.lat, t1, t2)
    if len(ids) < 2:
        raise InputError(
            f"the gallery gives {len(ids)} cell(s) with t1={t1}, t2={t2}; use smaller thresholds"
        )
    keep = label >= 0
    x = torch.from_numpy(gallery.embeddings[keep].astype(np.float32))
    y = torch.from_numpy(label[keep])
    v = unit_vectors(gallery.lon[keep], gallery.lat[keep])
    sums = np.zeros((len(ids), 3))
    np.add.at(sums, label[keep], v)
    clon, clat = to_lonlat(sums)
    gen = torch.Generator().manual_seed(seed)
    layer = torch.nn.Linear(x.shape[1], len(ids))
    opt = torch.optim.Adam(layer.parameters(), lr=LR)
    for _ in range(EPOCHS):
        for idx in torch.randperm(len(x), generator=gen).split(BATCH):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(layer(x[idx] * 20.0), y[idx])
            loss.backward()
            opt.step()
    w = (layer.weight.detach().numpy().T * 20.0).astype(np.float32)
    return CellHead(w, layer.bias.detach().numpy().astype(np.float32), ids, clon, clat)


def save_cell_head(gallery: Gallery, head: CellHead) -> Path:
    path = gallery.path / HEAD_FILE
    meta = {"gallery_manifest": file_digest(gallery.path / MANIFEST)}
    arrays = {
        "weight": head.weight,
        "bias": head.bias,
        "cells": head.cells,
        "lon": head.lon,
        "lat": head.lat,
    }
    with atomic_path(path) as tmp:
        save_file(arrays, str(tmp), metadata=meta)
    return path


def load_cell_head(gallery: Gallery) -> CellHead:
    path = gallery.path / HEAD_FILE
    if not path.is_file():
        raise InputError(
            f"gallery {gallery.path.name} has no trained cell head; run: omnimap gallery train-cells {gallery.path.name}"
        )
    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            arrays = {k: f.get_tensor(k) for k in ("weight", "bias", "cells", "lon", "lat")}
    except (SafetensorError, OSError, KeyError, ValueError):
        raise DataError(f"{HEAD_FILE} of gallery {gallery.path.name} is unreadable") from None
    if meta.get("gallery_manifest") != file_digest(gallery.path / MANIFEST):
        raise DataError(
            f"{HEAD_FILE} was trained on another version of gallery {gallery.path.name}; retrain it"
        )
    return CellHead(**arrays)
