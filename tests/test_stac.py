"""STAC Items for exported maps, validated offline against pystac's shipped schemas."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime

import numpy as np
import pystac
import pytest
from pystac.errors import STACValidationError
from pystac.validation import validate_dict

from omnimap.geo.bbox import BBox
from omnimap.geo.grid import LatLonGrid
from omnimap.geo.timefeat import When
from omnimap.maps.result import MapResult
from omnimap.maps.stac import COG_MEDIA_TYPE, stac_item, write_stac_item

CREATED = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Validation must not fetch schemas: any connection attempt fails the test."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def result(bbox: BBox, when: str | None, resolution: float = 0.5) -> MapResult:
    grid = LatLonGrid.from_bbox(bbox, resolution)
    scores = np.random.default_rng(0).random(grid.shape).astype(np.float32)
    scores[0, 0] = np.nan
    return MapResult(scores, grid, "snow", When.parse(when) if when else None,
                     place=str(bbox), model="tiny")  # fmt: skip


def valid(item: dict) -> dict:
    assert validate_dict(item)  # returns the schema URIs it checked
    pystac.Item.from_dict(json.loads(json.dumps(item)))  # and pystac's object model reads it
    return item


def test_a_map_at_local_solar_time_spans_the_instants_across_its_longitudes():
    item = valid(stac_item(result(BBox(5, 43, 10, 47), "2024-01-15T09:00"), "./a.tif"))
    props = item["properties"]
    # 09:00 local solar time at lon 9.75 (east cell centre) is 08:21 UTC; at 5.25, 08:39.
    assert props["datetime"] is None
    assert props["start_datetime"] == "2024-01-15T08:21:00Z"
    assert props["end_datetime"] == "2024-01-15T08:39:00Z"
    assert props["omnimap:prompt"] == "snow" and props["omnimap:time_mode"] == "local-solar"
    assert item["bbox"] == [5.0, 43.0, 10.0, 47.0] and item["geometry"]["type"] == "Polygon"
    data = item["assets"]["data"]
    assert data["type"] == COG_MEDIA_TYPE and data["roles"] == ["data"]
    assert data["nodata"] == "nan" and data["data_type"] == "float32"
    assert 0 < data["statistics"]["valid_percent"] < 100  # one NaN cell
    assert item["id"] == "a"


def test_an_antimeridian_map_is_split_as_rfc7946_wants():
    item = valid(stac_item(result(BBox(170, -20, -170, -10), "2024-01-15T09:00+01:00"), "x.tif"))
    assert item["bbox"] == [170.0, -20.0, -170.0, -10.0]  # west > east: crosses 180
    geometry = item["geometry"]
    assert geometry["type"] == "MultiPolygon" and len(geometry["coordinates"]) == 2
    assert all(abs(x) <= 180 for poly in geometry["coordinates"] for x, _ in poly[0])
    assert item["properties"]["datetime"] == "2024-01-15T08:00:00Z"  # one instant


def test_a_time_free_world_map_is_dated_when_it_was_made():
    item = valid(stac_item(result(BBox.world(), None, 2.0), "w.tif", created=CREATED))
    assert item["properties"]["datetime"] == "2025-03-01T12:00:00Z"
    assert item["properties"]["omnimap:when"] is None
    assert item["bbox"] == [-180.0, -90.0, 180.0, 90.0]


def test_written_beside_the_map_with_relative_hrefs(tmp_path):
    r = result(BBox(5, 43, 10, 47), "2024-06-01T12:00")
    paths = r.write(tmp_path / "alps.tif")
    out = write_stac_item(r, paths["tif"], png_path=paths["png"], geojson_path=paths["geojson"])
    assert out == tmp_path / "alps.stac.json"
    item = valid(json.loads(out.read_text()))
    hrefs = {k: a["href"] for k, a in item["assets"].items()}
    assert hrefs == {"data": "./alps.tif", "overview": "./alps.png", "peaks": "./alps.geojson"}
    loaded = pystac.Item.from_file(str(out))
    assert loaded.assets["data"].get_absolute_href() == str(tmp_path / "alps.tif")


def test_the_offline_validator_does_reject_broken_items():
    item = stac_item(result(BBox(5, 43, 10, 47), None), "a.tif", created=CREATED)
    broken = {**item, "assets": {"data": {**item["assets"]["data"], "data_type": "float31"}}}
    with pytest.raises(STACValidationError):
        validate_dict(broken)
    with pytest.raises(STACValidationError):
        validate_dict({k: v for k, v in item.items() if k != "links"})
