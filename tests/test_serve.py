"""The tile server: tiles, colour scale, caches, limits, downloads, faults."""

from __future__ import annotations

import io
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import rasterio
from fastapi.testclient import TestClient
from PIL import Image
from rio_cogeo.cogeo import cog_validate
from typer.testing import CliRunner

from omnimap.core.errors import DataError, InputError
from omnimap.core.lru import LRUCache
from omnimap.core.store import MemoryStore
from omnimap.geo.bbox import BBox
from omnimap.geo.grid import LatLonGrid
from omnimap.maps.engine import MapEngine
from omnimap.serve import tiles
from omnimap.serve.app import create_app
from omnimap.serve.service import EngineScorer

JAN = "2024-01-15T09:00"


class CountingScorer:
    """Wraps a real scorer: counts calls and records whether two ever overlapped."""

    def __init__(self, inner):
        self.inner, self.name, self.key, self.lattice = inner, inner.name, inner.key, inner.lattice
        self.calls: list[tuple[str, str, str]] = []
        self.active = self.max_active = 0
        self._lock = threading.Lock()

    def score(self, prompt, grid, when):
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.calls.append((prompt, grid.key, when.key if when else "none"))
        try:
            time.sleep(0.002)  # widen the window in which an overlap would show
            return self.inner.score(prompt, grid, when)
        finally:
            with self._lock:
                self.active -= 1


@pytest.fixture(scope="module")
def engine_scorer(tiny_model_dir):
    return EngineScorer(str(tiny_model_dir))


@pytest.fixture()
def scorer(engine_scorer):
    return CountingScorer(engine_scorer)


@pytest.fixture()
def client(scorer, tmp_path):
    return TestClient(create_app(scorer=scorer, static_dir=tmp_path / "not-built"))


def png(body: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(body))
    image.load()
    return image


# -- tiles ---------------------------------------------------------------------------


def test_tile_is_an_rgba_png_and_repeats_come_from_the_cache(client, scorer):
    r = client.get("/tiles/3/4/2.png", params={"q": "sand dunes", "when": JAN})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    image = png(r.content)
    assert image.size == (256, 256) and image.mode == "RGBA"
    assert np.asarray(image)[..., 3].min() == 255  # every cell scored: nothing transparent
    calls = len(scorer.calls)
    assert calls == 2  # the whole-world map (colour limits), then the tile
    again = client.get("/tiles/3/4/2.png", params={"q": " sand dunes ", "when": JAN + ":00"})
    assert again.content == r.content
    assert len(scorer.calls) == calls  # same prompt and instant, differently written
    client.get("/tiles/3/5/2.png", params={"q": "sand dunes", "when": JAN})
    assert len(scorer.calls) == calls + 1  # a new tile: one call, limits reused


def test_etag_revalidation_answers_without_rendering(client, scorer):
    url, q = "/tiles/2/1/1.png", {"q": "forest", "when": JAN}
    etag = client.get(url, params=q).headers["etag"]
    calls = len(scorer.calls)
    fresh = TestClient(client.app)  # same server, cache checked by ETag only
    r = fresh.get(url, params=q, headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b""
    assert len(scorer.calls) == calls
    other = client.get(url, params={"q": "forest", "when": "2024-07-15T09:00"})
    assert other.headers["etag"] != etag


def test_concurrent_requests_compute_each_tile_once_and_never_overlap_model_calls(client, scorer):
    urls = [f"/tiles/4/{x}/6.png" for x in (3, 4, 5)] * 6
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda u: client.get(u, params={"q": "ice"}).status_code, urls))
    assert codes == [200] * len(urls)
    tile_calls = [c for c in scorer.calls if not c[1].startswith("r1_")]  # not the world map
    assert len(tile_calls) == 3
    assert scorer.max_active == 1


def test_tiles_meet_without_seams():
    """Bilinear resampling of a linear field is exact, so any pixel (edges included)
    that did not see its true neighbour cells would show up here."""
    for z, x, y in [(4, 7, 6), (4, 8, 6), (5, 20, 9), (7, 64, 40)]:
        grid = tiles.tile_grid(z, x, y)
        lon, lat = grid.centers()
        scores = (0.01 * lon + 0.02 * lat).reshape(grid.shape).astype(np.float32)
        plon, plat = tiles.pixel_lonlat(z, x, y)
        values = tiles.resample(scores, grid, plon, plat)
        expected = 0.01 * plon[None, :] + 0.02 * plat[:, None]
        np.testing.assert_allclose(values, expected, atol=2e-5)


def test_tiles_wrap_around_the_antimeridian():
    for z, x, y in [(0, 0, 0), (3, 0, 3), (3, 7, 3)]:
        grid = tiles.tile_grid(z, x, y)
        lon, lat = grid.centers()
        field = (np.sin(np.radians(lon)) + lat / 90.0).reshape(grid.shape).astype(np.float32)
        plon, plat = tiles.pixel_lonlat(z, x, y)
        values = tiles.resample(field, grid, plon, plat)
        expected = np.sin(np.radians(plon))[None, :] + plat[:, None] / 90.0
        # Interpolation error of a smooth field: ~res^2/8 * curvature, tiny here.
        np.testing.assert_allclose(values, expected, atol=2e-3)


def test_resolution_follows_zoom_and_stays_on_the_lattice():
    assert tiles.tile_resolution(0) == 360 / 128
    assert tiles.tile_resolution(12) == tiles.FINEST_RESOLUTION
    a, b = tiles.tile_grid(5, 10, 12), tiles.tile_grid(5, 11, 12)
    assert a.resolution == b.resolution
    assert a.col0 + a.ncols > b.col0  # neighbours overlap by their margins


def test_colours_come_from_fixed_limits_and_nan_is_transparent():
    values = np.array([[0.1, 0.5, np.nan, 9.0]], dtype=np.float32)
    rgba = tiles.colorize(values, vmin=0.1, vmax=0.5)
    lut = tiles.colormap_lut()
    assert (rgba[0, 0] == lut[0]).all() and (rgba[0, 1] == lut[255]).all()
    assert rgba[0, 2, 3] == 0  # NaN: transparent
    assert (rgba[0, 3] == lut[255]).all()  # beyond the limits: clipped


# -- legend, search, downloads ---------------------------------------------------------


def test_legend_and_search_share_one_world_map(client, scorer):
    legend = client.get("/legend", params={"q": "city lights", "when": JAN}).json()
    assert legend["vmin"] < legend["vmax"] and legend["colormap"] == "magma"
    assert len(legend["stops"]) == 11 and legend["stops"][0][1].startswith("#")
    calls = len(scorer.calls)
    r = client.get("/search", params={"q": "city lights", "when": JAN, "k": "5"})
    assert r.headers["content-type"] == "application/geo+json"
    hits = r.json()
    assert len(scorer.calls) == calls  # the world map the legend computed
    assert [f["properties"]["rank"] for f in hits["features"]] == [1, 2, 3, 4, 5]
    scores = [f["properties"]["score"] for f in hits["features"]]
    assert scores == sorted(scores, reverse=True) and legend["vmax"] <= scores[0] + 1e-6
    for f in hits["features"]:
        lon, lat = f["geometry"]["coordinates"]
        assert -180 <= lon < 180 and -90 <= lat <= 90


def test_map_tif_is_a_valid_cog_of_the_box(client, tmp_path):
    r = client.get(
        "/map.tif", params={"q": "snow", "bbox": "5,43,10,47", "resolution": "0.25", "when": JAN}
    )
    assert r.status_code == 200 and "omnimap-snow.tif" in r.headers["content-disposition"]
    path = tmp_path / "dl.tif"
    path.write_bytes(r.content)
    assert cog_validate(str(path), quiet=True)[0]
    with rasterio.open(path) as src:
        assert src.shape == (16, 20) and src.crs.to_epsg() == 4326
        assert tuple(round(v, 6) for v in src.bounds) == (5, 43, 10, 47)
        assert src.tags()["prompt"] == "snow"


def test_health_config_and_coastlines(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model"] == "tiny" and health["field"] is None
    assert client.get("/config.json").json()["basemap_url"] is None
    r = client.get("/coastlines.geojson")  # the test client accepts gzip
    assert r.headers["content-encoding"] == "gzip"
    land = r.json()
    coords = np.array(
        [p for f in land["features"] for line in f["geometry"]["coordinates"] for p in line]
    )
    assert len(coords) > 10_000
    assert (np.abs(coords[:, 0]) <= 180).all() and (np.abs(coords[:, 1]) <= 90).all()


# -- bad requests ------------------------------------------------------------------------

BAD = [
    ("/tiles/19/0/0.png?q=a", "z must be from 0 to 18"),
    ("/tiles/99999999999/0/0.png?q=a", "z must be a whole number"),
    ("/tiles/-1/0/0.png?q=a", "z must be a whole number"),
    ("/tiles/a/0/0.png?q=a", "z must be a whole number"),
    ("/tiles/2/1.5/0.png?q=a", "x must be a whole number"),
    ("/tiles/2/%201/0.png?q=a", "x must be a whole number"),
    ("/tiles/2/4/0.png?q=a", "x must be from 0 to 3"),
    ("/tiles/2/0/4.png?q=a", "y must be from 0 to 3"),
    ("/tiles/2/0/0.png", "prompt) is empty"),
    ("/tiles/2/0/0.png?q=%20%20", "prompt) is empty"),
    ("/tiles/2/0/0.png?q=" + "x" * 1001, "the limit is 1000"),
    ("/tiles/2/0/0.png?q=a%00b", "control characters"),
    ("/tiles/2/0/0.png?q=a&when=2024-13-01", "bad date"),
    ("/tiles/2/0/0.png?q=a&when=yesterday", "bad date"),
    ("/tiles/2/0/0.png?q=a&when=3024-01-01", "outside the supported years"),
    ("/tiles/2/0/0.png?q=a&when=" + "1" * 80, "when is too long"),
    ("/tiles/2/0/0.png?q=" + "%F0%9F%98%80" * 1400, "URL too long"),
    ("/tiles/2/0/" + "0" * 600 + ".png?q=a", "URL too long"),
    ("/tiles/2/0.png?q=a", "Not Found"),
    ("/legend", "prompt) is empty"),
    ("/search?q=a&k=0", "k must be from 1 to 100"),
    ("/search?q=a&k=1000", "k must be from 1 to 100"),
    ("/search?q=a&k=ten", "k must be a whole number"),
    ("/map.tif?q=a&bbox=1,2,3", "bbox must be W,S,E,N"),
    ("/map.tif?q=a&bbox=", "bbox must be W,S,E,N"),
    ("/map.tif?q=a&bbox=0,0,400,1", "bbox longitudes must lie"),
    ("/map.tif?q=a&bbox=0,10,1,5", "must be less than north"),
    ("/map.tif?q=a&resolution=0.05", "the server's limit is 1,100,000"),
    ("/map.tif?q=a&bbox=0,0,1,1&resolution=nan", "finite number"),
    ("/map.tif?q=a&bbox=0,0,1,1&resolution=0", "resolution must be between"),
    ("/map.tif?q=a&bbox=0,0,1,1&resolution=1e400", "finite number"),
    ("/map.tif?q=a&bbox=0,0,1,1&resolution=fine", "resolution must be degrees"),
    ("/static/..%2F..%2Fpyproject.toml", "Not Found"),
    ("/static/pyproject.toml", "no asset"),
    ("/nothing-here", "Not Found"),
]


@pytest.mark.parametrize("url, message", BAD)
def test_bad_requests_get_a_clear_4xx(client, scorer, url, message):
    r = client.get(url)
    assert 400 <= r.status_code < 500, r.text
    assert message in r.json()["detail"]
    assert scorer.calls == []  # refused before any model work


def test_other_methods_are_refused(client):
    r = client.post("/tiles/1/0/0.png?q=a", content=b"x" * 1000)
    assert r.status_code == 405 and r.json()["detail"]


# -- caches ------------------------------------------------------------------------------


def test_lru_is_bounded_by_count_and_bytes():
    cache = LRUCache(max_entries=3, max_bytes=10)
    for key in "abc":
        cache.put(key, b"xx")
    cache.get("a")  # now most recent
    cache.put("d", b"xx")
    assert cache.get("b") is None and cache.get("a") == b"xx" and len(cache) == 3
    cache.put("e", b"x" * 8)  # over the byte bound: oldest go until it fits
    assert cache.nbytes <= 10 and cache.get("e") is not None
    cache.put("huge", b"x" * 11)  # larger than the whole cache: not kept
    assert cache.get("huge") is None and cache.get("e") is not None


def test_single_flight_shares_results_and_never_caches_failures():
    cache = LRUCache(max_entries=8, max_bytes=1000)
    gate, calls = threading.Event(), []

    def slow():
        calls.append(1)
        gate.wait(5)
        return b"value"

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(cache.get_or_compute, "k", slow) for _ in range(4)]
        time.sleep(0.1)
        gate.set()
        assert [f.result() for f in futures] == [b"value"] * 4
    assert len(calls) == 1

    def failing():
        raise InputError("no")

    with pytest.raises(InputError):
        cache.get_or_compute("bad", failing)
    assert cache.get("bad") is None
    assert cache.get_or_compute("bad", lambda: b"ok") == b"ok"


def test_memory_cache_keeps_the_overhead_part_for_a_new_time(tiny_model_dir):
    from omnimap.geo.timefeat import When

    cache = MemoryStore(max_bytes=64 * 1024**2)
    engine = MapEngine(str(tiny_model_dir), store=cache)
    calls = []
    original = engine.embedder.overhead
    engine.embedder.overhead = lambda *a: calls.append(1) or original(*a)
    grid = LatLonGrid.from_bbox(BBox(5, 43, 10, 47), 0.25)
    first = engine.score("snow", grid, When.parse(JAN))
    assert calls == [1] and cache.nbytes == grid.size * 16 * 2  # float16 overhead only
    engine.score("snow", grid, When.parse("2024-07-15T21:00"))  # new time
    assert calls == [1]
    reference = MapEngine(str(tiny_model_dir), use_cache=False).score("snow", grid, When.parse(JAN))
    np.testing.assert_array_equal(first, reference)  # the same numbers as uncached
    assert not cache.fits((1_000_000, 16), np.float16)  # a download's: never cached


# -- the page ------------------------------------------------------------------------------


def test_page_says_how_to_build_when_assets_are_missing(client):
    r = client.get("/")
    assert r.status_code == 503 and "make web" in r.text


def test_page_and_assets_come_from_memory_with_a_strict_policy(scorer, tmp_path):
    static = tmp_path / "static"
    static.mkdir()
    (static / "index.html").write_text("<!doctype html><title>omnimap</title>")
    (static / "app.js").write_text("console.log(1)")
    (static / "notes.txt").write_text("not an asset")
    app = create_app(
        scorer=scorer, static_dir=static, basemap_url="https://{s}.tiles.example/{z}/{x}/{y}.png"
    )
    (static / "later.js").write_text("written after start-up")
    client = TestClient(app)
    page = client.get("/")
    assert page.status_code == 200 and "omnimap" in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "https://*.tiles.example" in policy
    js = client.get("/static/app.js")
    assert js.headers["content-type"].startswith("text/javascript")
    assert (
        client.get("/static/app.js", headers={"If-None-Match": js.headers["etag"]}).status_code
        == 304
    )
    assert client.get("/static/notes.txt").status_code == 404
    assert client.get("/static/later.js").status_code == 404  # never read from disk per request
    assert client.get("/config.json").json()["basemap_url"].startswith("https://{s}.")


@pytest.mark.parametrize("url", ["ftp://x/{z}/{x}/{y}", "https://x/tiles.png", "/{z}/{x}/{y}"])
def test_bad_basemap_urls_are_refused_at_start(scorer, url):
    with pytest.raises(InputError, match="basemap-url"):
        create_app(scorer=scorer, basemap_url=url)


def test_serve_command_binds_loopback_and_warns_otherwise(tiny_model_dir, monkeypatch):
    import typer
    import uvicorn

    from omnimap.cli import serve as serve_cli
    from omnimap.cli.serve import serve_command

    runs, binds = [], []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets: runs.append((self, sockets)))
    monkeypatch.setattr(serve_cli, "bind", lambda host, port: binds.append((host, port)) or socket.socket())
    app = typer.Typer()
    app.command()(serve_command)
    runner = CliRunner()
    r = runner.invoke(app, ["--model", str(tiny_model_dir), "--port", "8123"])
    assert r.exit_code == 0, r.output
    assert binds[-1] == ("127.0.0.1", 8123) and len(runs) == 1
    assert "http://127.0.0.1:8123/" in r.output and "warning" not in r.output
    r = runner.invoke(app, ["--model", str(tiny_model_dir), "--host", "0.0.0.0"])
    assert "no authentication" in r.output
    r = runner.invoke(app, ["--model", str(tiny_model_dir), "--field", "f"])
    assert isinstance(r.exception, DataError) and "does not exist" in str(r.exception)


# -- faults ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(model_dir, tmp_path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "OMNIMAP_CACHE_DIR": str(tmp_path / "cache"), "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "omnimap.cli.main", "serve", "--model", str(model_dir), "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("server did not start")


def _valid_tile(body: bytes) -> bool:
    image = png(body)
    return image.size == (256, 256) and image.mode == "RGBA"


@pytest.mark.slow
def test_a_killed_server_never_serves_or_leaves_anything_corrupt(tiny_model_dir, tmp_path):
    urls = [f"/tiles/5/{x}/{y}.png?q=desert&when={JAN}" for x in range(8, 12) for y in (10, 11)]
    proc, base = _start_server(tiny_model_dir, tmp_path)
    results: list[bytes | Exception] = []
    first_done = threading.Event()

    def fetch(url: str) -> None:
        try:
            r = httpx.get(base + url, timeout=30)
            results.append(r.content if r.status_code == 200 else RuntimeError(r.status_code))
        except httpx.TransportError as exc:  # cut off: the client knows it got nothing
            results.append(exc)
        first_done.set()

    threads = [threading.Thread(target=fetch, args=(u,)) for u in urls]
    for t in threads:
        t.start()
    # Tiles render one at a time: when the first is out, the rest are in flight.
    assert first_done.wait(30)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    for t in threads:
        t.join(30)
    assert len(results) == len(urls)
    cut = [r for r in results if isinstance(r, Exception)]
    assert cut, "the kill came too late to test anything"
    assert all(isinstance(r, httpx.TransportError) for r in cut)
    assert all(_valid_tile(r) for r in results if isinstance(r, bytes))

    proc, base = _start_server(tiny_model_dir, tmp_path)
    try:
        with ThreadPoolExecutor(4) as pool:
            bodies = list(pool.map(lambda u: httpx.get(base + u, timeout=60).content, urls))
        assert all(_valid_tile(b) for b in bodies)
    finally:
        proc.kill()
        proc.wait(10)
    # The server's caches are in memory: on disk there is at most the teacher's own
    # (atomically written, checksummed) text-embedding cache.
    written = {p.relative_to(tmp_path / "cache").parts[0] for p in (tmp_path / "cache").rglob("*")}
    assert written <= {"embeddings"}


def test_tile_grids_stay_small():
    """A cold tile must stay cheap: its grid is ~130 x 130 cells at every zoom."""
    for z in range(0, 12):
        n = 1 << z
        grid = tiles.tile_grid(z, n // 2, n // 2)
        assert grid.size <= 140 * 140, (z, grid.shape)
        assert math.isclose(grid.resolution, tiles.tile_resolution(z))
