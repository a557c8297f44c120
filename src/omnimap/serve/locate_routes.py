"""``GET /locate?q=...``: "where was this?" for a description, on the server's model.

Replies with GeoJSON: the ranked hypotheses (probability mass, confidence radius) as
points, and the posterior over the region's cells (row-major from the north-west,
rounded) for the page to draw. Runs the ``field`` method on the server's own scores
(no gallery is loaded by the server)."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from omnimap.core.errors import InputError
from omnimap.geo.grid import LatLonGrid
from omnimap.geo.place import area_mask
from omnimap.geo.regions import Region
from omnimap.maps.geojson import points_collection
from omnimap.maps.locate import field_temperature, posterior_from_scores
from omnimap.serve import params
from omnimap.serve.openapi import (
    BAD_REQUEST,
    UNAVAILABLE,
    BBoxParam,
    Prompt,
    RegionParam,
    Resolution,
    When,
    geojson,
)  # fmt: skip
from omnimap.serve.service import MapService

router = APIRouter()
DEFAULT_RESOLUTION = 1.0
MAX_CELLS = 260_000  # the world at 0.5 deg


def _grid(place: Region, resolution: str | None, lattice: float | None) -> LatLonGrid:
    try:
        res = float(resolution) if resolution else DEFAULT_RESOLUTION
    except ValueError:
        raise InputError(f"resolution must be a number of degrees, got {resolution[:20]!r}") from None
    if not 0.05 <= res <= 10:
        raise InputError("resolution must be between 0.05 and 10 degrees")
    if lattice is not None:  # a field-backed server: whole multiples of the field's cells
        res = lattice * max(1, round(res / lattice))
    grid = LatLonGrid.from_bbox(place.bbox, res, check_size=False)
    if grid.size > MAX_CELLS:
        raise InputError(f"{grid.size:,} cells are more than /locate computes ({MAX_CELLS:,}); use a coarser resolution")
    return grid


def _locate(service: MapService, prompt: str, when, grid: LatLonGrid, place: Region) -> dict:
    # The server's own scoring path (model lock, any scorer); the model's fitted
    # temperature where the scorer has a model.
    scores = service.run_model(lambda: service.scorer.score(prompt, grid, when))
    temperature = field_temperature(getattr(service.scorer, "engine", None), when)
    post = posterior_from_scores(grid, scores, temperature, when, prompt, service.scorer.name,
                                 inside=area_mask(place, grid))  # fmt: skip
    points = [{"lon": h.lon, "lat": h.lat, "rank": h.rank, "mass": h.mass, "radius_km": h.radius_km}
              for h in post.hypotheses]  # fmt: skip
    return points_collection(
        points, ("rank", "mass", "radius_km"), method="field", query=prompt,
        posterior={"bounds": list(grid.bounds), "shape": list(grid.shape),
                   "prob": np.round(post.prob.ravel().astype(np.float64), 7).tolist()},
    )  # fmt: skip


@router.get("/locate", response_class=JSONResponse, responses={
    **geojson("Ranked hypotheses (probability mass, confidence radius) as points, and the "
              "posterior over the place's cells."),
    **BAD_REQUEST, **UNAVAILABLE,
})  # fmt: skip
async def locate(request: Request, q: Prompt, when: When = None, bbox: BBoxParam = None,
                 region: RegionParam = None, resolution: Resolution = None) -> JSONResponse:  # fmt: skip
    prompt, moment = params.prompt(q), params.when(when)
    place = await run_in_threadpool(params.area, bbox, region)
    service: MapService = request.app.state.service
    grid = _grid(place, resolution, service.scorer.lattice)
    body = await run_in_threadpool(_locate, service, prompt, moment, grid, place)
    return JSONResponse(body, media_type="application/geo+json")
