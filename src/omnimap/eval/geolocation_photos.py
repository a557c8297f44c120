"""``omnimap evaluate geolocation --gallery G --queries Q``: where were these photos taken?

Q is a table of photos with their true positions (a pairs table, or a CSV with lon, lat,
path and optionally datetime), G a photo gallery (``omnimap gallery build --pairs``).
Each query photo is embedded by the gallery's teacher and located by:

- ``knn`` against the gallery (time-free, and with the photo's local time when the
  queries and the gallery have times);
- ``cells``, the gallery's PlaNet head, when it has one (``omnimap gallery train-cells``);
- ``geoclip``, GeoCLIP's photo path: CLIP ViT-L/14 image features through its image
  head, top-1 of its 100k GPS gallery. The features are the gallery teacher's own when
  that teacher is a 768-d CLIP (then it is on by default), else those of ``clip``.

Error = great-circle distance from the top hypothesis to the truth; % within 1, 25,
200, 750 and 2,500 km and the median (the atlas evaluation's ``accuracy``), beside a
baseline that guesses the position of a random gallery photo.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from omnimap.core.errors import InputError
from omnimap.core.fileio import write_json_atomic
from omnimap.datasets.gallery import Gallery, LocatedPhotos, open_gallery, read_located_photos
from omnimap.eval.geolocation import THRESHOLDS_KM, accuracy, knn_predictions, table_lines
from omnimap.geo.sphere import haversine_km
from omnimap.maps.cells import HEAD_FILE, load_cell_head
from omnimap.models.geoclip import IMAGE_FEATURES, GeoClip, photo_clip
from omnimap.teachers.clip import CLIPTeacher
from omnimap.teachers.registry import get_teacher, teacher_from_config

PHOTO_METHODS = ("knn", "cells", "geoclip")
BASELINE_SEED = 20_241_110
BATCH = 32  # photos decoded and embedded at a time


def _teacher(g: Gallery, teacher: str | None):
    """The gallery's teacher (uncached: raw CLIP features are needed too), checked
    against the keys the gallery recorded."""
    if g.modality != "image":
        raise InputError(
            f"gallery {g.path.name} holds {g.modality} observations (teacher "
            f"{g.teacher.get('name')}); photo queries need a photo gallery "
            "(omnimap gallery build --pairs)"
        )
    kind = str(g.teacher.get("kind", "clip"))
    t = (get_teacher(teacher, kind, cached=False) if teacher
         else teacher_from_config(g.teacher, cached=False))  # fmt: skip
    g.check_teacher(t)
    return t


def _methods(methods: tuple[str, ...] | None, g: Gallery, teacher) -> tuple[str, ...]:
    if methods is None:  # what fits: knn always, cells when trained, geoclip on ViT-L/14
        fits = isinstance(teacher, CLIPTeacher) and teacher.dim == IMAGE_FEATURES
        return ("knn",) + ("cells",) * (g.path / HEAD_FILE).is_file() + ("geoclip",) * fits
    unknown = [m for m in methods if m not in PHOTO_METHODS]
    if unknown or not methods:
        raise InputError(
            f"photo queries are located by {', '.join(PHOTO_METHODS)}, got {', '.join(methods)!r}"
        )
    return tuple(methods)


def _embed(
    photos: LocatedPhotos, teacher, geoclip_features
) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, D) unit teacher vectors and, for geoclip, (N, 768) CLIP features (one pass
    when the gallery's teacher is the CLIP GeoCLIP takes)."""
    q, feats = [], []
    for s in range(0, len(photos), BATCH):
        images = photos.images(s, s + BATCH)
        if geoclip_features is teacher:
            raw = teacher.image_features(images)
            q.append(raw / np.linalg.norm(raw, axis=1, keepdims=True))
            feats.append(raw)
            continue
        q.append(teacher.embed("image", images))
        if geoclip_features is not None:
            feats.append(geoclip_features.image_features(images))
    return np.concatenate(q), (np.concatenate(feats) if feats else None)


def evaluate_photo_geolocation(
    gallery: str | Path, queries: str | Path, methods: tuple[str, ...] | None = None,
    teacher: str | None = None, clip: str | None = None, out: str | Path | None = None,
) -> dict:  # fmt: skip
    """Metrics of locating the query photos with each method (written to ``out`` last)."""
    g = open_gallery(gallery)
    t = _teacher(g, teacher)
    chosen = _methods(methods, g, t)
    photos = read_located_photos(queries)
    head = load_cell_head(g) if "cells" in chosen else None  # a missing head fails first
    geoclip = features = None
    if "geoclip" in chosen:
        geoclip = GeoClip.load()
        if clip is None and isinstance(t, CLIPTeacher) and t.dim == IMAGE_FEATURES:
            features = t
        else:
            features = photo_clip(clip)
    timing = {}
    t0 = time.perf_counter()
    q, raw = _embed(photos, t, features)
    timing["embed"] = time.perf_counter() - t0
    truth_lon, truth_lat = photos.lon, photos.lat

    def err(lon, lat) -> dict:
        return accuracy(haversine_km(lon, lat, truth_lon, truth_lat))

    rows = {}
    pick = np.random.default_rng(BASELINE_SEED).integers(0, len(g), len(photos))
    rows["baseline: a random gallery photo"] = err(g.lon[pick], g.lat[pick])
    if "knn" in chosen:
        t0 = time.perf_counter()
        rows["knn, time-free"] = err(*knn_predictions(g, q).T)
        timing["knn, time-free"] = time.perf_counter() - t0
        local = photos.time()
        if local is not None and g.time is not None:
            hour = local["hour"].astype(np.float64)
            month = np.where(np.isfinite(hour), local["month"], np.nan)
            t0 = time.perf_counter()
            rows["knn, time given"] = err(*knn_predictions(g, q, hour, month).T)
            rows["knn, time given"]["with_time"] = int(np.isfinite(hour).sum())
            timing["knn, time given"] = time.perf_counter() - t0
    if head is not None:
        t0 = time.perf_counter()
        best = head.probabilities(q).argmax(axis=1)
        rows["cells (PlaNet), time-free"] = err(head.lon[best], head.lat[best])
        timing["cells"] = time.perf_counter() - t0
    if geoclip is not None:
        t0 = time.perf_counter()
        pred = geoclip.predict(geoclip.image_head(raw), k=1)
        rows["geoclip (photo head), time-free"] = err(pred.lon[:, 0], pred.lat[:, 0])
        timing["geoclip"] = time.perf_counter() - t0
    metrics = {
        "gallery": g.path.name, "gallery_size": len(g), "queries_table": photos.table.name,
        "queries": len(photos), "teacher": {"name": _name(t.name), "key": t.to_config()["key"]},
        "geoclip_clip": _name(features.name) if features is not None else None,
        "methods": list(chosen), "thresholds_km": list(THRESHOLDS_KM), "rows": rows,
        "seconds": timing,
    }  # fmt: skip
    if out is not None:
        write_json_atomic(out, metrics)
    return metrics


def _name(name: str) -> str:
    """A model folder by its last part (no machine paths in metrics files)."""
    return Path(name).name if Path(name).is_absolute() else name


def format_photo_report(m: dict) -> str:
    return "\n".join([
        f"Geo-localization of {m['queries']} photos ({m['queries_table']}) against gallery "
        f"{m['gallery']} ({m['gallery_size']} photos, teacher {m['teacher']['name']})",
        *table_lines(m["rows"]),
    ])  # fmt: skip
