"""The command line: outputs, and one clear line + exit code 2 for every user error."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from faults import run_cli


def assert_user_error(code, err, *fragments):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    for f in fragments:
        assert f in lines[0], lines[0]


def test_map_writes_geotiff_png_and_geojson(tiny_model_dir, tmp_path):
    out = tmp_path / "maps" / "alps.tif"
    code, stdout, err = run_cli("map", "snow on the mountains", "--region", "Alps", "--when", "2024-01-15T09:00",
                                "--resolution", "0.25", "--out", str(out), "--model", str(tiny_model_dir))  # fmt: skip
    assert code == 0, err
    assert (
        out.exists() and out.with_suffix(".png").exists() and out.with_suffix(".geojson").exists()
    )
    assert "peak 1" in stdout and "Alps" in stdout
    peaks = json.loads(out.with_suffix(".geojson").read_text())
    assert peaks["type"] == "FeatureCollection" and len(peaks["features"]) >= 1
    assert peaks["prompt"] == "snow on the mountains"


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--bbox", "10,20,30"], ["W,S,E,N"]),
        (["--bbox", "0,-95,10,10"], ["latitudes"]),
        (["--bbox", "0,10,10,5"], ["south"]),
        (["--region", "Alsp"], ["unknown region", "Alps"]),
        (["--when", "2024-13-45"], ["bad date"]),
        (["--resolution", "0.002"], ["cells is larger than the limit"]),
        (["--bbox", "0,0,1,1", "--region", "Alps"], ["either a bbox or a region"]),
        (["--out", "map.png"], [".tif"]),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(args, fragments, tiny_model_dir, tmp_path):
    os.chdir(tmp_path)
    argv = ["map", "sea", "--model", str(tiny_model_dir), *args]
    if "--out" not in args:
        argv += ["--out", str(tmp_path / "x.tif")]
    code, _, err = run_cli(*argv)
    assert_user_error(code, err, *fragments)
    assert list(tmp_path.glob("*.tif")) == [] and list(tmp_path.glob(".*tmp*")) == []


def test_empty_prompt(tiny_model_dir, tmp_path):
    code, _, err = run_cli(
        "map",
        "  ",
        "--model",
        str(tiny_model_dir),
        "--bbox",
        "0,0,1,1",
        "--out",
        str(tmp_path / "e.tif"),
    )
    assert_user_error(code, err, "prompt is empty")
    assert not (tmp_path / "e.tif").exists()


def test_missing_and_corrupt_models(tiny_model_dir, tmp_path):
    code, _, err = run_cli(
        "map", "sea", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "a.tif")
    )
    assert_user_error(code, err, "neither a directory nor a built-in model")
    bad = tmp_path / "bad-model"
    bad.mkdir()
    for f in tiny_model_dir.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    weights = bytearray((bad / "model.safetensors").read_bytes())
    weights[200] ^= 0x55
    (bad / "model.safetensors").write_bytes(bytes(weights))
    code, _, err = run_cli(
        "map", "sea", "--model", str(bad), "--bbox", "0,0,1,1", "--out", str(tmp_path / "b.tif")
    )
    assert_user_error(code, err, "corrupt or replaced")
    assert not (tmp_path / "a.tif").exists() and not (tmp_path / "b.tif").exists()


def test_unknown_training_option_is_rejected(tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"stepz": 10}))
    code, _, err = run_cli("train", "atlas", "--config", str(cfg), "--out", str(tmp_path / "run"))
    assert_user_error(code, err, "unknown training option", "stepz")


def test_real_process_exit_code_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "omnimap.cli", "map", "sea", "--bbox", "1,2,3"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: bbox must be W,S,E,N (4 numbers), got '1,2,3'"
    ]


@pytest.mark.slow
def test_builtin_atlas_end_to_end_in_a_subprocess(tmp_path):
    """The README's first example with the shipped model: a valid COG and friends."""
    import rasterio
    from rio_cogeo.cogeo import cog_validate

    out = tmp_path / "alps.tif"
    proc = subprocess.run([sys.executable, "-m", "omnimap.cli", "map", "snow-covered mountains", "--region", "Alps",
                           "--when", "2024-01-15T09:00", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    valid, errors, _ = cog_validate(str(out))
    assert valid, errors
    with rasterio.open(out) as ds:
        assert ds.count == 1 and ds.dtypes[0] == "float32" and ds.crs.to_epsg() == 4326
        assert np.isnan(ds.nodata)
        data = ds.read(1)
        assert np.isfinite(data).all() and data.std() > 0.01
        assert ds.tags()["prompt"] == "snow-covered mountains"
    assert out.with_suffix(".png").stat().st_size > 20_000
    assert len(json.loads(out.with_suffix(".geojson").read_text())["features"]) == 10
