"""CLAP as a teacher (a tiny random CLAP saved like a hub model, loaded by the real code)
and the geotagged-audio recipe on a tiny synthetic pairs table (tones and noise)."""

import importlib.util

import numpy as np
import pytest

for _module in ("soundfile", "soxr"):
    if importlib.util.find_spec(_module) is None:
        pytest.skip(f"{_module} is missing: pip install 'omnimap[sound]'", allow_module_level=True)

import soundfile as sf  # noqa: E402

from omnimap.core.errors import InputError  # noqa: E402
from omnimap.datasets.geosound import open_audio_pairs  # noqa: E402
from omnimap.media.audio import Waveform, windows  # noqa: E402
from omnimap.teachers.clap import ClapTeacher, make_tiny_clap  # noqa: E402


@pytest.fixture(scope="module")
def clap_dir(tmp_path_factory):
    return make_tiny_clap(tmp_path_factory.mktemp("tiny-clap"))


def tone(freq, seconds=3.0, rate=32_000, seed=0):
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(seed).standard_normal(len(t)) * 0.01
    return (0.3 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32), rate


def test_clap_embeds_text_and_pools_audio_windows(clap_dir):
    teacher = ClapTeacher(str(clap_dir))
    text = teacher.embed("text", ["surf on a beach", "a city street"])
    assert text.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    clip = Waveform.from_array(*tone(440, seconds=5.0))
    vec = teacher.embed("audio", [clip])[0]
    parts = windows(clip.resample(48_000), 2.0)
    assert len(parts) == 3  # 5 s in 2 s windows, the last one padded
    each = np.stack([teacher.embed("audio", [Waveform(w, 48_000)])[0] for w in parts])
    mean = each.mean(0)
    np.testing.assert_allclose(vec, mean / np.linalg.norm(mean), atol=1e-5)
    assert teacher.key == ClapTeacher(str(clap_dir)).key
    assert teacher.key != ClapTeacher(str(make_tiny_clap(clap_dir.parent / "other", seed=1))).key


def _table(tmp_path, n=12):
    rows = ["audio,lon,lat,time,source,caption"]
    rng = np.random.default_rng(0)
    for i in range(n):
        x, rate = tone(200 + 150 * i, seed=i)
        sf.write(tmp_path / f"clip{i}.wav", x, rate)
        lon, lat = rng.uniform(-120, 120), rng.uniform(-50, 60)
        caption = "birds at a lake" if i % 2 else ""
        rows.append(
            f"clip{i}.wav,{lon:.4f},{lat:.4f},2021-0{1 + i % 9}-10T0{i % 10}:30,freesound,{caption}"
        )
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return tmp_path / "pairs.csv"


def test_geosound_recipe_trains_on_synthetic_pairs_and_resumes(clap_dir, tmp_path):
    from omnimap.models.checkpoint import load_checkpoint
    from omnimap.models.embedder import Embedder
    from omnimap.train.recipes import run_recipe

    table = _table(tmp_path)
    data = open_audio_pairs(table)
    assert len(data) == 12 and data.caption[1] == "birds at a lake" and data.caption[0] is None
    assert data.metadata().shape == (12, 12)
    options = {"pairs": str(table), "teacher": str(clap_dir), "steps": 4, "batch_size": 4, "queue_size": 8,
               "checkpoint_every": 2, "log_every": 1}  # fmt: skip
    result = run_recipe("geosound", options, tmp_path / "run", progress=False)
    assert len(result.losses) == 4 and all(np.isfinite(result.losses))
    model = load_checkpoint(tmp_path / "run")
    assert model.config["dim"] == 16 and model.config["teacher"]["kind"] == "clap"
    assert model.config["training"]["captions"] == 6
    s = Embedder(model).samples(np.zeros((2, 3, 16, 16), np.uint8), data.metadata()[:2])
    assert s.shape == (2, 16)
    again = run_recipe("geosound", options, tmp_path / "run", progress=False)
    assert again.losses == result.losses  # finished: resuming adds nothing

    from omnimap.eval.geosound import evaluate_geosound

    metrics = evaluate_geosound(tmp_path / "run", table)
    full = metrics["modes"]["full"]["overhead_to_sound"]
    assert metrics["clips"] == 12 and 1 <= full["median_rank"] <= 12
    assert full["R@10"] <= full["R@100"] == 1.0  # 12 clips: every rank is within 100
    assert metrics["modes"]["no_time"] != metrics["modes"]["full"]


def test_bad_pairs_tables_are_one_line_errors(tmp_path):
    (tmp_path / "a.csv").write_text("audio,lon\nx.wav,1\n", encoding="utf-8")
    with pytest.raises(InputError, match="lacks column"):
        open_audio_pairs(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("audio,lon,lat\nx.wav,1,95\n", encoding="utf-8")
    with pytest.raises(InputError, match="row 1: lon/lat out of range"):
        open_audio_pairs(tmp_path / "b.csv")
    (tmp_path / "c.csv").write_text("audio,lon,lat,time\nx.wav,1,5,yesterday\n", encoding="utf-8")
    with pytest.raises(InputError, match="not ISO-8601"):
        open_audio_pairs(tmp_path / "c.csv")
