"""``GET /locate?q=...``: "where was this?" for a description, on the server's model.

Replies with GeoJSON: the ranked hypotheses (probability mass, confidence radius) as
points, and the posterior over the region's cells (row-major from the north-west,
rounded) for the page to draw. Runs the ``field`` method (the server's model only; no
gallery is loaded by the server)."""

from __future__ import annotations

import threading

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from omnimap.core.errors import DataError, InputError
from omnimap.geo.bbox import BBox
from omnimap.geo.grid import LatLonGrid
from omnimap.geo.place import resolve_place
from omnimap.maps.geojson import points_collection
from omnimap.maps.locate import locate_field
from omnimap.serve import params

router = APIRouter()
DEFAULT_RESOLUTION = 1.0
MAX_CELLS = 260_000  # the world at 0.5 deg
_lock = threading.Lock()  # one posterior at a time: torch and the engine caches are shared


def _grid(bbox: str | None, region: str | None, resolution: str | None) -> LatLonGrid:
    try:
        res = float(resolution) if resolution else DEFAULT_RESOLUTION
    except ValueError:
        raise InputError(f"resolution must be a number of degrees, got {resolution[:20]!r}") from None
    if not 0.05 <= res <= 10:
        raise InputError("resolution must be between 0.05 and 10 degrees")
    box, _ = resolve_place(bbox, region) if (bbox or region) else (BBox.world(), "World")
    grid = LatLonGrid.from_bbox(box, res)
    if grid.size > MAX_CELLS:
        raise InputError(f"{grid.size:,} cells are more than /locate computes ({MAX_CELLS:,}); use a coarser resolution")
    return grid


def _locate(engine, prompt: str, when, grid: LatLonGrid) -> dict:
    with _lock:
        q = engine.embed_queries([prompt])[0]
        post = locate_field(engine, q, grid, when, prompt)
    points = [{"lon": h.lon, "lat": h.lat, "rank": h.rank, "mass": h.mass, "radius_km": h.radius_km}
              for h in post.hypotheses]  # fmt: skip
    return points_collection(
        points, ("rank", "mass", "radius_km"), method="field", query=prompt,
        posterior={"bounds": list(grid.bounds), "shape": list(grid.shape),
                   "prob": np.round(post.prob.ravel().astype(np.float64), 7).tolist()},
    )  # fmt: skip


@router.get("/locate")
async def locate(request: Request, q: str | None = None, when: str | None = None,
                 bbox: str | None = None, region: str | None = None,
                 resolution: str | None = None) -> JSONResponse:  # fmt: skip
    prompt, moment = params.prompt(q), params.when(when)
    grid = _grid(bbox, region, resolution)
    engine = getattr(request.app.state.service.scorer, "engine", None)
    if engine is None:
        raise DataError("this server's scorer has no model to locate with")
    body = await run_in_threadpool(_locate, engine, prompt, moment, grid)
    return JSONResponse(body, media_type="application/geo+json")
