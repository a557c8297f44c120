"""XYZ (slippy map) tile servers: ``https://host/{z}/{x}/{y}.png`` in Web Mercator."""

from __future__ import annotations

import io
import math
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import morecantile
import numpy as np
from PIL import Image
from rasterio.transform import Affine

from omnimap.core.digest import text_digest
from omnimap.core.errors import InputError
from omnimap.core.store import ArrayStore
from omnimap.sources.base import GroundPatchSource
from omnimap.sources.http import FetchError, HttpFetcher
from omnimap.sources.warp import PatchFailure, PatchGeometry, warp_patch

_TMS = morecantile.tms.get("WebMercatorQuad")
EQUATOR_M = 2 * math.pi * 6378137.0
MAX_LAT = 85.0511287798  # Web Mercator's square world ends here
MEMORY_TILES = 64  # decoded tiles (and tile errors) kept for nearby points


def _check_template(template: str) -> str:
    parts = urlsplit(template)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(f"tile URL must be http(s)://..., got {template!r}")
    rest = template
    for name in ("{z}", "{x}", "{y}"):
        if name not in rest:
            raise InputError(f"tile URL template needs {{z}}, {{x}} and {{y}}: {template!r}")
        rest = rest.replace(name, "")
    if "{" in rest or "}" in rest:
        raise InputError(
            f"tile URL template has placeholders other than {{z}}/{{x}}/{{y}}: {template!r}"
        )
    return template


class XyzSource(GroundPatchSource):
    """Patches mosaicked from Web Mercator tiles at the zoom whose pixels are at least
    as fine as the patch's, then warped onto the patch grid.

    Tiles go through a disk cache (``cache``, by default ``tiles`` in omnimap's cache
    folder; at most ``max_cache_bytes``); requests are rate limited per source and retried with
    backoff. A tile that cannot be had fails the points that need it. Transparent
    tile pixels count as no imagery (``min_coverage``).
    """

    kind = "xyz"

    def __init__(
        self,
        url_template: str,
        ground_size_m: float = 500.0,
        pixels: int = 224,
        *,
        attribution: str | None = None,
        tile_size: int = 256,
        max_zoom: int = 19,
        min_coverage: float = 1.0,
        requests_per_second: float = 4.0,
        timeout_s: float = 15.0,
        max_attempts: int = 4,
        backoff_s: float = 0.5,
        workers: int = 4,
        cache: str | Path | None = None,
        max_cache_bytes: int = 2 * 1024**3,
    ):
        super().__init__(ground_size_m, pixels, min_coverage)
        self.url_template = _check_template(url_template)
        if not (0 <= max_zoom <= 30 and tile_size > 0):
            raise InputError(f"bad max_zoom {max_zoom} or tile_size {tile_size}")
        self.tile_size, self.max_zoom = int(tile_size), int(max_zoom)
        self.requests_per_second = float(requests_per_second)
        host = urlsplit(url_template).netloc
        self.attribution = attribution or f"Imagery tiles from {host}"
        self.fetcher = HttpFetcher(
            requests_per_second=requests_per_second,
            timeout_s=timeout_s,
            max_attempts=max_attempts,
            backoff_s=backoff_s,
        )
        self.cache = ArrayStore("tiles", root=cache, limit=int(max_cache_bytes))
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="omnimap-tiles")
        self._memory: OrderedDict[morecantile.Tile, np.ndarray | str] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def key(self) -> str:
        template = text_digest(self.url_template, bits=64)
        return f"xyz-{template}-{self.geometry.key}-t{self.tile_size}-z{self.max_zoom}"

    def to_config(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "url": self.url_template,
            "ground_size_m": self.ground_size_m,
            "pixels": self.pixels,
            "tile_size": self.tile_size,
            "max_zoom": self.max_zoom,
            "min_coverage": self.min_coverage,
            "requests_per_second": self.requests_per_second,
            "attribution": self.attribution,
            "key": self.key,
        }

    def zoom_for(self, lat: float, geometry: PatchGeometry) -> int:
        """The coarsest zoom whose pixels are no larger than the patch's at ``lat``."""
        metres_z0 = EQUATOR_M * math.cos(math.radians(lat)) / self.tile_size
        zoom = math.ceil(math.log2(metres_z0 / geometry.metres_per_pixel) - 1e-9)
        return min(max(zoom, 0), self.max_zoom)

    def url(self, tile: morecantile.Tile) -> str:
        return (
            self.url_template.replace("{z}", str(tile.z))
            .replace("{x}", str(tile.x))
            .replace("{y}", str(tile.y))
        )

    def _fetch_tile(self, tile: morecantile.Tile) -> np.ndarray | str:
        """(tile_size, tile_size, 4) RGBA, or the reason there is none."""
        url = self.url(tile)
        cached = self.cache.read(url)
        data = None if cached is None else cached["data"].tobytes()
        fresh = data is None
        if fresh:
            try:
                data = self.fetcher.get(url)
            except FetchError as exc:
                return f"tile {tile.z}/{tile.x}/{tile.y}: {exc}"
        try:
            with Image.open(io.BytesIO(data)) as im:
                rgba = np.asarray(im.convert("RGBA"))
        except (OSError, ValueError, Image.DecompressionBombError):
            return f"tile {tile.z}/{tile.x}/{tile.y} is not a valid image"
        if rgba.shape[:2] != (self.tile_size, self.tile_size):
            return f"tile {tile.z}/{tile.x}/{tile.y} is {rgba.shape[1]}x{rgba.shape[0]} px, expected {self.tile_size}"
        if fresh:  # only tiles that decode are cached
            self.cache.put(url, {"data": np.frombuffer(data, dtype=np.uint8)})
        return rgba

    def _tile(self, tile: morecantile.Tile) -> np.ndarray | str:
        with self._lock:
            if tile in self._memory:
                self._memory.move_to_end(tile)
                return self._memory[tile]
        result = self._fetch_tile(tile)
        with self._lock:
            self._memory[tile] = result
            while len(self._memory) > MEMORY_TILES:
                self._memory.popitem(last=False)
        return result

    def _patch(self, lon: float, lat: float, size: int) -> np.ndarray:
        geometry = self.geometry.resized(size)
        west, south, east, north = geometry.footprint(lon, lat, "EPSG:4326")
        if max(abs(south), abs(north)) > MAX_LAT:
            raise PatchFailure(f"the patch reaches beyond Web Mercator's ±{MAX_LAT:.2f}° latitude")
        if west > east:
            raise PatchFailure("the patch crosses the antimeridian")
        zoom = self.zoom_for(lat, geometry)
        tiles = list(_TMS.tiles(west, south, east, north, [zoom]))
        results = list(self._pool.map(self._tile, tiles))
        for result in results:
            if isinstance(result, str):
                raise PatchFailure(result)
        x0, y0 = min(t.x for t in tiles), min(t.y for t in tiles)
        nx, ny = max(t.x for t in tiles) - x0 + 1, max(t.y for t in tiles) - y0 + 1
        ts = self.tile_size
        mosaic = np.zeros((ny * ts, nx * ts, 4), dtype=np.uint8)
        for tile, rgba in zip(tiles, results, strict=True):
            r, c = (tile.y - y0) * ts, (tile.x - x0) * ts
            mosaic[r : r + ts, c : c + ts] = rgba
        left, _, right, top = _TMS.xy_bounds(morecantile.Tile(x0, y0, zoom))
        res = (right - left) / ts
        transform = Affine(res, 0.0, left, 0.0, -res, top)
        rgb = np.ascontiguousarray(mosaic[..., :3].transpose(2, 0, 1))
        valid = mosaic[..., 3] > 0
        return warp_patch(rgb, valid, transform, "EPSG:3857", lon, lat, geometry, self.min_coverage)

    def close(self) -> None:
        self._pool.shutdown()
        self.fetcher.close()
