"""Class-set maps: the sets, the probabilities (one scoring path), the files, bad input."""

import numpy as np
import pytest
import rasterio
from tests.test_cli import assert_user_error, run_cli

from omnimap import api
from omnimap.core.errors import InputError
from omnimap.maps import classes as C


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_teacher_dir):
    """A tiny random student with a learned temperature, as trained models record."""
    import torch

    from omnimap.models.checkpoint import save_checkpoint
    from omnimap.models.student import build_student

    arch = {"dim": 16, "overhead": {"type": "patch_cnn", "patch_size": 16, "channels": [8, 16], "hidden": 32},
            "dynamic": {"inputs": 12, "hidden": 8}}  # fmt: skip
    torch.manual_seed(3)
    config = {"name": "tiny-t", **arch, "teacher": {"name": str(tiny_teacher_dir), "dim": 16},
              "imagery": {"name": "bmng", "patch_size": 16}, "temperature": 0.05}  # fmt: skip
    path = tmp_path_factory.mktemp("tiny-t")
    save_checkpoint(build_student(arch), config, path)
    return path


def test_builtin_sets():
    t = C.read_class_set("transient")
    assert len(t.classes) == 40 and {"night", "dark", "daylight", "bright", "lush"} <= set(t.classes)
    assert len(C.read_class_set("IGBP").classes) == 17
    assert len(C.read_class_set("scenes").classes) >= 20


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("", "holds no classes"),
        ("\n  \n# only a comment\n", "holds no classes"),
        ("forest\nsea\nForest\n", "lists 'Forest' twice"),
        ("".join(f"class {i}\n" for i in range(257)), "257 classes; at most 256"),
        ("forest\n", "at least 2 classes"),
    ],
)
def test_bad_class_files(tmp_path, content, fragment):
    path = tmp_path / "mine.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=fragment):
        C.read_class_set(str(path))


def test_unknown_set_suggests_the_known_ones(tmp_path):
    with pytest.raises(InputError) as info:
        C.read_class_set("transiant")
    assert "did you mean 'transient'" in str(info.value) and "scenes" in str(info.value)
    with pytest.raises(InputError, match="does not exist"):
        C.read_class_set(str(tmp_path / "missing.txt"))


def test_user_file_keeps_order_and_skips_blanks(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("sea\n\n  desert  \n# comment\nsnow on the mountains\n", encoding="utf-8")
    s = C.read_class_set(str(path))
    assert s.classes == ("sea", "desert", "snow on the mountains") and s.name == "mine"


def test_softmax_sums_to_one_and_keeps_nodata():
    logits = np.array([[1.0, np.nan, 3.0], [2.0, 0.0, 3.0]])
    p = C.softmax(logits, axis=0)
    assert np.allclose(p[:, [0, 2]].sum(axis=0), 1.0) and np.isnan(p[:, 1]).all()
    assert p[1, 0] == pytest.approx(np.exp(1) / (1 + np.exp(1)), rel=1e-6)


def test_probabilities_are_the_softmax_of_the_prompt_maps(model_dir):
    names = ["sea", "desert", "snow on the mountains", "city lights at night"]
    result = api.class_map(names, bbox="5,44,9,47", resolution=0.5, when="2024-01-15T03:00",
                           model=str(model_dir))  # fmt: skip
    p = result.probabilities
    assert p.shape == (4, *result.grid.shape) and np.allclose(p.sum(axis=0), 1.0, atol=1e-5)
    assert result.temperature == pytest.approx(0.05)
    # The same numbers as the single-prompt maps through the one scoring path.
    single = [api.zero_shot_map(n, bbox="5,44,9,47", resolution=0.5, when="2024-01-15T03:00",
                                model=str(model_dir)).scores for n in names]  # fmt: skip
    expected = C.softmax(np.stack(single) / 0.05, axis=0)
    np.testing.assert_allclose(p, expected, atol=2e-3)
    assert (result.argmax == np.argmax(np.stack(single), axis=0)).mean() > 0.95


def test_cli_writes_bands_categories_and_png(model_dir, tmp_path):
    out = tmp_path / "maps" / "alps.tif"
    path = tmp_path / "mine.txt"
    path.write_text("sea\ndesert\nforest\n", encoding="utf-8")
    code, stdout, err = run_cli("map", "--classes", str(path), "--region", "Alps", "--resolution", "0.5",
                                "--when", "2024-07-15T12:00", "--out", str(out), "--model", str(model_dir))  # fmt: skip
    assert code == 0, err
    with rasterio.open(out) as src:
        assert src.count == 3 and src.descriptions == ("sea", "desert", "forest")
        bands = src.read()
        assert np.allclose(bands.sum(axis=0), 1.0, atol=1e-5)
    with rasterio.open(tmp_path / "maps" / "alps-class.tif") as src:
        cats = src.read(1)
        assert src.dtypes[0] == "uint8" and set(np.unique(cats)) <= {0, 1, 2}
        assert (cats == bands.argmax(axis=0)).all()
        assert src.colormap(1)[0][:3] != src.colormap(1)[1][:3]
        assert src.tags(1)["class_2"] == "forest"
    assert (tmp_path / "maps" / "alps.png").stat().st_size > 10_000
    assert "3 classes" in stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--classes", "transiant"], "did you mean 'transient'"),
        (["--classes", "EMPTY"], "holds no classes"),
        (["--classes", "DUPES"], "twice"),
        (["--classes", "BIG"], "at most 256"),
        (["sea", "--classes", "igbp"], "exactly one of PROMPT, --classes or --audio"),
        ([], "exactly one of PROMPT, --classes or --audio"),
    ],
)
def test_cli_bad_class_sets_exit_2_and_write_nothing(model_dir, tmp_path, args, fragment):
    files = {"EMPTY": "", "DUPES": "sea\nsea\n", "BIG": "".join(f"c{i}\n" for i in range(300))}
    for name, text in files.items():
        (tmp_path / f"{name}.txt").write_text(text, encoding="utf-8")
    args = [str(tmp_path / f"{a}.txt") if a in files else a for a in args]
    out = tmp_path / "out" / "x.tif"
    code, _, err = run_cli("map", *args, "--bbox", "0,0,2,2", "--out", str(out), "--model", str(model_dir))
    assert_user_error(code, err, fragment)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
