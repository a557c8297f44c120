"""The where-and-when entry points the API, CLI and server share: a query of any
modality embedded by the model's teacher, then located (``maps.locate``) or timed
(``maps.when``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from omnimap.core.errors import InputError
from omnimap.datasets.atlas.sampling import HoldOut
from omnimap.datasets.gallery import (
    Gallery,
    atlas_observations,
    build_from_pairs,
    build_from_texts,
    check_coordinates,
    open_gallery,
)  # fmt: skip
from omnimap.geo.bbox import BBox
from omnimap.geo.grid import LatLonGrid
from omnimap.geo.place import area_mask, default_resolution, parse_when, resolve_area
from omnimap.geo.timefeat import When
from omnimap.maps.cells import HEAD_FILE, T1, T2, load_cell_head, save_cell_head, train_cell_head
from omnimap.maps.engine import MapEngine, clean_prompt
from omnimap.maps.locate import (
    Posterior,
    check_method,
    geoclip_head_for,
    locate_cells,
    locate_field,
    locate_geoclip,
    locate_knn,
)  # fmt: skip
from omnimap.maps.when import TimePosterior, time_posterior, verify_time
from omnimap.media.audio import read_audio
from omnimap.models.checkpoint import load_checkpoint
from omnimap.models.geoclip import GeoClip, photo_clip
from omnimap.teachers.registry import BUILTIN, get_teacher, teacher_from_config

MODALITIES = ("text", "image", "audio")
# The best measured on the atlas hold-out (docs/where-and-when.md): without a gallery the
# field; with one, on the current descriptions, cells (when its head is trained), then knn.
DEFAULT_METHOD = "field"


# A query kind the default atlas cannot embed goes to the built-in model that can.
DEFAULT_MODELS = {"text": "atlas", "image": "atlas", "audio": "soundscape"}


def default_model(modality: str, model: str | None) -> str:
    """``model``, else the built-in model for queries of ``modality``."""
    return model or DEFAULT_MODELS.get(modality, "atlas")


def read_query(query, modality: str = "text"):
    """(item, label): a clean prompt, an RGB photo or a decoded ``Waveform``. Called
    before any model loads, so a bad file fails first (one line, nothing written)."""
    if modality == "text":
        text = clean_prompt(query)
        return text, text
    if modality not in MODALITIES:
        raise InputError(f"query kind must be one of {', '.join(MODALITIES)}, got {modality!r}")
    path = _query_file(query, modality)
    # empty, corrupt, silent or over-long clips are InputErrors; no sound extra a DataError
    return (read_photo(path) if modality == "image" else read_audio(path)), path.name


def _query_file(query, modality: str) -> Path:
    path = Path(query)
    if not path.is_file():
        raise InputError(f"{modality} query {path.name!r} is not a file")
    return path


def read_photo(path: Path) -> Image.Image:
    """An RGB photo; InputError when it cannot be read."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, UnidentifiedImageError):
        raise InputError(f"{path.name} is not an image this program can read") from None


def embed_read(engine: MapEngine, item, modality: str) -> np.ndarray:
    """(D,) the model's teacher vector of a query from ``read_query``."""
    if modality not in engine.teacher.modalities:
        hint = " (e.g. --model soundscape)" if modality == "audio" else ""
        raise InputError(
            f"model {engine.name!r} has a teacher of {', '.join(engine.teacher.modalities)}; "
            f"{modality} queries need a model whose teacher embeds {modality}{hint}"
        )
    return engine.embed_queries([item], modality)[0]


def embed_query(engine: MapEngine, query, modality: str = "text") -> tuple[np.ndarray, str]:
    """(D,) teacher vector of a text, a photo file or an audio file, and a label for it."""
    item, label = read_query(query, modality)
    return embed_read(engine, item, modality), label


def parse_at(at: str | tuple) -> tuple[float, float]:
    """LON,LAT from text or a pair; InputError when malformed or out of range."""
    try:
        lon, lat = (float(v) for v in (at.split(",") if isinstance(at, str) else at))
    except (TypeError, ValueError):
        raise InputError(f"--at must be LON,LAT in degrees, got {at!r}") from None
    check_coordinates([lon], [lat])
    return lon, lat


def _grid(bbox, region, resolution: float | None) -> tuple[LatLonGrid, np.ndarray | None]:
    """The grid of a place and the mask of its cells inside a country or continent."""
    area = resolve_area(bbox, region)
    grid = LatLonGrid.from_bbox(area.bbox, resolution or default_resolution(area.bbox))
    return grid, area_mask(area, grid)


def locate(
    query, modality: str = "text", *, when: str | When | None = None,
    bbox: BBox | str | tuple | None = None, region: str | None = None,
    resolution: float | None = None, method: str | None = None,
    gallery: str | Path | Gallery | None = None, model: str | None = None,
    engine: MapEngine | None = None, clip: str | Path | None = None,
) -> Posterior:  # fmt: skip
    """Where was this observed: the posterior over a region's cells and ranked hypotheses.

    ``method="geoclip"`` on a photo is GeoCLIP's own path (``clip``: the CLIP ViT-L/14
    to take its image features, default the hub's; no model or gallery involved); on a
    description, a linear head from the gallery's teacher into GeoCLIP's space."""
    moment = parse_when(when)
    grid, inside = _grid(bbox, region, resolution)
    if method == "geoclip" and modality == "image":
        return locate_photo_geoclip(query, grid, clip)
    if clip is not None:
        raise InputError("--clip is used only by --method geoclip on a photo (--image)")
    if method is None and gallery is not None:
        g0 = gallery if isinstance(gallery, Gallery) else open_gallery(gallery)
        method = "cells" if (g0.path / HEAD_FILE).is_file() else "knn"
    method = check_method(method or DEFAULT_METHOD)
    if method in ("knn", "cells", "geoclip") and gallery is None:
        raise InputError(f"--method {method} needs a gallery (--gallery G; omnimap gallery build)")
    item, label = read_query(query, modality)  # a bad file fails before the model loads
    engine = engine or MapEngine(default_model(modality, model))
    g = None
    if gallery is not None:
        g = gallery if isinstance(gallery, Gallery) else open_gallery(gallery)
        g.check_teacher(engine.teacher)
        if method == "cells":
            load_cell_head(g)  # a missing head fails before the query is embedded
    q = embed_read(engine, item, modality)
    if method == "field":
        return locate_field(engine, q, grid, moment, label, inside=inside)
    if method == "knn":
        return locate_knn(g, q, grid, moment, label, engine.name)
    if method == "cells":
        return locate_cells(load_cell_head(g), q, grid, label, engine.name)
    geoclip = GeoClip.load()
    return locate_geoclip(geoclip, geoclip_head_for(g, geoclip), q, grid, label, engine.name)


def locate_photo_geoclip(query, grid: LatLonGrid, clip: str | Path | None = None) -> Posterior:
    """GeoCLIP's photo path: CLIP image features, its image head, its 100k GPS gallery."""
    path = _query_file(query, "image")
    photo = read_photo(path)
    geoclip = GeoClip.load()  # a missing package fails before CLIP loads
    teacher = photo_clip(clip)
    z = geoclip.embed_photos([photo], teacher)
    label = Path(teacher.name).name if teacher.is_local else teacher.name
    return locate_geoclip(geoclip, None, z, grid, path.name, f"GeoCLIP + {label}")


def when_posterior(query, at, modality: str = "text", model: str | None = None,
                   engine: MapEngine | None = None, year: int = 2020) -> TimePosterior:  # fmt: skip
    """The posterior over local solar hours and months (a soundscape model's: and BirdNET
    weeks) of a query at one place."""
    lon, lat = parse_at(at)
    item, label = read_query(query, modality)
    engine = engine or MapEngine(default_model(modality, model))
    return time_posterior(engine, embed_read(engine, item, modality), lon, lat, label, year)


def verify_timestamp(query, at, when: str | When, modality: str = "text", model: str | None = None,
                     engine: MapEngine | None = None) -> dict:  # fmt: skip
    lon, lat = parse_at(at)
    moment = parse_when(when)
    item, _ = read_query(query, modality)
    engine = engine or MapEngine(default_model(modality, model))
    return verify_time(engine, embed_read(engine, item, modality), lon, lat, moment)


def build_gallery(out: str | Path, *, pairs: str | Path | None = None, atlas_samples: int | None = None,
                  model: str | None = None, teacher: str | None = None,
                  seed: int = 20_241_109) -> Path:  # fmt: skip
    """A gallery of the photos of a pairs table (CLIP by default) or of atlas descriptions
    sampled outside the model's spatial hold-out (the model's teacher by default)."""
    if (pairs is None) == (atlas_samples is None):
        raise InputError("give exactly one of pairs or atlas_samples")
    if pairs is not None:
        # A hub name or model folder for photos is a CLIP; built-in names keep their kind.
        name = teacher or "clip-vit-b32"
        t = get_teacher(name, None if name in BUILTIN else "clip")
        return build_from_pairs(out, pairs, t)
    loaded = load_checkpoint(model or "atlas")
    t = get_teacher(teacher) if teacher else teacher_from_config(loaded.config["teacher"])
    holdout = HoldOut.from_json(loaded.config["holdout"])
    obs = atlas_observations(
        int(atlas_samples), seed, accept=lambda lon, lat: ~holdout.near(lon, lat)
    )
    return build_from_texts(out, obs, t)


def train_cells(gallery: str | Path, t1: int = T1, t2: int = T2) -> Path:
    """Train the PlaNet cell head of a gallery and save it beside the gallery."""
    g = open_gallery(gallery)
    return save_cell_head(g, train_cell_head(g, t1, t2))
