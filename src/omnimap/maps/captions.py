"""Captions for a place and a time: rank a caption bank by the student's embedding.

The student embeds (overhead patch, lon, lat, local time); the teacher embeds the
captions into the same space; the best cosine similarities are the captions. The time
enters through the dynamic encoder, so the same place can read "a street at night" at
23:00 and "a sunny street" at noon.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from omnimap.core.errors import InputError
from omnimap.geo.timefeat import When, local_times
from omnimap.maps.engine import MapEngine
from omnimap.maps.scoring import cosine_scores

BUILTIN_CAPTIONS = (
    "a busy city street", "a city street at night with lights", "skyscrapers in a downtown area",
    "a quiet residential neighbourhood", "a suburban street with houses and gardens", "a small village",
    "a parking lot full of cars", "a highway with traffic", "a railway station", "an industrial area with warehouses",
    "a harbour with boats", "a sandy beach by the sea", "waves on a rocky coast", "a calm lake",
    "a river flowing through a valley", "a waterfall in the forest", "a dense green forest",
    "autumn trees with red and yellow leaves", "bare trees in winter", "a snowy landscape",
    "snow-covered mountains", "a mountain trail", "rolling green hills", "a farm field with crops",
    "a wheat field in summer", "a vineyard", "an orchard in bloom", "a meadow with wildflowers",
    "a desert with sand dunes", "a dry savanna", "a tropical jungle", "a swamp",
    "a park with people walking", "a sports stadium", "a university campus", "a church in a town square",
    "a bridge over a river", "an airport runway", "a sunset over the landscape", "a cloudy grey day",
    "a clear blue sky at noon", "a dark night sky", "a foggy morning", "a rainy street",
)  # fmt: skip


def read_caption_bank(path: str | Path) -> list[str]:
    """One caption per line; blank lines and lines starting with # are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"cannot read caption file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"caption file {path} is not UTF-8 text") from None
    bank = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not bank:
        raise InputError(f"caption file {path} holds no captions")
    return bank


def place_embedding(engine: MapEngine, lon: float, lat: float, when: When | None) -> np.ndarray:
    """(1, D) unit vector of the student at a place and time (None: time unknown)."""
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise InputError(f"lon/lat out of range: {lon}, {lat}")
    lon_a, lat_a = np.array([lon], float), np.array([lat], float)
    patches = engine.embedder.imagery.patches(lon_a, lat_a)
    local = local_times(when, lon_a) if when is not None else None
    return engine.embedder.samples(patches, engine.embedder.metadata(lon_a, lat_a, local))


def rank_captions(
    engine: MapEngine, lon: float, lat: float, when: When | None = None,
    bank: list[str] | None = None, k: int = 5,
) -> list[dict]:  # fmt: skip
    """The ``k`` best captions, best first: dicts of rank, caption, score."""
    if k < 1:
        raise InputError("k must be at least 1")
    bank = list(bank or BUILTIN_CAPTIONS)
    s = place_embedding(engine, lon, lat, when)
    scores = cosine_scores(s, engine.embed_queries(bank)).ravel()
    order = np.argsort(-scores, kind="stable")[:k]
    return [
        {"rank": r + 1, "caption": bank[i], "score": float(scores[i])} for r, i in enumerate(order)
    ]
