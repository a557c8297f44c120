"""Map outputs: COG GeoTIFF, PNG, GeoJSON peaks, atomic writes, coastlines."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import rasterio
from matplotlib.figure import Figure
from PIL import Image
from rio_cogeo.cogeo import cog_validate

from omnimap.core.errors import DataError
from omnimap.geo.bbox import BBox
from omnimap.geo.grid import LatLonGrid
from omnimap.geo.timefeat import When
from omnimap.maps.result import MapResult
from omnimap.resources import coastlines

ANTIMERIDIAN = BBox(170, -20, -170, -10)


def bump(
    grid: LatLonGrid, lon0: float, lat0: float, sigma: float, height: float = 1.0
) -> np.ndarray:
    lon, lat = grid.centers()
    dlon = (lon - lon0 + 180.0) % 360.0 - 180.0
    return (height * np.exp(-(dlon**2 + (lat - lat0) ** 2) / (2 * sigma**2))).reshape(grid.shape)


def make_result(bbox: BBox, resolution: float, scores: np.ndarray | None = None, **kw) -> MapResult:
    grid = LatLonGrid.from_bbox(bbox, resolution)
    if scores is None:
        lon, lat = bbox.center
        scores = bump(grid, lon, lat, max(bbox.height, 1.0) / 4)
    kw.setdefault("prompt", "snowy peaks")
    kw.setdefault("when", When.parse("2024-07-01T12:00"))
    return MapResult(scores.astype(np.float32), grid, place=str(bbox), model="test-model", **kw)


def noisy(bbox: BBox, resolution: float, seed: int = 0) -> MapResult:
    grid = LatLonGrid.from_bbox(bbox, resolution)
    scores = np.random.default_rng(seed).random(grid.shape)
    return make_result(bbox, resolution, scores)


def listing(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize(
    ("bbox", "resolution", "shape"),
    [
        (BBox(0, 0, 5, 3), 1.0, (3, 5)),
        (BBox(-30, 0, 0, 20), 0.1, (200, 300)),
        (ANTIMERIDIAN, 0.1, (100, 200)),
    ],
)
def test_geotiff_is_valid_cog_and_round_trips(tmp_path, bbox, resolution, shape):
    result = make_result(bbox, resolution)
    result.scores[0, :2] = np.nan
    assert result.scores.shape == shape
    path = result.write_geotiff(tmp_path / "map.tif")

    is_valid, errors, _warnings = cog_validate(str(path), quiet=True)
    assert is_valid, errors
    assert listing(tmp_path) == ["map.tif"]
    with rasterio.open(path) as src:
        assert src.count == 1 and src.dtypes[0] == "float32"
        assert src.crs.to_epsg() == 4326
        assert math.isnan(src.nodata)
        assert src.transform == result.grid.transform
        assert src.bounds == pytest.approx(result.grid.bounds)
        np.testing.assert_array_equal(src.read(1), result.scores)  # NaN where NaN
        tags = src.tags()
    assert tags["prompt"] == "snowy peaks"
    assert tags["when"] == "2024-07-01T12:00:00"
    assert tags["model"] == "test-model" and tags["place"] == str(bbox)
    assert "higher = more likely" in tags["description"]


def test_antimeridian_geotiff_runs_past_180(tmp_path):
    path = make_result(ANTIMERIDIAN, 0.1).write_geotiff(tmp_path / "pacific.tif")
    with rasterio.open(path) as src:
        assert src.bounds.left == pytest.approx(170.0) and src.bounds.right == pytest.approx(190.0)


def test_time_free_map_tags_and_title(tmp_path):
    result = make_result(BBox(0, 0, 5, 3), 1.0, when=None)
    assert result.title == '"snowy peaks" · 0,0,5,3 · any time'
    with rasterio.open(result.write_geotiff(tmp_path / "m.tif")) as src:
        assert src.tags()["when"] == "none"


def test_top_peak_is_the_bump_centre():
    grid = LatLonGrid.from_bbox(BBox(-10, 35, 30, 60), 0.25)
    result = make_result(BBox(-10, 35, 30, 60), 0.25, bump(grid, 7.3, 46.1, 2.0))
    top = result.peaks(k=3)[0]
    assert top["rank"] == 1
    assert abs(top["lon"] - 7.3) <= 0.25 and abs(top["lat"] - 46.1) <= 0.25
    assert top["score"] == pytest.approx(float(np.nanmax(result.scores)))


def test_two_bumps_rank_by_height():
    bbox = BBox(-10, 35, 30, 60)
    grid = LatLonGrid.from_bbox(bbox, 0.25)
    scores = bump(grid, 0.0, 40.0, 2.0, height=0.6) + bump(grid, 20.0, 55.0, 2.0, height=0.9)
    peaks = [p for p in make_result(bbox, 0.25, scores).peaks(k=5) if p["score"] > 0.1]
    assert [(round(p["lon"]), round(p["lat"])) for p in peaks] == [(20, 55), (0, 40)]
    assert [p["rank"] for p in peaks] == [1, 2]


def test_nan_is_never_a_peak():
    result = noisy(BBox(0, 0, 20, 10), 0.5)
    result.scores[::2, ::3] = np.nan
    result.scores[5:9, 5:9] = np.nan
    peaks = result.peaks(k=20)
    assert peaks
    assert all(np.isfinite(result.scores[p["row"], p["col"]]) for p in peaks)
    all_nan = make_result(BBox(0, 0, 5, 3), 1.0, np.full((3, 5), np.nan))
    assert all_nan.peaks() == []


def test_world_bump_on_the_antimeridian_is_one_peak():
    grid = LatLonGrid.from_bbox(BBox.world(), 1.0)
    result = make_result(BBox.world(), 1.0, bump(grid, 180.0, 10.0, 5.0))
    strong = [p for p in result.peaks(k=5) if p["score"] > 0.5]
    assert len(strong) == 1
    assert abs(abs(strong[0]["lon"]) - 180.0) <= 1.0 and abs(strong[0]["lat"] - 10.0) <= 1.0


def test_geojson_lists_k_peaks_in_rank_order(tmp_path):
    result = noisy(ANTIMERIDIAN, 0.1)
    path = result.write_geojson(tmp_path / "peaks.geojson", k=7)
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["type"] == "FeatureCollection"
    assert doc["prompt"] == "snowy peaks" and doc["model"] == "test-model"
    features = doc["features"]
    assert [f["properties"]["rank"] for f in features] == list(range(1, 8))
    scores = [f["properties"]["score"] for f in features]
    assert scores == sorted(scores, reverse=True)
    for f in features:
        assert f["geometry"]["type"] == "Point"
        lon, lat = f["geometry"]["coordinates"]
        assert -180.0 <= lon <= 180.0 and -20.0 <= lat <= -10.0


@pytest.mark.parametrize(
    ("bbox", "resolution"),
    [(BBox(-10, 35, 30, 60), 0.25), (ANTIMERIDIAN, 0.1), (BBox(0, 0, 5, 3), 1.0)],
)
def test_png_is_a_real_image(tmp_path, bbox, resolution):
    result = make_result(bbox, resolution, prompt="huts at $5^$ a night, 100% views_{x}")
    result.scores[:2] = np.nan
    path = result.write_png(tmp_path / "map.png")
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width >= 800
    assert listing(tmp_path) == ["map.png"]


def test_write_all_into_new_directory(tmp_path):
    out = make_result(BBox(0, 40, 10, 50), 0.5).write(tmp_path / "new" / "deeper" / "alps.tif", k=3)
    assert {k: p.name for k, p in out.items()} == {
        "tif": "alps.tif",
        "png": "alps.png",
        "geojson": "alps.geojson",
        "stac": "alps.stac.json",
    }
    assert all(p.is_file() for p in out.values())
    assert listing(tmp_path / "new" / "deeper") == [
        "alps.geojson",
        "alps.png",
        "alps.stac.json",
        "alps.tif",
    ]


def test_failed_geotiff_write_leaves_nothing(tmp_path, monkeypatch):
    def broken(self):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(MapResult, "_metadata", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        make_result(BBox(0, 0, 5, 3), 1.0).write_geotiff(tmp_path / "map.tif")
    assert listing(tmp_path) == []


def test_failed_png_write_leaves_nothing(tmp_path, monkeypatch):
    def half_written(self, fname, **kwargs):
        with open(fname, "wb") as fh:
            fh.write(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", half_written)
    with pytest.raises(OSError, match="disk full"):
        make_result(BBox(0, 0, 5, 3), 1.0).write_png(tmp_path / "map.png")
    assert listing(tmp_path) == []


def test_overwrite_replaces_previous_file(tmp_path):
    path = tmp_path / "map.tif"
    make_result(BBox(0, 0, 5, 3), 1.0).write_geotiff(path)
    make_result(BBox(0, 0, 5, 3), 1.0, np.zeros((3, 5))).write_geotiff(path)
    with rasterio.open(path) as src:
        assert not src.read(1).any()
    assert listing(tmp_path) == ["map.tif"]


def test_scores_must_fit_grid():
    with pytest.raises(ValueError, match="do not fit"):
        make_result(BBox(0, 0, 5, 3), 1.0, np.zeros((2, 2)))


def test_coastline_polygons_load():
    polygons = coastlines.coastline_polygons("c")
    assert len(polygons) > 100
    assert all(p.ndim == 2 and p.shape[1] == 2 and p.dtype == np.float64 for p in polygons)
    assert coastlines.coastline_polygons("c") is not polygons  # a fresh list...
    assert coastlines.coastline_polygons("c")[0] is polygons[0]  # ...of cached arrays


def test_europe_coast_is_in_europe():
    polygons = coastlines.coastlines_in((-10, 35, 30, 60), "l")
    inside = [
        p
        for p in polygons
        if ((p[:, 0] > -10) & (p[:, 0] < 30) & (p[:, 1] > 35) & (p[:, 1] < 60)).any()
    ]
    assert len(inside) > 50
    # Nothing from the Americas or Australia.
    assert all(p[:, 0].max() > -10 and p[:, 1].max() > 35 for p in polygons)


def test_box_past_180_gets_shifted_copies():
    polygons = coastlines.coastlines_in((170, -20, 190, -10), "l")
    assert any(p[:, 0].max() > 180.0 for p in polygons)  # Fiji's eastern islands
    assert all(p[:, 0].max() > 170 and p[:, 0].min() < 190 for p in polygons)


def test_drawable_removes_antimeridian_cut():
    ring = np.array([[179.0, 60.0], [180.0, 60.0], [180.0, 61.0], [179.0, 61.0], [179.0, 60.0]])
    line = coastlines.drawable(ring)
    assert np.isnan(line[:, 0]).sum() == 1
    inland = ring - (10.0, 0.0)
    assert coastlines.drawable(inland) is inland


def test_corrupt_coastline_file_is_a_data_error(tmp_path, monkeypatch):
    (tmp_path / "gshhsmeta_c.dat").write_text("1 10.0 4 0 1 0 32 7\n1 10.0 4 0 1 32 32 8\n")
    (tmp_path / "gshhs_c.dat").write_bytes(np.zeros(8, "<f4").tobytes())
    monkeypatch.setattr(coastlines, "basemap_file", lambda name: tmp_path / name)
    coastlines._load.cache_clear()
    try:
        with pytest.raises(DataError, match="corrupt"):
            coastlines.coastline_polygons("c")
    finally:
        coastlines._load.cache_clear()
