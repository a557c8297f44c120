"""The field commands as omnimap.cli will mount them: field build, search, map --field."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from omnimap import api
from omnimap.cli.main import app
from omnimap.core.errors import InputError


@pytest.fixture(scope="module")
def built(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "eu.field"
    result = CliRunner().invoke(app, ["field", "build", "--out", str(out), "--bbox", "-10,35,30,60",
                                      "--resolution", "2", "--model", str(tiny_model_dir),
                                      "--dtype", "int8", "--chunk", "8"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "built 6 of 6 chunks (260 cells)" in result.output  # 20 x 13 cells
    return out


def test_build_again_finds_it_done(built, tiny_model_dir):
    result = CliRunner().invoke(app, ["field", "build", "--out", str(built), "--bbox", "-10,35,30,60",
                                      "--resolution", "2", "--model", str(tiny_model_dir),
                                      "--dtype", "int8", "--chunk", "8"])  # fmt: skip
    assert result.exit_code == 0 and "built 0 of 6 chunks" in result.output
    assert "6 were already built" in result.output


def test_search_prints_a_table_and_writes_geojson(built, tmp_path):
    geojson = tmp_path / "hits.geojson"
    result = CliRunner().invoke(app, ["search", "snow", "--field", str(built), "--k", "3",
                                      "--when", "2024-01-15T09:00", "--geojson", str(geojson)])  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith('top 3 cells for "snow" (2024-01-15 09:00 local solar time')
    assert [line.split()[0] for line in lines[2:5]] == ["1", "2", "3"]
    features = json.loads(geojson.read_text())["features"]
    assert [round(float(lines[2 + i].split()[3]), 4) for i in range(3)] == [
        round(f["properties"]["score"], 4) for f in features]  # fmt: skip


def test_map_with_field(built, tmp_path):
    out = tmp_path / "forest.tif"
    result = CliRunner().invoke(app, ["map", "forest", "--field", str(built), "--bbox", "0,40,10,50",
                                      "--when", "2024-07-01T12:00", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    same = api.zero_shot_map("forest", field=built, bbox="0,40,10,50", when="2024-07-01T12:00")
    import rasterio

    with rasterio.open(out) as src:
        np.testing.assert_array_equal(src.read(1), same.scores)
    assert api.zero_shot_map("forest", field=built).grid.shape == (13, 20)  # the field's extent
    coarse = api.zero_shot_map("forest", field=built, resolution=4.0)  # 2 x 2 blocks of cells
    assert coarse.grid.resolution == 4.0 and np.isfinite(coarse.scores).all()
    with pytest.raises(InputError, match="whole multiple of the field's 2 deg"):
        api.zero_shot_map("forest", field=built, resolution=0.5)


@pytest.mark.parametrize(
    "args",
    [["search", "sea", "--method", "hnsw"], ["search", "sea", "--k", "0"],
     ["field", "build", "--out", "x.field", "--resolution", "1", "--dtype", "int4"]],
)  # fmt: skip
def test_user_errors_are_one_line(built, args):
    if args[0] == "search":
        args = [*args, "--field", str(built)]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, InputError), result.output
    assert "\n" not in str(result.exception)
