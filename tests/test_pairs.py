"""Pairs: EXIF geotags, GeoParquet tables, skipped photos, shards, teacher embeddings, CLI."""

from __future__ import annotations

import csv
import json
import struct
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import ExifTags, Image
from PIL.TiffImagePlugin import IFDRational
from typer.testing import CliRunner

from omnimap.cli.pairs import pairs_app
from omnimap.core.digest import text_keys
from omnimap.core.errors import DataError, InputError
from omnimap.core.store import ArrayStore
from omnimap.datasets.crossview import open_pairs
from omnimap.datasets.pairs.build import from_csv, from_photos
from omnimap.datasets.pairs.exif import PhotoSkip, open_checked, photo_meta, write_geotagged_jpeg
from omnimap.datasets.pairs.shards import ShardReader, write_shards
from omnimap.datasets.pairs.table import read_pairs
from omnimap.sources import open_source
from omnimap.teachers.store import EmbeddingStore

WHEN = datetime(2024, 7, 1, 16, 45, 30)


def read_meta(path):
    return photo_meta(open_checked(path.read_bytes()))


@pytest.mark.parametrize(
    ("lon", "lat", "offset", "altitude"),
    [
        (2.3522219, 48.856614, 120, 35.5),  # N, E
        (-70.6692655, -33.4488897, -240, None),  # S, W
        (151.2092955, -33.8688197, 600, -3.25),  # S, E (below sea level)
        (-122.4194155, 37.7749295, None, None),  # N, W, naive local time
        (0.0, 0.0, -570, 0.0),  # -09:30
    ],
)
def test_exif_round_trip(tmp_path, lon, lat, offset, altitude):
    path = tmp_path / "p.jpg"
    write_geotagged_jpeg(path, lon, lat, WHEN, offset=offset, altitude=altitude, seed=3)
    meta = read_meta(path)
    assert meta.lon == pytest.approx(lon, abs=1e-7) and meta.lat == pytest.approx(lat, abs=1e-7)
    assert meta.datetime_local == WHEN and meta.utc_offset_minutes == offset
    assert meta.altitude_m == (None if altitude is None else pytest.approx(altitude))
    gps = Image.open(path).getexif().get_ifd(ExifTags.IFD.GPSInfo)
    assert gps[1] == ("N" if lat >= 0 else "S") and gps[3] == ("E" if lon >= 0 else "W")
    assert len(gps[2]) == 3 and all(isinstance(v, IFDRational) for v in gps[2])  # D, M, S


def test_exif_aware_time_and_odd_rationals(tmp_path):
    path = tmp_path / "aware.jpg"
    write_geotagged_jpeg(path, 10, 20, WHEN.replace(tzinfo=timezone(timedelta(hours=-3))))
    assert read_meta(path).utc_offset_minutes == -180 and read_meta(path).datetime_local == WHEN

    def with_gps(gps: dict) -> Image.Image:
        exif = Image.Exif()
        exif[ExifTags.IFD.GPSInfo] = gps
        path = tmp_path / "odd.jpg"
        Image.new("RGB", (8, 8)).save(path, exif=exif)
        return open_checked(path.read_bytes())

    # Degrees as one decimal rational (some writers): accepted.
    meta = photo_meta(
        with_gps({1: "S", 2: (IFDRational(3345, 100),), 3: "E", 4: (IFDRational(15, 1),)})
    )
    assert (meta.lat, meta.lon, meta.datetime_local) == (-33.45, 15.0, None)
    for bad in ({1: "S", 2: (IFDRational(1, 0), 0, 0), 3: "E", 4: (1, 0, 0)},  # x/0
                {1: "Q", 2: (1, 0, 0), 3: "E", 4: (1, 0, 0)}):  # fmt: skip
        with pytest.raises(PhotoSkip) as info:
            photo_meta(with_gps(bad))
        assert info.value.reason == "bad_coordinates"


@pytest.fixture
def photo_dir(tmp_path):
    root = tmp_path / "photos"
    (root / "trip").mkdir(parents=True)
    write_geotagged_jpeg(root / "a.jpg", 10.0, 45.0, WHEN, offset=120, seed=1)
    write_geotagged_jpeg(root / "trip" / "b.JPG", -60.0, -10.0, WHEN, seed=2)
    write_geotagged_jpeg(root / "trip" / "c.jpeg", 100.0, 30.0, WHEN, offset=420, seed=3)
    (root / "copy-of-a.jpg").write_bytes((root / "a.jpg").read_bytes())
    write_geotagged_jpeg(root / "polar.jpg", 10.0, 95.0, WHEN, seed=4)  # lat > 90
    Image.new("RGB", (32, 32), "red").save(root / "nogps.jpg")
    data = (root / "trip" / "c.jpeg").read_bytes()
    (root / "truncated.jpg").write_bytes(data[: len(data) * 2 // 3])
    (root / "notes.jpg").write_text("not an image")
    (root / "readme.txt").write_text("ignored: not a photo extension")
    (root / "._a.jpg").write_bytes(b"macOS companion: hidden, ignored")
    return root


def test_from_photos_counts_and_lists_skips(photo_dir, tmp_path):
    out = tmp_path / "out" / "pairs.parquet"
    summary = from_photos(photo_dir, "bmng", out, ground_size_m=100_000, pixels=8)
    assert summary["candidates"] == 8 and summary["written"] == 3 and summary["skipped"] == 5
    assert summary["skipped_by_reason"] == {
        "bad_coordinates": 1,
        "duplicate": 1,
        "no_gps": 1,
        "unreadable": 2,
    }
    assert summary["without_utc_offset"] == 1 and summary["without_datetime"] == 0
    with open(out.with_name("pairs.skipped.csv"), encoding="utf-8") as fh:
        listed = {row["item"]: row for row in csv.DictReader(fh)}
    assert (
        listed["polar.jpg"]["reason"] == "bad_coordinates" and "95" in listed["polar.jpg"]["detail"]
    )
    assert listed["copy-of-a.jpg"]["detail"] == "same bytes as a.jpg"
    assert {listed["truncated.jpg"]["reason"], listed["notes.jpg"]["reason"]} == {"unreadable"}
    assert listed["nogps.jpg"]["reason"] == "no_gps"

    pairs = read_pairs(out)
    rows = {r["ground_path"]: r for r in pairs.table.to_pylist()}
    assert set(rows) == {
        "../photos/a.jpg",
        "../photos/trip/b.JPG",
        "../photos/trip/c.jpeg",
    }
    a = rows["../photos/a.jpg"]
    assert (a["lon"], a["lat"], a["datetime_local"], a["utc_offset_minutes"]) == (
        pytest.approx(10.0), pytest.approx(45.0), "2024-07-01T16:45:30", 120)  # fmt: skip
    assert rows["../photos/trip/b.JPG"]["utc_offset_minutes"] is None
    assert all(p.is_file() for p in pairs.ground_paths())
    assert {r["overhead_ref"] for r in rows.values()} == {open_source("bmng", 100_000, 8).key}
    assert open_source("bmng", 100_000, 8).key == summary["imagery"]
    assert pairs.imagery["type"] == "bmng" and "Blue Marble" in pairs.attribution


def test_geoparquet_metadata(photo_dir, tmp_path):
    out = tmp_path / "pairs.parquet"
    from_photos(photo_dir, "bmng", out, ground_size_m=100_000, pixels=8)
    table = pq.read_table(out)
    geo = json.loads(table.schema.metadata[b"geo"])
    column = geo["columns"]["geometry"]
    assert geo["primary_column"] == "geometry" and geo["version"].startswith("1.")
    assert column["encoding"] == "WKB" and column["geometry_types"] == ["Point"]
    assert column["crs"]["id"] == {"authority": "OGC", "code": "CRS84"}
    assert column["bbox"] == pytest.approx([-60.0, -10.0, 100.0, 45.0])
    for wkb, lon, lat in zip(
        *(table.column(c).to_pylist() for c in ("geometry", "lon", "lat")), strict=True
    ):
        assert struct.unpack("<BIdd", wkb) == (1, 1, lon, lat)


def test_geoparquet_reads_in_geopandas(photo_dir, tmp_path):
    gpd = pytest.importorskip("geopandas")  # an independent GeoParquet reader, if present
    out = tmp_path / "pairs.parquet"
    from_photos(photo_dir, "bmng", out, ground_size_m=100_000, pixels=8)
    frame = gpd.read_parquet(out)
    assert frame.crs.equals("OGC:CRS84")  # EPSG:4326 with longitude first
    assert frame.crs.equals("EPSG:4326", ignore_axis_order=True)
    assert np.allclose(frame.geometry.x, frame["lon"]) and np.allclose(
        frame.geometry.y, frame["lat"]
    )


def test_read_pairs_rejects_other_parquet(tmp_path):
    import pyarrow as pa

    pq.write_table(pa.table({"lon": [1.0]}), tmp_path / "plain.parquet")
    with pytest.raises(DataError, match="not an omnimap pairs table"):
        read_pairs(tmp_path / "plain.parquet")
    with pytest.raises(DataError, match="cannot read"):
        read_pairs(tmp_path / "missing.parquet")


def test_from_csv_validates_rows(tmp_path):
    photos = tmp_path / "photos"
    for i in range(3):
        write_geotagged_jpeg(photos / f"{i}.jpg", 0, 0, WHEN, seed=i)
    (photos / "text.jpg").write_text("nope")
    lines = [
        ("lon", "lat", "datetime", "path"),
        (10, 45, "2024-01-15T09:00:00+01:00", "photos/0.jpg"),  # line 2
        (-60.5, -10, "2024-01-15T09:00", "photos/1.jpg"),
        (100, 30, "", str((photos / "2.jpg").resolve())),  # absolute, time unknown
        ("abc", 45, "", "photos/0.jpg"),  # line 5
        (10, 95, "", "photos/0.jpg"),
        (10, 45, "15/01/2024", "photos/0.jpg"),
        (10, 45, "", "photos/missing.jpg"),
        (10, 45, "", "photos/text.jpg"),
        (11, 46, "2024-01-15T09:00:00Z", "photos/0.jpg"),  # line 10: duplicate
    ]
    with open(tmp_path / "list.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(lines)
    out = tmp_path / "pairs.parquet"
    summary = from_csv(tmp_path / "list.csv", "bmng", out, ground_size_m=100_000, pixels=8)
    assert summary["written"] == 3 and summary["candidates"] == 9
    assert summary["skipped_by_reason"] == {"bad_coordinates": 2, "bad_datetime": 1, "duplicate": 1,
                                            "missing_file": 1, "unreadable": 1}  # fmt: skip
    with open(tmp_path / "pairs.skipped.csv", encoding="utf-8") as fh:
        listed = {row["item"]: row["reason"] for row in csv.DictReader(fh)}
    assert listed == {"line 5": "bad_coordinates", "line 6": "bad_coordinates", "line 7": "bad_datetime",
                      "line 8": "missing_file", "line 9": "unreadable", "line 10": "duplicate"}  # fmt: skip
    rows = read_pairs(out).table.to_pylist()
    assert [(r["datetime_local"], r["utc_offset_minutes"]) for r in rows] == [
        ("2024-01-15T09:00:00", 60), ("2024-01-15T09:00:00", None), (None, None)]  # fmt: skip
    (tmp_path / "bad.csv").write_text("x,y\n1,2\n")
    with pytest.raises(InputError, match="lacks column"):
        from_csv(tmp_path / "bad.csv", "bmng", out)


# --- shards -----------------------------------------------------------------------

POINTS = [(10.0, 45.0), (-60.0, -10.0), (100.0, 30.0), (179.99, 0.0), (20.0, -30.0),
          (-100.0, 40.0), (30.0, 60.0), (140.0, 35.0)]  # fmt: skip  # 179.99: no patch


@pytest.fixture
def pairs_table(tmp_path):
    for i, (lon, lat) in enumerate(POINTS):
        write_geotagged_jpeg(tmp_path / "photos" / f"{i}.jpg", lon, lat, WHEN, offset=0, seed=i)
    out = tmp_path / "pairs.parquet"
    from_photos(tmp_path / "photos", "bmng", out, ground_size_m=100_000, pixels=8)
    return out


def test_shards_round_trip(pairs_table, tmp_path):
    summary = write_shards(pairs_table, tmp_path / "shards", samples_per_shard=3)
    assert (summary["shards"], summary["samples"], summary["skipped"]) == (3, 7, 1)
    assert summary["skipped_by_reason"] == {"no_imagery": 1}
    pairs = read_pairs(pairs_table)
    table = {r["id"]: r for r in pairs.table.to_pylist()}
    source = open_source("bmng", 100_000, 8)
    data = open_pairs(tmp_path / "shards")  # read by row, as training and evaluation do
    ordered = [r["id"] for r in pairs.table.to_pylist() if r["lon"] < 179]
    assert data.ids.tolist() == ordered and len(ShardReader(tmp_path / "shards")) == 7
    direct = open_pairs(pairs_table)
    same = [list(direct.ids).index(i) for i in ordered]
    np.testing.assert_array_equal(data.meta, direct.meta[same])
    for row, sid in enumerate(ordered):
        r = table[sid]
        assert (data.lon[row], data.lat[row]) == (r["lon"], r["lat"])
        np.testing.assert_array_equal(
            data.patches(np.array([row]))[0], source.patches([r["lon"]], [r["lat"]])[0]
        )
        photo = data.photos(np.array([row]))[0]
        with Image.open(pairs_table.parent / r["ground_path"]) as im:
            np.testing.assert_array_equal(np.asarray(photo), np.asarray(im.convert("RGB")))
    manifest = json.loads((tmp_path / "shards" / "manifest.json").read_text())
    assert manifest["overhead_ref"] == source.key and "Blue Marble" in manifest["attribution"]
    skipped = list(csv.DictReader(open(tmp_path / "shards" / "skipped.csv", encoding="utf-8")))
    assert [r["reason"] for r in skipped] == ["no_imagery"] and "antimeridian" in skipped[0][
        "detail"
    ]


class CrashingSource:
    """The real source, but the ``fail_at``-th read raises, as a crash would."""

    def __init__(self, source, fail_at: int):
        self.source, self.calls, self.fail_at = source, 0, fail_at
        self.key, self.patch_size, self.attribution = (
            source.key,
            source.patch_size,
            source.attribution,
        )
        self.to_config = source.to_config

    def read(self, lon, lat, size=None):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        return self.source.read(lon, lat, size)


def test_shard_writer_is_atomic_and_resumes(pairs_table, tmp_path):
    shards = tmp_path / "shards"
    source = open_source("bmng", 100_000, 8)
    with pytest.raises(KeyboardInterrupt):  # dies in the middle of the second shard
        write_shards(
            pairs_table,
            shards,
            samples_per_shard=3,
            batch_size=1,
            imagery=CrashingSource(source, 5),
        )
    assert sorted(p.name for p in shards.iterdir()) == ["shard-000000.json", "shard-000000.tar"]
    with pytest.raises(DataError, match="unfinished"):
        ShardReader(shards)
    (shards / ".shard-000001.tar.x1y2.tmp.tar").write_bytes(b"left by a killed run")
    summary = write_shards(pairs_table, shards, samples_per_shard=3)
    assert summary["resumed_shards"] == 1 and summary["samples"] == 7
    assert not list(shards.glob(".shard-*"))
    first = (shards / "shard-000000.tar").stat().st_mtime_ns
    (shards / "shard-000002.tar").unlink()
    again = write_shards(pairs_table, shards, samples_per_shard=3)
    assert (
        again["resumed_shards"] == 2 and (shards / "shard-000000.tar").stat().st_mtime_ns == first
    )
    assert len(open_pairs(shards)) == 7
    with pytest.raises(DataError, match="made for imagery"):
        write_shards(pairs_table, shards, imagery=open_source("bmng", 50_000, 8))


def test_teacher_embeddings(pairs_table, tmp_path):
    shards = tmp_path / "shards"
    write_shards(pairs_table, shards, samples_per_shard=3)
    ids = [str(i) for i in open_pairs(shards).ids]
    vectors = np.random.default_rng(0).normal(size=(len(ids), 4)).astype(np.float32)
    space = "clip-image-0123"

    def beside_the_shards():
        return EmbeddingStore(space, ArrayStore("teacher", root=shards))

    store = beside_the_shards()
    assert len(store) == 0
    store.add(text_keys(ids[:3]), vectors[:3])
    store.add(text_keys(ids[3:]), vectors[3:])
    store.add(text_keys(ids[:3]), vectors[:3])  # already there: no new segment
    assert len(list((shards / "teacher").glob("*.bin"))) == 2
    stored = beside_the_shards()
    assert len(stored) == len(ids)
    got, found = stored.lookup(text_keys([ids[5], "unknown", ids[0]]))
    assert found.tolist() == [True, False, True]
    np.testing.assert_array_equal(got[[0, 2]], vectors[[5, 0]])
    assert not got[1].any()
    # Raw arrays and JSON manifests only: nothing to unpickle.
    assert {p.suffix for p in (shards / "teacher").iterdir()} == {".bin", ".json"}
    with pytest.raises(ValueError, match="dim 8"):
        stored.add(text_keys(["new"]), np.zeros((1, 8), np.float32))


def test_cli(photo_dir, tmp_path):
    runner = CliRunner()
    out = tmp_path / "pairs.parquet"
    args = ["from-photos", str(photo_dir), "--imagery", "bmng", "--out", str(out),
            "--ground-size-m", "100000", "--pixels", "8"]  # fmt: skip
    result = runner.invoke(pairs_app, args)
    assert result.exit_code == 0, result.output
    assert "wrote 3 pairs" in result.output and "skipped 5" in result.output
    assert "no_gps 1" in result.output and "Blue Marble" in result.output
    result = runner.invoke(pairs_app, ["shard", str(out), "--out", str(tmp_path / "shards")])
    assert result.exit_code == 0, result.output
    assert "wrote 3 samples in 1 shards" in result.output
    result = runner.invoke(pairs_app, ["from-csv", str(tmp_path / "none.csv"), "--imagery", "bmng",
                                       "--out", str(out)])  # fmt: skip
    assert isinstance(result.exception, InputError)
