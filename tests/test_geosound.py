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


def _table(tmp_path, n=12, sources=("freesound",)):
    """A pairs table of ``n`` synthetic tones; the clips cycle through ``sources``."""
    rows = ["audio,lon,lat,time,source,caption"]
    rng = np.random.default_rng(0)
    for i in range(n):
        x, rate = tone(200 + 150 * i, seed=i)
        sf.write(tmp_path / f"clip{i}.wav", x, rate)
        lon, lat = rng.uniform(-120, 120), rng.uniform(-50, 60)
        caption = "birds at a lake" if i % 2 else ""
        rows.append(
            f"clip{i}.wav,{lon:.4f},{lat:.4f},2021-0{1 + i % 9}-10T0{i % 10}:30,"
            f"{sources[i % len(sources)]},{caption}"
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


def test_per_pair_temperatures_train_checkpoint_and_resume_exactly(clap_dir, tmp_path):
    """GeoCLAP's loss: overhead-audio and overhead-text, each with its own temperature
    and queue; a run stopped and resumed equals one straight through, temperatures too."""
    from safetensors import safe_open

    from omnimap.train.loop import train
    from omnimap.train.recipes.geosound import GeoSoundConfig, GeoSoundRecipe

    table = _table(tmp_path)
    options = {"pairs": str(table), "teacher": str(clap_dir), "steps": 6, "batch_size": 4,
               "queue_size": 8, "checkpoint_every": 2, "log_every": 1, "loss": "per_pair",
               "init_temperature": 0.1}  # fmt: skip
    straight = train(GeoSoundRecipe(GeoSoundConfig.from_dict(options)), tmp_path / "a", progress=False)
    first = train(GeoSoundRecipe(GeoSoundConfig.from_dict(options)), tmp_path / "b",
                  progress=False, stop_after=3)  # fmt: skip
    assert len(first.losses) == 3
    state = tmp_path / "b" / "train_state.safetensors"
    with safe_open(str(state), framework="pt") as fh:
        saved = {k: fh.get_tensor(k) for k in fh.keys() if k.startswith("scale.")}
    assert set(saved) == {"scale.scales.overhead|audio.log_scale", "scale.scales.overhead|text.log_scale"}
    at_stop = {k.split(".")[2]: 1 / float(v.exp()) for k, v in saved.items()}
    assert at_stop == pytest.approx(first.temperatures, rel=1e-6)
    resumed = train(GeoSoundRecipe(GeoSoundConfig.from_dict(options)), tmp_path / "b", progress=False)
    assert resumed.losses == straight.losses
    assert resumed.temperatures == straight.temperatures
    t = straight.temperatures
    assert set(t) == {"overhead|audio", "overhead|text"}
    assert t["overhead|audio"] != t["overhead|text"]  # learnt apart from the same start
    assert all(v != pytest.approx(0.1) for v in t.values())
    config = load_json(tmp_path / "a" / "config.json")
    assert config["temperatures"] == pytest.approx(t) and config["temperature"] == pytest.approx(t["overhead|audio"])
    assert config["training"]["loss"] == "per_pair"
    assert straight.history[-1]["temperatures"] == {k: round(v, 4) for k, v in t.items()}
    # one temperature is the default loss; its state cannot resume a per-pair run
    mixed = {**options, "loss": "mixed"}
    one = train(GeoSoundRecipe(GeoSoundConfig.from_dict(mixed)), tmp_path / "c", progress=False, stop_after=2)
    assert one.temperatures is None
    import shutil

    from omnimap.core.errors import DataError

    shutil.copy(tmp_path / "c" / "train_state.safetensors", tmp_path / "b" / "train_state.safetensors")
    with pytest.raises(DataError, match="other temperatures"):
        train(GeoSoundRecipe(GeoSoundConfig.from_dict(options)), tmp_path / "b", progress=False)


def test_the_loop_feeds_each_pair_its_own_rows_targets_and_temperature(clap_dir, tmp_path, monkeypatch):
    """What the loop hands the per-pair loss: for each step's rows, the clips' audio
    vectors (all valid) and caption vectors (valid where there is a caption), each pair's
    own scale; the step's loss is their sum of queue InfoNCE."""
    import torch

    from omnimap.datasets.geosound import clap_vectors
    from omnimap.train import batches, loop
    from omnimap.train.losses import queue_infonce
    from omnimap.train.recipes.geosound import GeoSoundConfig, GeoSoundRecipe

    table = _table(tmp_path)
    options = {"pairs": str(table), "teacher": str(clap_dir), "steps": 2, "batch_size": 4,
               "queue_size": 4, "log_every": 1, "loss": "per_pair"}  # fmt: skip
    seen = []
    real = loop.paired_queue_infonce

    def spy(student, pairs, scales):
        total, each = real(student, pairs, scales)
        seen.append((student.detach(), pairs, {k: v.detach() for k, v in scales.items()}, total.detach()))
        return total, each

    monkeypatch.setattr(loop, "paired_queue_infonce", spy)
    result = loop.train(GeoSoundRecipe(GeoSoundConfig.from_dict(options)), tmp_path / "run", progress=False)
    audio, text, has = clap_vectors(ClapTeacher(str(clap_dir)), open_audio_pairs(table), False)
    assert len(seen) == 2
    for step, (s, pairs, scales, total) in enumerate(seen):
        rows = batches.batch_rows(0, step, 12, 4)
        a, t = pairs["overhead|audio"], pairs["overhead|text"]
        np.testing.assert_allclose(a.own.numpy(), audio[rows], atol=1e-6)
        np.testing.assert_allclose(t.own.numpy(), text[rows], atol=1e-6)
        assert a.valid.all() and t.valid.tolist() == has[rows].tolist()
        assert a.weight == t.weight == 1.0  # one process
        # the text queue holds captioned clips only; the audio queue every clip
        assert len(t.keys) <= len(a.keys) and (np.linalg.norm(t.keys.numpy(), axis=1) > 0.99).all()
        expected = queue_infonce(s, a.own, a.labels, scales["overhead|audio"], a.keys, a.key_labels)
        if t.valid.any():
            v = t.valid
            expected = expected + queue_infonce(s[v], t.own[v], t.labels[v], scales["overhead|text"],
                                                t.keys, t.key_labels)  # fmt: skip
        assert total.item() == pytest.approx(expected.item(), rel=1e-6)
        assert result.losses[step] == pytest.approx(total.item(), rel=1e-6)
    assert not torch.equal(seen[0][2]["overhead|audio"], seen[1][2]["overhead|audio"])  # learnt


def test_geosound_config_rejects_unknown_keys_and_losses(clap_dir, tmp_path):
    from omnimap.train.recipes.geosound import GeoSoundConfig

    with pytest.raises(InputError, match="unknown training option"):
        GeoSoundConfig.from_dict({"pairs": "p.csv", "pair_temperatures": True})
    with pytest.raises(InputError, match="loss must be one of mixed, per_pair"):
        GeoSoundConfig.from_dict({"pairs": "p.csv", "loss": "geoclap"})


def load_json(path):
    import json

    return json.loads(path.read_text(encoding="utf-8"))


def test_a_run_from_before_the_loss_option_resumes_as_mixed(clap_dir, tmp_path):
    import json

    from omnimap.train.recipes import run_recipe

    table = _table(tmp_path)
    options = {"pairs": str(table), "teacher": str(clap_dir), "steps": 2, "batch_size": 4,
               "queue_size": 4, "log_every": 1}  # fmt: skip
    first = run_recipe("geosound", options, tmp_path / "run", progress=False)
    path = tmp_path / "run" / "train_config.json"
    saved = json.loads(path.read_text())
    assert saved.pop("loss") == "mixed"
    path.write_text(json.dumps(saved))  # as written before the option existed
    assert run_recipe("geosound", options, tmp_path / "run", progress=False).losses == first.losses
    with pytest.raises(InputError, match="differs in: loss"):
        run_recipe("geosound", {**options, "loss": "per_pair"}, tmp_path / "run", progress=False)


def _ddp_worker(rank: int, options: dict, run_dir: str, init_file: str, out: str) -> None:
    import json

    import torch
    import torch.distributed as dist

    from omnimap.train.recipes import run_recipe

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        from pathlib import Path

        result = run_recipe("geosound", options, Path(run_dir), progress=False)
        if rank == 0:
            with open(out, "w") as fh:
                json.dump({"losses": result.losses, "temperatures": result.temperatures}, fh)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_give_the_per_pair_losses_of_one(clap_dir, tmp_path):
    """Each rank holds half the batch and a different number of captioned clips: the
    pairs' weights make the mean over ranks the global batch's loss."""
    import json

    import torch.multiprocessing as mp

    from omnimap.train.recipes import run_recipe

    table = _table(tmp_path)
    options = {"pairs": str(table), "teacher": str(clap_dir), "steps": 3, "batch_size": 6,
               "queue_size": 6, "log_every": 1, "checkpoint_every": 3, "loss": "per_pair"}  # fmt: skip
    one = run_recipe("geosound", options, tmp_path / "one", progress=False)
    out = tmp_path / "two.json"
    mp.spawn(_ddp_worker, args=(options, str(tmp_path / "two"), str(tmp_path / "pg"), str(out)), nprocs=2)
    two = json.loads(out.read_text())
    np.testing.assert_allclose(two["losses"], one.losses, rtol=0, atol=1e-5)
    for name, t in one.temperatures.items():
        assert two["temperatures"][name] == pytest.approx(t, rel=1e-5)
