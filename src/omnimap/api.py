"""The public Python API; the CLI and the server are thin layers over it."""

from __future__ import annotations

import math
from functools import cache

from omnimap.errors import InputError
from omnimap.geo.bbox import BBox
from omnimap.geo.grid import LatLonGrid
from omnimap.geo.regions import resolve_region
from omnimap.geo.timefeat import When
from omnimap.maps.engine import MapEngine, clean_prompt
from omnimap.maps.result import MapResult

# Default resolutions, finest first; the first giving at most ~1M cells is used.
RESOLUTION_LADDER = (0.05, 0.1, 0.25, 0.5, 1.0)
DEFAULT_TARGET_CELLS = 1_100_000


@cache
def get_engine(model: str = "atlas") -> MapEngine:
    """One engine per model per process (models and caches load once)."""
    return MapEngine(model)


def default_resolution(bbox: BBox) -> float:
    """The finest ladder step that keeps the map near a megapixel (the whole world:
    0.25 deg; the Alps: 0.05 deg). The atlas imagery is ~0.067 deg per pixel, so finer
    than 0.05 deg adds cells but no detail."""
    for res in RESOLUTION_LADDER:
        if math.ceil(bbox.width / res) * math.ceil(bbox.height / res) <= DEFAULT_TARGET_CELLS:
            return res
    return RESOLUTION_LADDER[-1]


def resolve_place(
    bbox: BBox | str | tuple | None = None, region: str | None = None
) -> tuple[BBox, str]:
    """(bbox, label) from a bbox, a region name, or neither (the whole world)."""
    if bbox is not None and region is not None:
        raise InputError("give either a bbox or a region, not both")
    if region is not None:
        r = resolve_region(region)
        return r.bbox, r.name
    if bbox is None:
        return BBox.world(), "World"
    if isinstance(bbox, str):
        box = BBox.parse(bbox)
    elif isinstance(bbox, BBox):
        box = bbox
    else:
        try:
            box = BBox(*(float(v) for v in bbox))
        except (TypeError, ValueError):
            raise InputError(f"bbox must be W,S,E,N, got {bbox!r}") from None
    return box, str(box)


def parse_when(when: str | When | None) -> When | None:
    if when is None or isinstance(when, When):
        return when
    return When.parse(when)


def zero_shot_map(
    prompt: str, bbox: BBox | str | tuple | None = None, region: str | None = None,
    resolution: float | None = None, when: str | When | None = None, model: str = "atlas",
) -> MapResult:  # fmt: skip
    """Map a free-text prompt over a region at a time.

    ``when`` without a UTC offset is local solar time at every cell; with an offset it
    is one instant. No ``when`` gives the time-free map. The result knows its array,
    transform and CRS and writes GeoTIFF (COG), PNG and GeoJSON: ``result.write("x.tif")``.
    """
    prompt = clean_prompt(prompt)  # cheap checks before loading any model
    box, label = resolve_place(bbox, region)
    moment = parse_when(when)
    grid = LatLonGrid.from_bbox(
        box, resolution if resolution is not None else default_resolution(box)
    )
    engine = get_engine(model)
    scores = engine.score(prompt, grid, moment)
    return MapResult(
        scores=scores,
        grid=grid,
        prompt=prompt,
        when=moment,
        place=label,
        model=engine.model.name,
    )
