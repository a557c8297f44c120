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
import xxhash

from omnimap.errors import InputError
from omnimap.geo.bbox import BBox
from omnimap.geo.grid import LatLonGrid
from omnimap.geo.timefeat import When
from omnimap.maps.result import COLORBAR_LABEL, UNITS_NOTE, MapResult, _color_limits
from omnimap.serve import tiles
from omnimap.serve.lru import LRUCache
from omnimap.serve.memcache import MemoryArrayCache

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
    """Scores prompts over grids: the seam where embedding fields plug in later."""

    name: str  # shown on the page and in metadata
    key: str  # identifies the exact weights/data (part of ETags)

    def score(self, prompt: str, grid: LatLonGrid, when: When | None) -> np.ndarray: ...


class EngineScorer:
    """Scores with a model's :class:`~omnimap.maps.engine.MapEngine`.

    The engine caches the overhead part in memory (:class:`MemoryArrayCache`), not
    on disk, and keeps fused embeddings in its own bounded memory: a new prompt on
    tiles already seen is one matrix-vector product per tile, a new time reruns only
    the small location/time encoder.
    """

    def __init__(self, model: str, overhead_cache_bytes: int = OVERHEAD_CACHE_BYTES):
        from omnimap.maps.engine import MapEngine

        self.engine = MapEngine(model, cache=MemoryArrayCache(overhead_cache_bytes))
        self.name = self.engine.model.name
        self.key = self.engine.model.key

    def score(self, prompt: str, grid: LatLonGrid, when: When | None) -> np.ndarray:
        return self.engine.score(prompt, grid, when)


def open_scorer(model: str, field: str | None = None) -> Scorer:
    """The scorer a server uses, fixed at start-up: the model's engine, or a field."""
    if field is not None:
        raise InputError("--field: embedding fields are not part of this build yet; omit it")
    return EngineScorer(model)


@dataclass(frozen=True)
class WorldMap:
    scores: np.ndarray
    vmin: float
    vmax: float


def _when_key(when: When | None) -> str:
    return when.key if when is not None else "none"


class MapService:
    def __init__(self, scorer: Scorer, tile_cache_bytes: int = 256 * 1024**2):
        self.scorer = scorer
        self._model_lock = threading.Lock()
        self.tiles: LRUCache[bytes] = LRUCache(TILE_CACHE_ENTRIES, tile_cache_bytes)
        self.world_grid = LatLonGrid.from_bbox(BBox.world(), WORLD_RESOLUTION)
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
            return WorldMap(scores, *_color_limits(scores))

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
        features = [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [p["lon"], p["lat"]]},
                "properties": {"rank": p["rank"], "score": round(p["score"], 6)},
            }
            for p in result.peaks(k)
        ]
        return {
            "type": "FeatureCollection",
            "prompt": prompt,
            "when": when.dt.isoformat() if when else None,
            "resolution": WORLD_RESOLUTION,
            "description": UNITS_NOTE,
            "features": features,
        }

    # -- tiles ----------------------------------------------------------------------

    def tile_key(self, prompt: str, when: When | None, z: int, x: int, y: int) -> tuple:
        return (prompt, _when_key(when), z, x, y)

    def etag(self, key: tuple) -> str:
        """Depends only on the request and the scorer: no rendering needed to compare."""
        text = "\x1f".join(map(str, (RENDER_VERSION, self.scorer.key, *key)))
        return f'"{xxhash.xxh3_64_hexdigest(text.encode("utf-8"))}"'

    def cached_tile(self, key: tuple) -> bytes | None:
        return self.tiles.get(key)

    def tile(self, prompt: str, when: When | None, z: int, x: int, y: int) -> bytes:
        key = self.tile_key(prompt, when, z, x, y)
        return self.tiles.get_or_compute(key, lambda: self._render(prompt, when, z, x, y))

    def _render(self, prompt: str, when: When | None, z: int, x: int, y: int) -> bytes:
        world = self.world(prompt, when)
        grid = tiles.tile_grid(z, x, y)
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
