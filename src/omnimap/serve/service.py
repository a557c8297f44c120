"""What the server computes, independent of HTTP: tiles, legends, search, downloads.

Model calls go through one lock: torch and the engine's in-memory caches are not
made for concurrent use, and on a small machine one call at a time is also the
fastest. Long requests (a /map.tif, a search of a region) score their grid in slices
of about a tile's cells, taking the lock for each, so tiles keep being served between
slices; downloads are bounded (``MAX_DOWNLOADS`` at once, :class:`Busy` beyond). Everything already computed (tiles, whole-world maps) is served from
bounded in-memory LRUs without taking the lock. No cache is on disk (the one file
written, a /map.tif download, lives in a temp directory private to its request), so
a server killed mid-request leaves nothing behind that a later one could serve.
"""

from __future__ import annotations

import math
import tempfile
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np

from omnimap.core.digest import text_digest
from omnimap.core.lru import LRUCache
from omnimap.core.store import MemoryStore
from omnimap.fields.window import inside_parts
from omnimap.geo.bbox import BBox
from omnimap.geo.grid import LatLonGrid
from omnimap.geo.place import area_mask
from omnimap.geo.regions import Region
from omnimap.geo.timefeat import When
from omnimap.maps.engine import MapEngine
from omnimap.maps.geojson import points_collection
from omnimap.maps.render import color_limits
from omnimap.maps.result import MapResult
from omnimap.maps.stac import COLORBAR_LABEL, UNITS_NOTE
from omnimap.serve import tiles

T = TypeVar("T")

# Whole-world maps give each prompt and time its colour limits and its search hits;
# 1 deg (65k cells) is coarse enough to compute while a page waits for tiles.
WORLD_RESOLUTION = 1.0
WORLD_CACHE_ENTRIES = 64
TILE_CACHE_ENTRIES = 4096
# --cache-mb is split between the caches: overhead embeddings (float16: ~13 MB a
# tile and 50 MB for the world grid with the atlas's 384 dimensions), fused (per
# time) embeddings of the same grids, and rendered PNG tiles (~50-150 kB each).
DEFAULT_CACHE_MB = 1024
CACHE_SHARES = {"overhead": 0.5, "fused": 0.25, "tiles": 0.25}


def cache_budget(cache_mb: int) -> dict[str, int]:
    """Bytes of each server cache for a total of ``cache_mb`` MB."""
    return {name: int(share * cache_mb * 1024**2) for name, share in CACHE_SHARES.items()}


# Long grids are scored in slices of about this many cells (a tile's grid at most
# zooms), each under the model lock on its own, so tiles interleave with them.
SLICE_CELLS = 65_536
MAX_DOWNLOADS = 1  # /map.tif computations at once; more wait for a 503's Retry-After
RETRY_AFTER_S = 30
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
                 cache_mb: int = DEFAULT_CACHE_MB):  # fmt: skip
        budget = cache_budget(cache_mb)
        self.engine = MapEngine(model or ("atlas" if field is None else None), field=field,
                                store=MemoryStore(budget["overhead"]),
                                fused_cache_bytes=budget["fused"])  # fmt: skip
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


class FairLock:
    """A lock granted in arrival order: a long job's next slice queues behind the tiles
    that arrived during its last one (a plain Lock lets the releasing thread win again)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._waiters: deque[threading.Event] = deque()
        self._held = False

    def __enter__(self) -> FairLock:
        with self._guard:
            if not self._held:
                self._held = True
                return self
            turn = threading.Event()
            self._waiters.append(turn)
        turn.wait()  # the releasing holder hands the lock straight to us
        return self

    def __exit__(self, *exc) -> None:
        with self._guard:
            if self._waiters:
                self._waiters.popleft().set()
            else:
                self._held = False


class Busy(Exception):
    """The server is at its bound of concurrent downloads: retry after ``retry_after`` s."""

    def __init__(self, retry_after: int = RETRY_AFTER_S):
        super().__init__(f"busy with {MAX_DOWNLOADS} download(s); retry in {retry_after} s")
        self.retry_after = retry_after


def _area_key(area: Region | None) -> str:
    return "world" if area is None or area.kind == "world" else f"{area.kind}:{area.name}"


def search_resolution(box: BBox, max_cells: int) -> float:
    """The finest ladder step at which a box has at most ``max_cells`` cells."""
    for res in (0.05, 0.1, 0.25, 0.5, WORLD_RESOLUTION):
        if math.ceil(box.width / res) * math.ceil(box.height / res) <= max_cells:
            return res
    return WORLD_RESOLUTION


class MapService:
    def __init__(self, scorer: Scorer, tile_cache_bytes: int = 256 * 1024**2):
        self.scorer = scorer
        self._model_lock = FairLock()
        self._downloads = threading.BoundedSemaphore(MAX_DOWNLOADS)
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

    def run_model(self, job: Callable[[], T]) -> T:
        """Run ``job`` under the model lock (queries other than tiles, e.g. /locate)."""
        with self._model_lock:
            return job()

    def _score_sliced(self, prompt: str, grid: LatLonGrid, when: When | None) -> np.ndarray:
        """A long grid's scores, slice by slice of rows, the lock taken per slice."""
        step = max(1, SLICE_CELLS // grid.ncols)
        out = np.empty(grid.shape, dtype=np.float32)
        for r0 in range(0, grid.nrows, step):
            n = min(step, grid.nrows - r0)
            rows = LatLonGrid(grid.resolution, grid.col0, grid.row0 + r0, grid.ncols, n)
            out[r0 : r0 + n] = self._score(prompt, rows, when)
        return out

    def _area_scores(
        self, prompt: str, grid: LatLonGrid, when: When | None, area: Region | None
    ) -> np.ndarray:
        scores = self._score_sliced(prompt, grid, when)
        inside = area_mask(area, grid) if area is not None else None
        if inside is not None:
            scores[~inside] = np.nan
        return scores

    # -- whole-world map: colour limits, legend, search ---------------------------

    def world(self, prompt: str, when: When | None) -> WorldMap:
        def compute() -> WorldMap:
            scores = self._score(prompt, self.world_grid, when)
            return WorldMap(scores, *color_limits(scores))

        return self.worlds.get_or_compute((prompt, _when_key(when)), compute)

    def legend(self, prompt: str, when: When | None, area: Region | None = None) -> dict:
        """The colour scale: the world map's limits, so tiles of every place compare."""
        world = self.world(prompt, when)
        return {
            "prompt": prompt,
            "place": area.name if area is not None else "World",
            "when": when.dt.isoformat() if when else None,
            "vmin": round(world.vmin, 6),
            "vmax": round(world.vmax, 6),
            "colormap": tiles.COLORMAP,
            "stops": tiles.legend_stops(),
            "label": COLORBAR_LABEL,
        }

    def search(self, prompt: str, when: When | None, k: int, area: Region | None = None) -> dict:
        """The top ``k`` places (separate local maxima) of the world map, or of a map of
        the area (about as many cells as the world map; a shape's cells only), as GeoJSON."""
        if area is None or area.kind == "world":
            grid, scores = self.world_grid, self.world(prompt, when).scores
        else:
            res = on_lattice(search_resolution(area.bbox, self.world_grid.size), self.scorer.lattice)
            grid = LatLonGrid.from_bbox(area.bbox, res)
            scores = self._area_scores(prompt, grid, when, area)
        result = MapResult(scores, grid, prompt, when)
        return points_collection(result.peaks(k), ("rank", "score"), prompt=prompt,
                                 when=when.dt.isoformat() if when else None,
                                 place=area.name if area is not None else "World",
                                 resolution=grid.resolution, description=UNITS_NOTE)  # fmt: skip

    # -- tiles ----------------------------------------------------------------------

    def tile_key(
        self, prompt: str, when: When | None, z: int, x: int, y: int, area: Region | None = None
    ) -> tuple:
        return (prompt, _when_key(when), _area_key(area), z, x, y)

    def etag(self, key: tuple) -> str:
        """Depends only on the request and the scorer: no rendering needed to compare."""
        text = "\x1f".join(map(str, (RENDER_VERSION, self.scorer.key, *key)))
        return f'"{text_digest(text, bits=64)}"'

    def cached_tile(self, key: tuple) -> bytes | None:
        return self.tiles.get(key)

    def tile(
        self, prompt: str, when: When | None, z: int, x: int, y: int, area: Region | None = None
    ) -> bytes:
        """Tile z/x/y of the map; with an area, transparent outside it."""
        key = self.tile_key(prompt, when, z, x, y, area)
        return self.tiles.get_or_compute(key, lambda: self._render(prompt, when, z, x, y, area))

    def _render(
        self, prompt: str, when: When | None, z: int, x: int, y: int, area: Region | None
    ) -> bytes:
        world = self.world(prompt, when)
        grid = tiles.tile_grid(z, x, y, self.scorer.lattice)
        scores = self._score(prompt, grid, when)
        inside = area_mask(area, grid) if area is not None else None
        if inside is not None:
            scores = np.where(inside, scores, np.nan).astype(np.float32)
        values = tiles.resample(scores, grid, *tiles.pixel_lonlat(z, x, y))
        return tiles.encode_png(tiles.colorize(values, world.vmin, world.vmax))

    # -- downloads ------------------------------------------------------------------

    def geotiff(
        self, prompt: str, when: When | None, grid: LatLonGrid, area: Region | None = None
    ) -> bytes:
        """A COG of the map (nodata outside a country or continent), written by MapResult
        to a private temp file, read back whole and removed: the response is complete
        before a byte is sent. Raises :class:`Busy` beyond ``MAX_DOWNLOADS`` at once."""
        if not self._downloads.acquire(blocking=False):
            raise Busy()
        try:
            scores = self._area_scores(prompt, grid, when, area)
            place = area.name if area is not None else "World"
            result = MapResult(scores, grid, prompt, when, place=place, model=self.scorer.name)
            with tempfile.TemporaryDirectory(prefix="omnimap-serve-") as tmp:
                path = result.write_geotiff(Path(tmp) / "map.tif")
                return path.read_bytes()
        finally:
            self._downloads.release()

    def stats(self) -> dict:
        return {
            "tiles_cached": len(self.tiles),
            "tile_cache_bytes": self.tiles.nbytes,
            "tile_cache_limit_bytes": self.tiles.max_bytes,
            "world_maps_cached": len(self.worlds),
        }
