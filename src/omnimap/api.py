"""The public Python API; the CLI and the server are thin layers over it.

>>> import omnimap
>>> omnimap.zero_shot_map("snow-covered mountains", region="Alps", when="2024-01-15T09:00")
>>> omnimap.search("a busy harbour at night", field="world.field", k=20)
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np

from omnimap.core.errors import InputError
from omnimap.datasets.crossview import open_pairs
from omnimap.datasets.gallery import open_gallery
from omnimap.fields.build import BuildReport, build_field
from omnimap.fields.store import Field
from omnimap.fields.window import window_for
from omnimap.geo.bbox import BBox
from omnimap.geo.grid import LatLonGrid, max_cells
from omnimap.geo.place import default_resolution, parse_when, resolve_area, resolve_place
from omnimap.geo.timefeat import When, local_times
from omnimap.maps.captions import rank_captions
from omnimap.maps.classes import (
    ClassMapResult,
    check_classes,
    class_probabilities,
    read_class_set,
    temperature_of,
)  # fmt: skip
from omnimap.maps.engine import MapEngine, clean_prompt
from omnimap.maps.fusion import observed_scores
from omnimap.maps.result import MapResult
from omnimap.maps.search import SearchResult, search_cells, search_samples
from omnimap.maps.search import write_contact_sheet as write_search_sheet
from omnimap.maps.where import build_gallery, locate, train_cells
from omnimap.maps.where import verify_timestamp as verify
from omnimap.maps.where import when_posterior as when
from omnimap.models.checkpoint import builtin_models, read_config
from omnimap.teachers.registry import list_teachers

__all__ = ["BuildReport", "ClassMapResult", "MapEngine", "MapResult", "SearchResult", "build_field", "captions", "class_map",
           "get_engine", "list_models", "search", "search_pairs", "write_contact_sheet",
           "zero_shot_map"]  # fmt: skip
__all__ += ["build_gallery", "locate", "observed_map", "train_cells", "verify", "when"]  # where and when (maps/where.py)


@cache
def get_engine(model: str | None = "atlas", field: str | None = None) -> MapEngine:
    """One engine per model (or field) per process: models and caches load once."""
    return MapEngine(model, field=field)


def _engine(model: str | None, field: str | Path | Field | None) -> MapEngine:
    """The engine of a model (default: the atlas), or of a field (default: its model)."""
    if isinstance(field, Field):
        return MapEngine(model, field=field)
    if field is None:
        return get_engine(model or "atlas")
    return get_engine(model, str(field))


def map_grid(
    engine: MapEngine, bbox: BBox | str | tuple | None, region: str | None,
    resolution: float | None,
) -> tuple[LatLonGrid, str, np.ndarray | None]:  # fmt: skip
    """The grid, place label and mask of a map: a bbox or region (neither: the world,
    or the whole field), at ``resolution`` (default: about a megapixel, or the
    field's). The mask marks the cells inside a country or continent (None: all)."""
    field = engine.field
    area = None
    if field is not None and bbox is None and region is None:
        grid, label = field.grid, "field extent"
        if resolution is not None:
            grid = _whole_blocks(field.grid, resolution)
    else:
        area = resolve_area(bbox, region)
        box, label = area.bbox, area.name
        if resolution is None:
            resolution = field.grid.resolution if field is not None else default_resolution(box)
        grid = LatLonGrid.from_bbox(box, resolution, check_size=False)
    if field is not None and window_for(field, grid) is None:
        raise InputError(
            f"--resolution must be a whole multiple of the field's {field.grid.resolution:g} deg"
        )
    if grid.size > max_cells():
        raise InputError(
            f"grid of {grid.nrows} x {grid.ncols} = {grid.size:,} cells is more than a map may "
            f"have ({max_cells():,}); use a coarser --resolution or a smaller region"
        )
    return grid, label, area.mask(grid) if area is not None else None


def _whole_blocks(fine: LatLonGrid, resolution: float) -> LatLonGrid:
    """The grid of whole k x k blocks of a field's cells at ``resolution`` = k x its own."""
    k = round(resolution / fine.resolution)
    if k < 1 or abs(resolution - k * fine.resolution) > 1e-6 * resolution:
        raise InputError(
            f"--resolution must be a whole multiple of the field's {fine.resolution:g} deg"
        )
    col0, row0 = -(-fine.col0 // k), -(-fine.row0 // k)
    ncols = (fine.col0 + fine.ncols) // k - col0
    nrows = (fine.row0 + fine.nrows) // k - row0
    if ncols < 1 or nrows < 1:
        raise InputError(f"the field is smaller than one {resolution:g}-degree cell")
    return LatLonGrid(k * fine.resolution, col0, row0, ncols, nrows)


def zero_shot_map(
    prompt: str, bbox: BBox | str | tuple | None = None, region: str | None = None,
    resolution: float | None = None, when: str | When | None = None, model: str | None = None,
    field: str | Path | None = None, uncertainty: bool = False,
) -> MapResult:  # fmt: skip
    """Map a free-text prompt over a region at a time.

    ``when`` without a UTC offset is local solar time at every cell; with an offset it
    is one instant. No ``when`` gives the time-free map. With ``field`` (an embedding
    field) the time-free part of every cell is read from it. The result knows its
    array, transform and CRS and writes GeoTIFF (COG), PNG, GeoJSON and a STAC item:
    ``result.write("x.tif")``. ``uncertainty``: a probabilistic model's predicted
    variance per cell rides along (``result.uncertainty``, band 2 of the GeoTIFF).
    """
    prompt = clean_prompt(prompt)  # cheap checks before loading any model
    moment = parse_when(when)
    if field is None:
        box, _ = resolve_place(bbox, region)  # bad places fail before the model loads
        LatLonGrid.from_bbox(box, resolution or default_resolution(box))
    engine = _engine(model, field)
    grid, label, inside = map_grid(engine, bbox, region, resolution)
    spread = engine.uncertainty(grid, moment) if uncertainty else None
    scores = engine.score(prompt, grid, moment)
    if inside is not None:
        scores[~inside] = np.nan  # outside the country or continent: nodata
    return MapResult(scores=scores, grid=grid, prompt=prompt, when=moment, place=label,
                     model=engine.name, uncertainty=spread)  # fmt: skip


def observed_map(
    prompt: str, observations: str | Path, bbox: BBox | str | tuple | None = None,
    region: str | None = None, resolution: float | None = None, when: str | When | None = None,
    model: str | None = None, field: str | Path | None = None,
) -> MapResult:  # fmt: skip
    """A map whose cells lean on the gallery observations near them (maps/fusion.py);
    cells with none nearby keep the student's embedding."""
    prompt, moment = clean_prompt(prompt), parse_when(when)
    gallery = open_gallery(observations)
    engine = _engine(model, field)
    grid, label, inside = map_grid(engine, bbox, region, resolution)
    scores = observed_scores(engine, engine.embed_prompts([prompt]), grid, moment, gallery)[0]
    if inside is not None:
        scores[~inside] = np.nan  # outside the country or continent: nodata
    return MapResult(scores=scores, grid=grid, prompt=prompt, when=moment, place=label,
                     model=engine.name)  # fmt: skip


def class_map(
    classes: str | Path | Sequence[str], bbox: BBox | str | tuple | None = None,
    region: str | None = None, resolution: float | None = None, when: str | When | None = None,
    model: str | None = None, field: str | Path | None = None,
) -> ClassMapResult:  # fmt: skip
    """P(class | place, time) for a set of classes: a built-in set name ("transient",
    "scenes", "igbp"), a text file of one class per line, or a list of class names.
    ``result.write("x.tif")`` writes the probabilities, the most likely class and a PNG."""
    if isinstance(classes, str | Path):
        class_set = read_class_set(classes)  # bad sets fail before the model loads
    else:
        class_set = check_classes(list(classes), "classes", "class list")
    moment = parse_when(when)
    if field is None:
        box, _ = resolve_place(bbox, region)
        LatLonGrid.from_bbox(box, resolution or default_resolution(box))
    engine = _engine(model, field)
    grid, label, inside = map_grid(engine, bbox, region, resolution)
    probabilities = class_probabilities(engine, class_set, grid, moment)
    if inside is not None:
        probabilities[:, ~inside] = np.nan  # outside the country or continent: nodata
    return ClassMapResult(probabilities=probabilities, grid=grid, classes=class_set, when=moment,
                          place=label, model=engine.name, temperature=temperature_of(engine))  # fmt: skip


def search(
    prompt: str, *, field: str | Path | Field | None = None, bbox: BBox | str | tuple | None = None,
    region: str | None = None, resolution: float | None = None, when: str | When | None = None,
    k: int = 20, method: str = "exact", nprobe: int | None = None, model: str | None = None,
) -> SearchResult:  # fmt: skip
    """The ``k`` best cells for a prompt at a time: of a field (all of it, or a region
    of it), or of a region mapped directly."""
    prompt = clean_prompt(prompt)
    moment = parse_when(when)
    engine = _engine(model, field)
    whole_field = (
        engine.field is not None and bbox is None and region is None and resolution is None
    )
    # A search streams, so a whole field may be larger than a map may be.
    if whole_field:
        grid, inside = engine.field.grid, None
    else:
        grid, _, inside = map_grid(engine, bbox, region, resolution)
    return search_cells(engine, prompt, grid, when=moment, k=k, method=method, nprobe=nprobe,
                        mask=inside)  # fmt: skip


def captions(
    lon: float, lat: float, when: str | When | None = None, bank: list[str] | None = None,
    k: int = 5, model: str = "atlas",
) -> list[dict]:  # fmt: skip
    """The ``k`` captions of a bank (default: built-in) that best describe a place at a
    time, by the model's embedding there."""
    return rank_captions(get_engine(model), lon, lat, parse_when(when), bank, k)


def search_pairs(
    prompt: str, pairs: str | Path, *, model: str = "atlas", when: str | When | None = None,
    k: int = 16,
) -> tuple[SearchResult, np.ndarray]:  # fmt: skip
    """The ``k`` samples of a pairs table or shard folder that best match a prompt, each
    at its own time unless ``when`` is given; and the hits' overhead patches."""
    prompt = clean_prompt(prompt)
    moment = parse_when(when)
    engine = get_engine(model)
    data = open_pairs(pairs)
    meta = data.meta if moment is None else engine.embedder.metadata(
        data.lon, data.lat, local_times(moment, data.lon))  # fmt: skip
    patches = data.patches(np.arange(len(data)))
    vectors = engine.embedder.samples(patches, meta)
    result = search_samples(engine, prompt, vectors, data.lon, data.lat,
                            [str(i) for i in data.ids], k=k, when=moment, source=str(pairs))  # fmt: skip
    return result, patches[[h.index for h in result.hits]]


def write_contact_sheet(
    result: SearchResult, path: str | Path, patches: np.ndarray | None = None, *,
    model: str | None = None, field: str | Path | None = None,
) -> Path:  # fmt: skip
    """A PNG of the hits' overhead patches (cut from the model's imagery if not given)."""
    if patches is None:
        imagery = _engine(model, field).embedder.imagery
        patches = imagery.read([h.lon for h in result.hits], [h.lat for h in result.hits]).patches
    return write_search_sheet(result, patches, path)


def list_models() -> dict:
    """The built-in models and teachers, as ``omnimap models`` prints them."""
    models = []
    for name in builtin_models():
        config = read_config(name)
        models.append({"name": name, "dim": int(config["dim"]),
                       "teacher": str(config["teacher"]["name"]),
                       "overhead": str(config["overhead"]["type"]),
                       "description": str(config.get("description", ""))})  # fmt: skip
    teachers = [dict(e.__dict__) for e in list_teachers()]
    return {"models": models, "teachers": teachers}
