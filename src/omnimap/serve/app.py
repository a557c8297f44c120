"""The HTTP layer: routes, error replies, limits. The work is in :mod:`.service`.

Every bad request gets a 4xx with a JSON ``{"detail": message}``. Handlers check the
tile LRU on the event loop (a hit never waits for a thread); everything that computes
runs in the thread pool, and model calls queue on the service's lock.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from omnimap.core.errors import DataError, InputError
from omnimap.maps.engine import MAX_QUERY_CHARS
from omnimap.serve import openapi, params
from omnimap.serve.assets import MEDIA_TYPES, STATIC_DIR, load_assets, missing_page
from omnimap.serve.coastlines import coastlines_geojson
from omnimap.serve.locate_routes import router as locate_router
from omnimap.serve.openapi import (
    BAD_REQUEST,
    NOT_MODIFIED,
    UNAVAILABLE,
    AssetName,
    BBoxParam,
    Prompt,
    RegionParam,
    Resolution,
    TileIndex,
    TopK,
    When,
    Zoom,
    binary,
    geojson,
)  # fmt: skip
from omnimap.serve.service import (
    DEFAULT_CACHE_MB,
    Busy,
    EngineScorer,
    MapService,
    Scorer,
    cache_budget,
)  # fmt: skip

log = logging.getLogger(__name__)

# A prompt of 1,000 four-byte characters is 12 kB percent-encoded.
MAX_QUERY_BYTES = 16384
MAX_PATH_BYTES = 512


class RequestLimits:
    """Refuses oversized URLs before routing and marks every reply ``nosniff``."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if (
            len(scope.get("query_string", b"")) > MAX_QUERY_BYTES
            or len(scope.get("raw_path") or b"") > MAX_PATH_BYTES
        ):
            detail = (
                f"URL too long: the limits are {MAX_PATH_BYTES} bytes of path "
                f"and {MAX_QUERY_BYTES} bytes of query"
            )
            await JSONResponse({"detail": detail}, status_code=414)(scope, receive, send)
            return

        async def send_nosniff(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-content-type-options", b"nosniff"))
            await send(message)

        await self.app(scope, receive, send_nosniff)


def _etag_matches(request: Request, etag: str) -> bool:
    header = request.headers.get("if-none-match", "")
    return any(t.strip().removeprefix("W/") == etag for t in header.split(","))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "map"


def _page_policy(basemap_origin: str | None) -> str:
    """Content-Security-Policy of the page: nothing but this server (and the
    basemap's host when one is configured) can be fetched."""
    images = "'self' data:" + (f" {basemap_origin}" if basemap_origin else "")
    return (
        "default-src 'self'; "
        f"img-src {images}; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    )


def create_app(
    model: str | None = None,
    *,
    field: str | None = None,
    scorer: Scorer | None = None,
    basemap_url: str | None = None,
    static_dir: Path = STATIC_DIR,
    cache_mb: int = DEFAULT_CACHE_MB,
) -> FastAPI:
    """The server for one model, or one embedding field (and its model), fixed here.

    ``scorer`` replaces what ``model``/``field`` would open (tests pass their own).
    ``basemap_url`` (``https://host/{z}/{x}/{y}.png``) adds an online basemap under
    the scores; without it the page uses only this server.
    """
    basemap = params.basemap_url(basemap_url) if basemap_url else None
    service = MapService(scorer or EngineScorer(model, field, cache_mb),
                         cache_budget(cache_mb)["tiles"])  # fmt: skip
    assets = load_assets(static_dir)
    policy = _page_policy(basemap[1] if basemap else None)

    # The interactive docs load their scripts from a CDN, against this server's rule.
    app = FastAPI(title="omnimap", docs_url=None, redoc_url=None)
    app.state.service = service
    app.add_middleware(RequestLimits)
    openapi.describe(app)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": openapi.validation_message(exc)}, status_code=400)

    @app.exception_handler(InputError)
    async def input_error(_request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(DataError)
    async def data_error(_request: Request, exc: DataError) -> JSONResponse:
        log.error("data error: %s", exc)
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(Busy)
    async def busy(_request: Request, exc: Busy) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)}
        return JSONResponse({"detail": str(exc)}, status_code=503, headers=headers)

    page_responses = {200: {"description": "The web map."},
                      503: {"description": "This installation has no page assets."}}  # fmt: skip

    @app.get("/", response_class=HTMLResponse, responses=page_responses)
    async def page() -> Response:
        index = assets.get("index.html")
        if index is None:
            return HTMLResponse(missing_page(), status_code=503)
        headers = {"Content-Security-Policy": policy, "Cache-Control": "no-cache"}
        return Response(index.body, media_type=index.media_type, headers=headers)

    @app.head("/", response_class=HTMLResponse, responses=page_responses)
    async def page_head() -> Response:
        return await page()

    @app.get("/static/{name}", response_class=Response, responses={
        **binary(sorted({t.split(";")[0] for t in MEDIA_TYPES.values()}), "A built asset of the page."),
        **NOT_MODIFIED,
        404: openapi._error("No such asset."), **BAD_REQUEST,
    })  # fmt: skip
    async def static(name: AssetName, request: Request) -> Response:
        asset = assets.get(name)
        if asset is None:
            return JSONResponse({"detail": f"no asset {name[:80]!r}"}, status_code=404)
        headers = {"ETag": asset.etag, "Cache-Control": "no-cache"}
        if _etag_matches(request, asset.etag):
            return Response(status_code=304, headers=headers)
        return Response(asset.body, media_type=asset.media_type, headers=headers)

    @app.get("/config.json")
    async def config() -> dict:
        return {
            "model": service.scorer.name,
            "basemap_url": basemap[0] if basemap else None,
            "max_zoom": params.MAX_ZOOM,
            "max_prompt_chars": MAX_QUERY_CHARS,
        }

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": service.scorer.name, "field": field, **service.stats()}

    @app.get("/tiles/{z}/{x}/{y}.png", response_class=Response, responses={
        **binary("image/png", "A 256 x 256 RGBA tile (transparent: nodata or outside the place)."),
        **NOT_MODIFIED, **BAD_REQUEST, **UNAVAILABLE,
    })  # fmt: skip
    async def tile(
        z: Zoom, x: TileIndex, y: TileIndex, request: Request, q: Prompt, when: When = None,
        bbox: BBoxParam = None, region: RegionParam = None,
    ) -> Response:  # fmt: skip
        zoom, column, row = params.tile(z, x, y)
        prompt, moment = params.prompt(q), params.when(when)
        place = await run_in_threadpool(params.area, bbox, region)  # a shape loads once
        key = service.tile_key(prompt, moment, zoom, column, row, place)
        # no-cache: browsers revalidate, and the ETag (request + model) answers
        # without rendering; a restarted server with another model never matches.
        headers = {"ETag": service.etag(key), "Cache-Control": "no-cache"}
        if _etag_matches(request, headers["ETag"]):
            return Response(status_code=304, headers=headers)
        body = service.cached_tile(key)
        if body is None:
            body = await run_in_threadpool(service.tile, prompt, moment, zoom, column, row, place)
        return Response(body, media_type="image/png", headers=headers)

    @app.get("/legend", responses={**BAD_REQUEST, **UNAVAILABLE})
    async def legend(
        q: Prompt, when: When = None, bbox: BBoxParam = None, region: RegionParam = None
    ) -> dict:
        prompt, moment = params.prompt(q), params.when(when)
        place = await run_in_threadpool(params.area, bbox, region)
        return await run_in_threadpool(service.legend, prompt, moment, place)

    @app.get("/search", response_class=JSONResponse, responses={
        **geojson("The top places (local maxima), best first, as points."),
        **BAD_REQUEST, **UNAVAILABLE,
    })  # fmt: skip
    async def search(
        q: Prompt, when: When = None, k: TopK = None, bbox: BBoxParam = None,
        region: RegionParam = None,
    ):  # fmt: skip
        prompt, moment, top = params.prompt(q), params.when(when), params.top_k(k)
        place = await run_in_threadpool(params.area, bbox, region)
        result = await run_in_threadpool(service.search, prompt, moment, top, place)
        return JSONResponse(result, media_type="application/geo+json")

    @app.get("/map.tif", response_class=Response, responses={
        **binary("image/tiff", "A Cloud-Optimized GeoTIFF of the map (float32, NaN nodata)."),
        **BAD_REQUEST, **UNAVAILABLE,
    })  # fmt: skip
    async def map_tif(
        q: Prompt, bbox: BBoxParam = None, region: RegionParam = None, when: When = None,
        resolution: Resolution = None,
    ) -> Response:
        prompt, moment = params.prompt(q), params.when(when)
        place = await run_in_threadpool(params.area, bbox, region)
        grid = params.tif_grid(place, resolution, service.scorer.lattice)
        body = await run_in_threadpool(service.geotiff, prompt, moment, grid, place)
        disposition = f'attachment; filename="omnimap-{_slug(prompt)}.tif"'
        return Response(body, media_type="image/tiff", headers={"Content-Disposition": disposition})

    @app.get("/coastlines.geojson", response_class=Response,
             responses=geojson("Land outlines for the page."))  # fmt: skip
    async def coastlines(request: Request) -> Response:
        raw, packed = await run_in_threadpool(coastlines_geojson)
        headers = {"Cache-Control": "public, max-age=86400", "Vary": "Accept-Encoding"}
        if "gzip" in request.headers.get("accept-encoding", ""):
            headers["Content-Encoding"] = "gzip"
            return Response(packed, media_type="application/geo+json", headers=headers)
        return Response(raw, media_type="application/geo+json", headers=headers)

    app.include_router(locate_router)  # GET /locate (serve/locate_routes.py)
    return app
