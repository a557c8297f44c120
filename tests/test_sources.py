"""Imagery sources: GeoTIFF warping, XYZ tiles over a local server, Blue Marble, configs."""

from __future__ import annotations

import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import morecantile
import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import Affine
from rasterio.warp import transform as warp_transform

from omnimap.core.errors import DataError, InputError
from omnimap.sources import PatchGeometry, open_source, source_from_config
from omnimap.sources.bmng import blue_marble
from omnimap.sources.geotiff import GeoTiffSource
from omnimap.sources.xyz import XyzSource

LON0, LAT0 = 16.5, 45.0  # off UTM 33N's central meridian: the grid is rotated there
GEOMETRY = PatchGeometry(400.0, 32)  # 12.5 m per pixel
MARK = 25.0  # half-side of each marker, metres
OFFSET = 100.0  # red marker 100 m north of the white one, green 100 m east
CENTRE = (GEOMETRY.pixels - 1) / 2
SHIFT = OFFSET / GEOMETRY.metres_per_pixel


def paint(xs: np.ndarray, ys: np.ndarray, crs) -> np.ndarray:
    """(..., 3) uint8 colours of points given in ``crs``: white square at the target,
    red 100 m north, green 100 m east (measured on the ground), grey elsewhere."""
    local = GEOMETRY.local_crs(LON0, LAT0)
    ex, ny = warp_transform(crs, local, xs.ravel(), ys.ravel())
    ex, ny = np.asarray(ex).reshape(xs.shape), np.asarray(ny).reshape(xs.shape)
    out = np.full(xs.shape + (3,), 60, dtype=np.uint8)
    near = lambda x, y: (np.abs(ex - x) < MARK) & (np.abs(ny - y) < MARK)  # noqa: E731
    out[near(0, 0)] = (255, 255, 255)
    out[near(0, OFFSET)] = (255, 0, 0)
    out[near(OFFSET, 0)] = (0, 255, 0)
    return out


def make_geotiff(path, crs, transform: Affine, size: int, **profile) -> None:
    cols, rows = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
    xs, ys = transform.c + cols * transform.a, transform.f + rows * transform.e
    rgb = paint(xs, ys, crs).transpose(2, 0, 1)
    kwargs = dict(driver="GTiff", width=size, height=size, count=3, dtype="uint8", crs=crs)
    with rasterio.open(path, "w", transform=transform, **{**kwargs, **profile}) as dst:
        dst.write(rgb.astype(profile.get("dtype", "uint8")))


def centroid(mask: np.ndarray) -> tuple[float, float]:
    rows, cols = np.nonzero(mask)
    assert len(rows), "marker not in the patch"
    return rows.mean(), cols.mean()


def assert_markers(patch: np.ndarray, east: float = 0.0, north: float = 0.0) -> None:
    """The white marker at the centre shifted by the point's offset from it (metres),
    red above it (north up), green right of it (east right)."""
    r, g, b = (patch[i].astype(int) for i in range(3))
    white = (r > 200) & (g > 200) & (b > 200)
    red = (r > 200) & (g < 80) & (b < 80)
    green = (g > 200) & (r < 80) & (b < 80)
    mpp = GEOMETRY.metres_per_pixel
    row, col = CENTRE + north / mpp, CENTRE - east / mpp
    assert centroid(white) == pytest.approx((row, col), abs=1.0)
    assert centroid(red) == pytest.approx((row - SHIFT, col), abs=1.0)
    assert centroid(green) == pytest.approx((row, col + SHIFT), abs=1.0)


def offset_point(east: float, north: float) -> tuple[float, float]:
    lon, lat = warp_transform(GEOMETRY.local_crs(LON0, LAT0), "EPSG:4326", [east], [north])
    return lon[0], lat[0]


RASTERS = {
    # crs: (transform around the target, pixels): each about 5 km across
    "EPSG:4326": lambda: (Affine(6e-5, 0, LON0 - 0.03, 0, -4.5e-5, LAT0 + 0.0225), 1000),
    "EPSG:32633": lambda: _projected("EPSG:32633", 5.0),
    "EPSG:3857": lambda: _projected("EPSG:3857", 7.0),
}


def _projected(crs: str, res: float) -> tuple[Affine, int]:
    x, y = warp_transform("EPSG:4326", crs, [LON0], [LAT0])
    return Affine(res, 0, x[0] - 500 * res, 0, -res, y[0] + 500 * res), 1000


@pytest.fixture(scope="module", params=sorted(RASTERS))
def geotiff(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("tif") / f"{request.param.replace(':', '')}.tif"
    transform, size = RASTERS[request.param]()
    make_geotiff(path, request.param, transform, size, tiled=True, blockxsize=256, blockysize=256)
    return path


def test_geotiff_pattern_lands_at_centre_north_up(geotiff):
    src = GeoTiffSource(geotiff, GEOMETRY.ground_size_m, GEOMETRY.pixels)
    patch = src.patches([LON0], [LAT0])
    assert patch.shape == (1, 3, 32, 32) and patch.dtype == np.uint8
    assert_markers(patch[0])
    lon, lat = offset_point(-60.0, 40.0)  # 60 m west, 40 m north of the target
    assert_markers(src.patches([lon], [lat])[0], east=-60.0, north=40.0)


def test_geotiff_reads_only_the_window(geotiff, monkeypatch):
    src = GeoTiffSource(geotiff, GEOMETRY.ground_size_m, GEOMETRY.pixels)
    windows = []
    original = src.read_window
    monkeypatch.setattr(src, "read_window", lambda w, s: windows.append(w) or original(w, s))
    src.patches([LON0], [LAT0])
    (window,) = windows
    assert window.width < 120 and window.height < 120  # 400 m of a 1000 px, 5 km raster


def test_geotiff_size_override_keeps_ground_footprint(geotiff):
    src = GeoTiffSource(geotiff, GEOMETRY.ground_size_m, GEOMETRY.pixels)
    big = src.patches([LON0], [LAT0], size=64)[0]
    white = big.min(axis=0) > 200
    assert centroid(white) == pytest.approx((31.5, 31.5), abs=1.5)
    assert 7 <= np.count_nonzero(white) ** 0.5 <= 10  # 50 m at 6.25 m/px: 8 px


def test_geotiff_outside_points_fail_per_point(geotiff):
    src = GeoTiffSource(geotiff, GEOMETRY.ground_size_m, GEOMETRY.pixels)
    edge_lon, edge_lat = offset_point(0.0, 2600.0)  # patch straddles the northern edge
    batch = src.read([LON0, 100.0, edge_lon, np.nan], [LAT0, -30.0, edge_lat, 0.0])
    assert batch.ok.tolist() == [True, False, False, False]
    assert "outside" in batch.errors[1] and "covers" in batch.errors[2]
    assert "invalid coordinates" in batch.errors[3]
    assert not batch.patches[1:].any()
    with pytest.raises(DataError, match="point 1: .*outside.*and 2 more"):
        src.patches([LON0, 100.0, edge_lon, np.nan], [LAT0, -30.0, edge_lat, 0.0])


def test_geotiff_nodata_and_rescale(tmp_path):
    path = tmp_path / "u16.tif"
    transform, size = _projected("EPSG:32633", 5.0)
    make_geotiff(path, "EPSG:32633", transform, size, dtype="uint16", nodata=0)
    with rasterio.open(path, "r+") as ds:  # a nodata hole 2 km east of the target
        ds.write(np.zeros((3, 40, 40), np.uint16), window=rasterio.windows.Window(880, 480, 40, 40))
    with pytest.raises(InputError, match="rescale"):
        GeoTiffSource(path, GEOMETRY.ground_size_m, GEOMETRY.pixels)
    src = GeoTiffSource(path, GEOMETRY.ground_size_m, GEOMETRY.pixels, rescale=(0, 255))
    hole_lon, hole_lat = offset_point(2000.0, 0.0)
    batch = src.read([LON0, hole_lon], [LAT0, hole_lat])
    assert batch.ok.tolist() == [True, False] and "nodata" in batch.errors[1]
    assert_markers(batch.patches[0])


def test_geotiff_key_and_config_round_trip(geotiff, tmp_path):
    src = GeoTiffSource(geotiff, 400, 32, attribution="Test imagery")
    config = src.to_config()
    again = source_from_config(config)
    assert again.key == src.key and again.attribution == "Test imagery"
    assert GeoTiffSource(geotiff, 400, 64).key != src.key
    copy = tmp_path / "copy.tif"
    copy.write_bytes(geotiff.read_bytes())
    assert GeoTiffSource(copy, 400, 32).key == src.key  # content, not path
    with rasterio.open(copy, "r+") as ds:
        ds.write(np.zeros((3, 4, 4), np.uint8), window=rasterio.windows.Window(0, 0, 4, 4))
    with pytest.raises(DataError, match="imagery changed"):
        source_from_config({**config, "path": str(copy)})


def test_geotiff_bad_files(tmp_path):
    with pytest.raises(DataError, match="not found"):
        GeoTiffSource(tmp_path / "missing.tif")
    (tmp_path / "junk.tif").write_bytes(b"not a tiff")
    with pytest.raises(DataError, match="cannot read"):
        GeoTiffSource(tmp_path / "junk.tif")
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.tif")
    with pytest.raises(DataError, match="not georeferenced"):
        GeoTiffSource(tmp_path / "plain.tif")


def test_blue_marble_configs():
    native = source_from_config({"name": "bmng", "patch_size": 16})  # configs of shipped models
    assert native.key == blue_marble(16).key
    np.testing.assert_array_equal(
        native.patches([10.0], [45.0]), blue_marble(16).patches([10.0], [45.0])
    )
    assert source_from_config(native.to_config()).key == native.key
    batch = native.read([10.0, np.nan], [45.0, 0.0])
    assert batch.ok.tolist() == [True, False]

    resampled = open_source("bmng", 300_000, 8)
    assert resampled.to_config()["type"] == "bmng" and resampled.key != native.key
    assert source_from_config(resampled.to_config()).key == resampled.key
    batch = resampled.read([10.0, 179.9], [45.0, 0.0])
    assert batch.ok.tolist() == [True, False] and "antimeridian" in batch.errors[1]
    assert batch.patches[0].std() > 0  # real imagery, not a flat fill
    with pytest.raises(InputError, match="unknown imagery type"):
        source_from_config({"type": "wms"})


def test_open_source_specs(geotiff):
    with pytest.raises(InputError, match="not 'bmng'"):
        open_source("no-such-thing")
    assert open_source(str(geotiff), 400, 32, attribution="Mine").attribution == "Mine"
    with pytest.raises(InputError, match="does not take option.*max_zoom"):
        open_source(str(geotiff), 400, 32, max_zoom=12)
    with pytest.raises(InputError, match=r"\{z\}"):
        open_source("https://tiles.example/{x}/{y}.png")
    with pytest.raises(InputError, match="placeholders"):
        open_source("https://{s}.tiles.example/{z}/{x}/{y}.png")
    with pytest.raises(InputError, match="ground size"):
        open_source("bmng", -1, 8)


# --- XYZ tile server --------------------------------------------------------------

TMS = morecantile.tms.get("WebMercatorQuad")


def render_tile(z: int, x: int, y: int) -> bytes:
    left, bottom, right, top = TMS.xy_bounds(morecantile.Tile(x, y, z))
    res = (right - left) / 256
    cols, rows = np.meshgrid(np.arange(256) + 0.5, np.arange(256) + 0.5)
    rgb = paint(left + cols * res, top - rows * res, "EPSG:3857")
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


class TileServer:
    """Serves painted tiles at /{z}/{x}/{y}.png. ``script[(z, x, y)]`` lists actions
    used up one per request (then "ok"): ok, timeout, 404, 500, 429, garbage."""

    def __init__(self):
        self.script: dict[tuple[int, int, int], list[str]] = {}
        self.log: list[tuple[float, tuple[int, int, int], str]] = []  # (time, tile, UA)
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                z, x, y = (int(v) for v in self.path.removesuffix(".png").strip("/").split("/"))
                with server.lock:
                    server.log.append((time.monotonic(), (z, x, y), self.headers["User-Agent"]))
                    actions = server.script.get((z, x, y), [])
                    action = actions.pop(0) if actions else "ok"
                if action == "timeout":
                    time.sleep(2.5)  # past timeout_s (1 s, roomy for a loaded machine)
                    action = "ok"
                if action == "ok":
                    status, body = 200, render_tile(z, x, y)
                elif action == "garbage":
                    status, body = 200, b"<html>not a tile</html>"
                else:
                    status, body = int(action), b"error"
                try:
                    self.send_response(status)
                    if status == 429:
                        self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out first

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{{z}}/{{x}}/{{y}}.png"

    def requests(self, tile=None) -> int:
        return sum(1 for _, t, _ in self.log if tile is None or t == tile)


@pytest.fixture
def server():
    srv = TileServer()
    thread = threading.Thread(target=srv.httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


@pytest.fixture
def make_source(server, tmp_path):
    made = []

    def make(**options) -> XyzSource:
        options = {"requests_per_second": 1000.0, "timeout_s": 1.0, "max_attempts": 3,
                   "backoff_s": 0.01, "cache": tmp_path / "tiles", **options}  # fmt: skip
        src = XyzSource(server.url, GEOMETRY.ground_size_m, GEOMETRY.pixels, **options)
        made.append(src)
        return src

    yield make
    for src in made:
        src.close()


def tiles_of(src: XyzSource, lon: float, lat: float) -> list[tuple[int, int, int]]:
    w, s, e, n = GEOMETRY.footprint(lon, lat, "EPSG:4326")
    return [(t.z, t.x, t.y) for t in TMS.tiles(w, s, e, n, [src.zoom_for(lat, GEOMETRY)])]


def test_xyz_patch_zoom_and_user_agent(server, make_source):
    src = make_source()
    assert src.zoom_for(LAT0, GEOMETRY) == 14  # 9.5 m tile pixels <= 12.5 m patch pixels
    assert src.zoom_for(LAT0, PatchGeometry(400.0, 4096)) == src.max_zoom
    assert_markers(src.patches([LON0], [LAT0])[0])
    lon, lat = offset_point(30.0, -70.0)
    assert_markers(src.patches([lon], [lat])[0], east=30.0, north=-70.0)
    assert all(ua.startswith("omnimap/") and "(+http" in ua for _, _, ua in server.log)
    assert source_from_config(src.to_config(), cache=src.cache.root).key == src.key


def test_xyz_cache_hits_avoid_requests_and_corrupt_entries_refetch(server, make_source, tmp_path):
    make_source().patches([LON0], [LAT0])
    first = server.requests()
    assert first >= 1
    np.testing.assert_array_equal(
        make_source().patches([LON0], [LAT0]), make_source().patches([LON0], [LAT0])
    )
    assert server.requests() == first  # fresh sources, same disk cache: no requests
    entry = next((tmp_path / "tiles").rglob("*.bin"))
    entry.write_bytes(entry.read_bytes()[:-10] + b"corrupted!")
    make_source().patches([LON0], [LAT0])
    assert server.requests() == first + 1


def test_xyz_retries_are_bounded_and_4xx_is_final(server, make_source):
    src = make_source(max_attempts=4)
    (a,) = tiles_of(src, LON0, LAT0)[:1]
    server.script[a] = ["timeout", "500", "429"]
    assert_markers(src.patches([LON0], [LAT0])[0])
    assert server.requests(a) == 4  # three failures, then success

    far = [(LON0 + 0.5 * i, LAT0) for i in (1, 2)]
    t404, t500 = (tiles_of(src, lon, lat)[0] for lon, lat in far)
    server.script[t404] = ["404"]
    server.script[t500] = ["500"] * 10
    batch = src.read([LON0, far[0][0], far[1][0]], [LAT0, far[0][1], far[1][1]])
    assert batch.ok.tolist() == [True, False, False]
    assert "HTTP 404" in batch.errors[1] and "HTTP 500 (4 attempts)" in batch.errors[2]
    assert server.requests(t404) == 1 and server.requests(t500) == 4


def test_xyz_garbage_tile_fails_and_is_not_cached(server, make_source):
    src = make_source()
    tile = tiles_of(src, LON0, LAT0)[0]
    server.script[tile] = ["garbage"]
    batch = src.read([LON0], [LAT0])
    assert not batch.ok[0] and "not a valid image" in batch.errors[0]
    assert make_source().read([LON0], [LAT0]).ok[0]  # a new source asks again, gets a tile
    assert server.requests(tile) == 2


def test_xyz_points_beyond_web_mercator_fail_without_requests(server, make_source):
    batch = make_source().read([0.0, 179.999], [86.0, 0.0])
    assert not batch.ok.any() and "Web Mercator" in batch.errors[0]
    assert "antimeridian" in batch.errors[1] and server.requests() == 0


def test_xyz_rate_limit_spaces_requests(server, make_source):
    rate = 20.0
    src = make_source(requests_per_second=rate)
    lons = [LON0 + 0.1 * i for i in range(3)]  # distinct tiles, fetched 4 at a time
    assert src.read(lons, [LAT0] * 3).ok.all()
    times = sorted(t for t, _, _ in server.log)
    assert len(times) >= 3
    # Sends are 1/rate apart; arrivals jitter, hence the slack.
    assert times[-1] - times[0] >= 0.7 * (len(times) - 1) / rate


def test_xyz_cache_respects_max_size(server, make_source, tmp_path):
    tile_bytes = len(render_tile(14, 8942, 5887)) + 12
    src = make_source(max_cache_bytes=3 * tile_bytes)
    src.read([LON0 + 0.05 * i for i in range(6)], [LAT0] * 6)
    total = sum(p.stat().st_size for p in (tmp_path / "tiles").rglob("*.bin"))
    assert 0 < total <= 3 * tile_bytes
