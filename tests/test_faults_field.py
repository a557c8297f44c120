"""Fault injection, fields: every kind of chunk damage is one line naming the command
that repairs it, and that command (the same build) rebuilds exactly the damaged chunks."""

import shlex
import shutil

import numpy as np
import pytest
import zarr

from faults import fresh_engines, run_cli
from omnimap.fields.build import build_field
from omnimap.fields.store import Field

BBOX, RES, CHUNK = "-20,30,40,60", 1.0, 8  # 60 x 30 cells: 4 x 8 chunks of 8 x 8


@pytest.fixture(scope="module")
def pristine(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("faults-field")
    fields = {}
    for dtype in ("float16", "int8"):
        fields[dtype] = root / f"{dtype}.field"
        build_field(fields[dtype], bbox=BBOX, resolution=RES, chunk=CHUNK, dtype=dtype,
                    model=str(tiny_model_dir), progress=False)  # fmt: skip
    return fields


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """A cache per test: a map of a repaired field would otherwise come from the cache
    (same content, same key) without reading the next test's damaged chunks."""
    monkeypatch.setenv("OMNIMAP_CACHE_DIR", str(tmp_path / "cache"))
    fresh_engines()
    yield
    fresh_engines()


def stored(path):
    group = zarr.open_group(str(path), mode="r")
    return {name: group[name][...] for name in ("o", "scale") if name in group}


def chunk_file(field, cid, array="o"):
    suffix = "/0" if array == "o" else ""
    return field / array / "c" / str(cid[0]) / f"{cid[1]}{suffix}"


def flip(path, at=5):  # in the first cell: edge chunks have padding past their cells
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path):
    path.write_bytes(path.read_bytes()[:1000])


DAMAGE = {
    "missing": lambda f, cid: chunk_file(f, cid).unlink(),
    "truncated": lambda f, cid: truncate(chunk_file(f, cid)),
    "corrupt": lambda f, cid: flip(chunk_file(f, cid)),
    "unreadable": lambda f, cid: (f / "done" / f"{cid[0]}_{cid[1]}.json").write_bytes(b"\x00{garbage"),
}


@pytest.mark.parametrize("kind", DAMAGE)
@pytest.mark.parametrize("dtype", ["float16", "int8"])
def test_each_damage_is_one_line_and_the_named_command_repairs_it(pristine, tmp_path, kind, dtype):
    field = tmp_path / "f.field"
    shutil.copytree(pristine[dtype], field)
    DAMAGE[kind](field, (1, 2))
    DAMAGE[kind](field, (3, 7))
    code, _, err = run_cli("map", "sea", "--field", field, "--bbox", BBOX, "--out", tmp_path / "m.tif")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("error: chunk (1, 2) of field") or err.startswith("error: chunk (3, 7)")
    assert {"missing": "is missing", "truncated": "is truncated", "corrupt": "digest mismatch",
            "unreadable": "unreadable done record"}[kind] in err  # fmt: skip
    assert not list(tmp_path.glob("m.*"))
    command = shlex.split(err.split("rebuild it with: ", 1)[1])
    assert command[:3] == ["omnimap", "field", "build"]
    code, out, err = run_cli(*command[1:])
    assert code == 0, err
    assert "built 2 of 32 chunks" in out and "30 were already built" in out
    assert f"repaired 2 damaged chunks (2 {kind})" in out
    for name, values in stored(field).items():
        np.testing.assert_array_equal(values, stored(pristine[dtype])[name])
    code, out, err = run_cli(*command[1:])  # nothing left to repair
    assert code == 0 and "built 0 of 32" in out and "repaired" not in out
    code, _, err = run_cli("map", "sea", "--field", field, "--out", tmp_path / "m.tif")
    assert code == 0, err


def test_missing_scale_chunk_of_an_int8_field(pristine, tmp_path):
    field = tmp_path / "f.field"
    shutil.copytree(pristine["int8"], field)
    chunk_file(field, (2, 3), "scale").unlink()
    with pytest.raises(Exception, match=r"chunk \(2, 3\) .* is missing"):
        Field.open(field).read_chunk((2, 3))
    report = build_field(field, bbox=BBOX, resolution=RES, chunk=CHUNK, dtype="int8",
                         model=Field.open(field).spec.model["source"], progress=False)  # fmt: skip
    assert (report.chunks_built, report.repaired) == (1, {"missing": 1})
    np.testing.assert_array_equal(stored(field)["scale"], stored(pristine["int8"])["scale"])
