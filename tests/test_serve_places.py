"""The server takes the CLI's place parameters on every endpoint, shares its prompt
limit, keeps tiles flowing during downloads, and fails a busy port in one line."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from fastapi.testclient import TestClient
from PIL import Image

import omnimap
from omnimap.core.errors import InputError
from omnimap.geo.grid import LatLonGrid
from omnimap.geo.regions import resolve_region
from omnimap.maps.engine import MAX_QUERY_CHARS, clean_prompt
from omnimap.serve import service as service_module
from omnimap.serve import tiles
from omnimap.serve.app import create_app
from omnimap.serve.service import EngineScorer

TOKYO, BUSAN = (139.69, 35.69), (129.07, 35.18)


@pytest.fixture(scope="module")
def scorer(tiny_model_dir):
    return EngineScorer(str(tiny_model_dir))


@pytest.fixture()
def client(scorer, tmp_path):
    return TestClient(create_app(scorer=scorer, static_dir=tmp_path / "not-built"))


def test_map_tif_honours_a_region_and_its_shape(client, tmp_path):
    r = client.get("/map.tif", params={"q": "forest", "region": "Japan", "resolution": "0.5"})
    assert r.status_code == 200, r.text
    (tmp_path / "jp.tif").write_bytes(r.content)
    box = resolve_region("Japan").bbox
    with rasterio.open(tmp_path / "jp.tif") as src:
        bounds, data = src.bounds, src.read(1)
        grid = LatLonGrid.from_bbox(box, 0.5)
        assert src.tags()["place"] == "Japan"
    assert bounds.left == pytest.approx(box.west, abs=0.5)
    assert bounds.top == pytest.approx(box.north, abs=0.5)
    assert np.isnan(data[grid.cell_of(*BUSAN)])  # Korea: nodata
    assert np.isfinite(data[grid.cell_of(*TOKYO)])


def test_map_tif_of_a_natural_region_is_its_box(client, tmp_path):
    r = client.get("/map.tif", params={"q": "snow", "region": "Alps", "resolution": "0.5"})
    (tmp_path / "alps.tif").write_bytes(r.content)
    alps = resolve_region("Alps").bbox
    with rasterio.open(tmp_path / "alps.tif") as src:
        assert src.bounds.left == pytest.approx(alps.west, abs=0.5)
        assert src.bounds.right == pytest.approx(alps.east, abs=0.5)
        assert src.width < 40  # not the world


def test_search_of_a_region_finds_places_inside_it(client):
    r = client.get("/search", params={"q": "forest", "region": "Japan", "k": "5"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
    hits = r.json()
    assert hits["place"] == "Japan" and len(hits["features"]) >= 3
    japan = resolve_region("Japan")
    grid = LatLonGrid.from_bbox(japan.bbox, hits["resolution"])
    for feature in hits["features"]:
        assert japan.mask(grid)[grid.cell_of(*feature["geometry"]["coordinates"])]
    boxed = client.get("/search", params={"q": "forest", "bbox": "0,40,10,50", "k": "3"}).json()
    for feature in boxed["features"]:
        lon, lat = feature["geometry"]["coordinates"]
        assert 0 <= lon <= 10 and 40 <= lat <= 50


def test_tiles_of_a_region_are_transparent_outside_it(client):
    z, x, y = 4, 14, 6  # covers Korea and western Japan
    alpha = {}
    for region in (None, "Japan"):
        params = {"q": "forest", **({"region": region} if region else {})}
        r = client.get(f"/tiles/{z}/{x}/{y}.png", params=params)
        assert r.status_code == 200
        alpha[region] = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGBA"))[..., 3]
    lon, lat = tiles.pixel_lonlat(z, x, y)
    col, row = int(np.argmin(abs(lon - BUSAN[0] - 1.0))), int(np.argmin(abs(lat - BUSAN[1] - 1.0)))
    assert alpha[None][row, col] > 0 and alpha["Japan"][row, col] == 0  # inland Korea
    assert (alpha["Japan"] > 0).sum() < (alpha[None] > 0).sum()
    legend = client.get("/legend", params={"q": "forest", "region": "Japan"}).json()
    assert legend["place"] == "Japan"


def test_prompt_limit_is_one_for_cli_and_server(client):
    assert MAX_QUERY_CHARS == 1000
    clean_prompt("a " * 499 + "b")  # 999 characters: fine for both
    with pytest.raises(InputError, match=f"limit is {MAX_QUERY_CHARS}"):
        clean_prompt("x" * (MAX_QUERY_CHARS + 1))
    r = client.get("/legend", params={"q": "x" * (MAX_QUERY_CHARS + 1)})
    assert r.status_code == 400 and f"limit is {MAX_QUERY_CHARS}" in r.json()["detail"]
    assert client.get("/config.json").json()["max_prompt_chars"] == MAX_QUERY_CHARS


class SlowScorer:
    def __init__(self, inner, delay: float):
        self.inner, self.delay = inner, delay
        self.name, self.key, self.lattice = inner.name, inner.key, inner.lattice

    def score(self, prompt, grid, when):
        time.sleep(self.delay)
        return self.inner.score(prompt, grid, when)


def test_a_long_download_does_not_starve_tiles(scorer, tmp_path, monkeypatch):
    monkeypatch.setattr(service_module, "SLICE_CELLS", 20)  # the tif below: 20 slices
    app = create_app(scorer=SlowScorer(scorer, 0.1), static_dir=tmp_path)
    client = TestClient(app)
    client.get("/legend", params={"q": "sea"})  # the world map, computed up front
    done: dict[str, float] = {}

    def download():
        r = client.get("/map.tif", params={"q": "sea", "bbox": "0,0,20,20", "resolution": "1"})
        assert r.status_code == 200
        done["tif"] = time.monotonic()

    thread = threading.Thread(target=download)
    thread.start()
    time.sleep(0.3)  # the download is under way
    r = client.get("/tiles/3/4/3.png", params={"q": "sea"})
    done["tile"] = time.monotonic()
    thread.join()
    assert r.status_code == 200
    assert done["tile"] < done["tif"]  # served between the download's slices


def test_downloads_beyond_the_bound_get_503_with_retry_after(client):
    service = client.app.state.service
    assert service._downloads.acquire(blocking=False)  # one download under way
    try:
        r = client.get("/map.tif", params={"q": "sea", "bbox": "0,0,5,5", "resolution": "1"})
    finally:
        service._downloads.release()
    assert r.status_code == 503 and int(r.headers["retry-after"]) > 0
    assert client.get("/map.tif", params={"q": "sea", "bbox": "0,0,5,5"}).status_code == 200


def test_no_reply_shows_an_absolute_path(client, tmp_path):
    install = str(Path(omnimap.__file__).resolve().parent.parent)
    for method in ("GET", "HEAD"):
        r = client.request(method, "/")
        assert r.status_code == 503  # HEAD / is answered too, not 405
    page = client.get("/").text
    assert "make web" in page and install not in page and str(tmp_path) not in page


def test_serve_on_a_busy_port_fails_in_one_line_before_serving(tiny_model_dir):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "omnimap.cli.main", "serve", "--model", str(tiny_model_dir),
             "--port", str(port)], capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "serving on" not in proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0]


def test_cache_mb_bounds_and_splits_the_server_caches(tiny_model_dir, tmp_path):
    app = create_app(str(tiny_model_dir), static_dir=tmp_path, cache_mb=64)
    service = app.state.service
    engine = service.scorer.engine
    mb = 2**20
    assert service.tiles.max_bytes == 16 * mb  # a quarter: rendered tiles
    assert engine._fused.max_bytes == 16 * mb  # a quarter: fused embeddings
    assert engine.store._entries.max_bytes == 32 * mb  # half: overhead embeddings
    client = TestClient(app)
    for x in range(4):
        assert client.get(f"/tiles/2/{x}/1.png", params={"q": "sea"}).status_code == 200
    assert engine.store.nbytes <= 32 * mb and service.tiles.nbytes <= 16 * mb
    assert engine._fused.nbytes <= 16 * mb
