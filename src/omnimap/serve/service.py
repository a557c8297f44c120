"""What the server computes, independent of HTTP: tiles, legends, search, downloads.

Model calls go through one lock: torch and the engine's in-memory caches are not
made for concurrent use, and on a small machine one call at a time is also the
fastest. Everything already computed (tiles, whole-world maps) is served from
bounded in-memory LRUs without taking the lock. No cache is on disk (the one file
written, a /map.tif download, lives in a temp directory private to its request), so
a server killed mid-request leaves nothing behind that a later one could serve.
"""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from omnimap.core.digest import text_digest
from omnimap.core.lru import LRUCache
from omnimap.core.store import MemoryStore
from omnimap.fields.window import inside_parts
from omnimap.geo.bbox import BBox
from omnimap.geo.grid import LatLonGrid
from omnimap.geo.timefeat import When
from omnimap.maps.engine import MapEngine
from omnimap.maps.geojson import points_collection
from omnimap.maps.render import color_limits
from omnimap.maps.result import MapResult
from omnimap.maps.stac import COLORBAR_LABEL, UNITS_NOTE
from omnimap.serve import tiles

# Whole-world maps give each prompt and time its colour limits and its search hits;
# 1 deg (65k cells) is coarse enough to compute while a page waits for tiles.
WORLD_RESOLUTION = 1.0
WORLD_CACHE_ENTRIES = 64
TILE_CACHE_ENTRIES = 4096
# Overhead embeddings (float16): ~13 MB a tile and 50 MB for the world grid with
# the atlas's 384 dimensions, so ~70 tiles.
OVERHEAD_CACHE_BYTES = 1024**3
# Version of the tile rendering, part of every ETag so a changed renderer never
# matches a browser's cached tile.
RENDER_VERSION = "1"


class Scorer(Protocol):
    """What the service needs of a :class:`~omnimap.maps.engine.MapEngine` (tests wrap
    one to count its calls)."""

    name: str  # shown on the page and in metadata
    key: str  # identifies the exact weights/data (part of ETags)
    lattice: float | None  # the resolution grids must be multiples of (a field's), or None

    def score(self, prompt: str, grid: LatLonGrid, when: When | None) -> np.ndarray: ...


class EngineScorer:
    """A server's engine: the overhead part lives in memory (:class:`MemoryStore`), not
    on disk, and the fused embeddings in the engine's own bounded memory, so a new
    prompt on tiles already seen is one matrix-vector product per tile and a new time
    reruns only the small location/time encoder. With a field, o is read from it and
    grids outside the field come back as nodata."""

    def __init__(self, model: str | None = None, field: str | None = None,
                 overhead_cache_bytes: int = OVERHEAD_CACHE_BYTES):  # fmt: skip
        self.engine = MapEngine(model or ("atlas" if field is None else None), field=field,
                                store=MemoryStore(overhead_cache_bytes))  # fmt: skip
        self.name = self.engine.name
        f = self.engine.field
        self.key = self.engine.model.key + (f"|{f.content_digest()}" if f is not None else "")
        self.lattice = f.grid.resolution if f is not None else None

    def score(self, prompt: str, grid: LatLonGrid, when: When | None) -> np.ndarray:
        field = self.engine.field
        if field is None:
            return self.engine.score(prompt, grid, when)
        out = np.full(grid.shape, np.nan, dtype=np.float32)
        for part, rows, cols in inside_parts(field, grid):
            out[rows, cols] = self.engine.score(prompt, part, when)
        return out


@dataclass(frozen=True)
class WorldMap:
    scores: np.ndarray
    vmin: float
    vmax: float


def on_lattice(resolution: float, lattice: float | None) -> float:
    """The nearest whole multiple of a field's resolution (any resolution without one)."""
    return resolution if lattice is None else lattice * max(1, round(resolution / lattice))


def _when_key(when: When | None) -> str:
    return when.key if when is not None else "none"


class MapService:
    def __init__(self, scorer: Scorer, tile_cache_bytes: int = 256 * 1024**2):
        self.scorer = scorer
        self._model_lock = threading.Lock()
        self.tiles: LRUCache[bytes] = LRUCache(TILE_CACHE_ENTRIES, tile_cache_bytes)
        self.world_grid = LatLonGrid.from_bbox(
            BBox.world(), on_lattice(WORLD_RESOLUTION, scorer.lattice)
        )
        world_bytes = self.world_grid.size * 4
        self.worlds: LRUCache[WorldMap] = LRUCache(
            WORLD_CACHE_ENTRIES, WORLD_CACHE_ENTRIES * world_bytes, lambda w: w.scores.nbytes
        )

    def _score(self, prompt: str, grid: LatLonGrid, when: When | None) -> np.ndarray:
        with self._model_lock:
            return self.scorer.score(prompt, grid, when)

    # -- whole-world map: colour limits, legend, search ---------------------------

    def world(self, prompt: str, when: When | None) -> WorldMap:
        def compute() -> WorldMap:
            scores = self._score(prompt, self.world_grid, when)
            return WorldMap(scores, *color_limits(scores))

        return self.worlds.get_or_compute((prompt, _when_key(when)), compute)

    def legend(self, prompt: str, when: When | None) -> dict:
        world = self.world(prompt, when)
        return {
            "prompt": prompt,
            "when": when.dt.isoformat() if when else None,
            "vmin": round(world.vmin, 6),
            "vmax": round(world.vmax, 6),
            "colormap": tiles.COLORMAP,
            "stops": tiles.legend_stops(),
            "label": COLORBAR_LABEL,
        }

    def search(self, prompt: str, when: When | None, k: int) -> dict:
        """The top ``k`` places (separate local maxima) of the world map, as GeoJSON."""
        result = MapResult(self.world(prompt, when).scores, self.world_grid, prompt, when)
        return points_collection(result.peaks(k), ("rank", "score"), prompt=prompt,
                                 when=when.dt.isoformat() if when else None,
                                 resolution=self.world_grid.resolution, description=UNITS_NOTE)  # fmt: skip

    # -- tiles ----------------------------------------------------------------------

    def tile_key(self, prompt: str, when: When | None, z: int, x: int, y: int) -> tuple:
        return (prompt, _when_key(when), z, x, y)

    def etag(self, key: tuple) -> str:
        """Depends only on the request and the scorer: no rendering needed to compare."""
        text = "\x1f".join(map(str, (RENDER_VERSION, self.scorer.key, *key)))
        return f'"{text_digest(text, bits=64)}"'

    def cached_tile(self, key: tuple) -> bytes | None:
        return self.tiles.get(key)

    def tile(self, prompt: str, when: When | None, z: int, x: int, y: int) -> bytes:
        key = self.tile_key(prompt, when, z, x, y)
        return self.tiles.get_or_compute(key, lambda: self._render(prompt, when, z, x, y))

    def _render(self, prompt: str, when: When | None, z: int, x: int, y: int) -> bytes:
        world = self.world(prompt, when)
        grid = tiles.tile_grid(z, x, y, self.scorer.lattice)
        scores = self._score(prompt, grid, when)
        values = tiles.resample(scores, grid, *tiles.pixel_lonlat(z, x, y))
        return tiles.encode_png(tiles.colorize(values, world.vmin, world.vmax))

    # -- downloads ------------------------------------------------------------------

    def geotiff(self, prompt: str, when: When | None, grid: LatLonGrid, place: str) -> bytes:
        """A COG of the map, written by MapResult to a private temp file, read back
        whole and removed: the response is complete before a byte is sent."""
        scores = self._score(prompt, grid, when)
        result = MapResult(scores, grid, prompt, when, place=place, model=self.scorer.name)
        with tempfile.TemporaryDirectory(prefix="omnimap-serve-") as tmp:
            path = result.write_geotiff(Path(tmp) / "map.tif")
            return path.read_bytes()

    def stats(self) -> dict:
        return {
            "tiles_cached": len(self.tiles),
            "tile_cache_bytes": self.tiles.nbytes,
            "tile_cache_limit_bytes": self.tiles.max_bytes,
            "world_maps_cached": len(self.worlds),
        }
