"""Captions for a place and a time: rank a caption bank by the student's embedding.

The student embeds (overhead patch, lon, lat, local time); CLIP's text tower embeds
the captions into the same space; the best cosine similarities are the captions.
The time enters through the dynamic encoder, so the same place can read "a street at
night" at 23:00 and "a sunny street" at noon.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from omnimap.errors import InputError
from omnimap.geo.timefeat import When, local_times, metadata_features
from omnimap.models.checkpoint import LoadedModel, load_checkpoint
from omnimap.sat2cap.teacher import clip_text_encoder

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
    bank = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not bank:
        raise InputError(f"caption file {path} holds no captions")
    return bank


@torch.inference_mode()
def student_embedding(
    model: LoadedModel, lon: float, lat: float, when: When | None, imagery
) -> np.ndarray:
    """(D,) unit vector for a place at a time (None: time unknown)."""
    lon_a, lat_a = np.array([lon], float), np.array([lat], float)
    patch = torch.from_numpy(imagery.patches(lon_a, lat_a))
    local = local_times(when, lon_a) if when is not None else None
    meta = torch.from_numpy(metadata_features(lon_a, lat_a, local))
    return model.student(patch, meta)[0].numpy()


def rank_captions(
    model: str | Path | LoadedModel, lon: float, lat: float, when: str | When | None = None,
    bank: list[str] | None = None, k: int = 5, imagery=None,
) -> list[dict]:  # fmt: skip
    """The ``k`` best captions, best first: dicts of caption, score, rank. ``imagery``
    defaults to the model's own source."""
    from omnimap.sources import source_from_config

    loaded = model if isinstance(model, LoadedModel) else load_checkpoint(model)
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise InputError(f"lon/lat out of range: {lon}, {lat}")
    if k < 1:
        raise InputError("k must be at least 1")
    moment = When.parse(when) if isinstance(when, str) else when
    source = imagery if imagery is not None else source_from_config(loaded.config["imagery"])
    bank = list(bank or BUILTIN_CAPTIONS)
    s = student_embedding(loaded, lon, lat, moment, source)
    texts = clip_text_encoder(str(loaded.config["teacher"]["name"])).embed(bank)
    scores = texts @ s
    order = np.argsort(-scores, kind="stable")[:k]
    return [
        {"rank": r + 1, "caption": bank[i], "score": float(scores[i])} for r, i in enumerate(order)
    ]
