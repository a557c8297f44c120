"""Inputs a user meets: each bad one is one line and exit code 2, before any work."""

import io
import os
import subprocess
import sys

import numpy as np
import pytest

from faults import run_cli


def test_non_utf8_csv_is_one_line(tmp_path):
    csv = tmp_path / "photos.csv"
    csv.write_bytes("lon,lat,datetime,path\n2.35,48.85,,caf\xe9.jpg\n".encode("latin-1"))
    code, _, err = run_cli(
        "pairs", "from-csv", csv, "--imagery", "bmng", "--out", tmp_path / "p.parquet"
    )
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "is not UTF-8 (line 2" in err
    assert not (tmp_path / "p.parquet").exists()


def test_train_samples_below_the_queue_is_one_line(tmp_path):
    code, _, err = run_cli("train", "atlas", "--samples", "2000", "--out", tmp_path / "run")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "samples 2000 must be at least queue_size 8192" in err
    assert not (tmp_path / "run").exists()


def test_no_weight_loading_bar_on_a_new_prompt(tiny_teacher_dir):
    code = (
        "import sys; from omnimap.teachers.text import TextTeacher; "
        f"print(TextTeacher({str(tiny_teacher_dir)!r}).embed('text', ['snow']).shape)"
    )
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "(1, 16)" in proc.stdout and "Loading weights" not in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    "prompt", ["雪に覆われた山", "눈 덮인 산", "snow ❄️ and 🏔 peaks", "Zürich — Ελλάδα"]
)
def test_any_script_renders_in_the_title_without_glyph_warnings(prompt, tmp_path):
    import warnings

    from omnimap.geo.bbox import BBox
    from omnimap.geo.grid import LatLonGrid
    from omnimap.maps.render import MISSING_GLYPH, drawable_text
    from omnimap.maps.result import MapResult

    grid = LatLonGrid.from_bbox(BBox(0, 40, 10, 50), 1.0)
    result = MapResult(np.random.default_rng(0).random(grid.shape), grid, prompt)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Glyph ... missing from font(s)" would raise
        result.write_png(tmp_path / "m.png")
    text, families = drawable_text(prompt)
    assert len(text) == len(prompt) and families
    # Letters a font here draws are kept; the rest are marked, never dropped.
    kept = [a == b for a, b in zip(text, prompt, strict=True)]
    assert all(k or t == MISSING_GLYPH for k, t in zip(kept, text, strict=True))
    if prompt.startswith("Zürich"):
        assert text == prompt


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("where", ["terminal", "pipe", "quiet"])
def test_progress_bar_only_on_a_terminal_and_not_quiet(tiny_model_dir, monkeypatch, where):
    from omnimap.core.progress import QUIET_ENV
    from omnimap.geo.bbox import BBox
    from omnimap.geo.grid import LatLonGrid
    from omnimap.maps import engine as engine_mod

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setenv(QUIET_ENV, "")
    monkeypatch.setattr(engine_mod, "CHUNK_CELLS", 50)  # a "big" grid of 400 cells
    stream = _Terminal() if where != "pipe" else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    if where == "quiet":
        code, _, _ = run_cli("--quiet", "cache", "info")
        assert code == 0 and os.environ[QUIET_ENV] == "1"
        monkeypatch.setattr(sys, "stderr", stream)
    engine = engine_mod.MapEngine(str(tiny_model_dir), use_cache=False)
    grid = LatLonGrid.from_bbox(BBox(0, 30, 20, 50), 1.0)
    engine.score("snow", grid)
    shown = "map:" in stream.getvalue() and "cell/s" in stream.getvalue()
    assert shown == (where == "terminal"), stream.getvalue()
