"""The geosound recipe's opt-in heads: PSM's source input and probabilistic embedding,
Sat2Sound's concept codebook (a tiny random CLAP, a synthetic pairs table)."""

import importlib.util

import numpy as np
import pytest

for _module in ("soundfile", "soxr"):
    if importlib.util.find_spec(_module) is None:
        pytest.skip(f"{_module} is missing: pip install 'omnimap[sound]'", allow_module_level=True)

import torch  # noqa: E402
from tests.test_geosound import _table as geosound_table  # noqa: E402

from omnimap.core.errors import InputError  # noqa: E402
from omnimap.teachers.clap import make_tiny_clap  # noqa: E402

SOURCES = ("freesound", "aporee", "iNat")


@pytest.fixture(scope="module")
def clap_dir(tmp_path_factory):
    return make_tiny_clap(tmp_path_factory.mktemp("tiny-clap"))


def _table(tmp_path, n=12):
    return geosound_table(tmp_path, n, sources=SOURCES)


def _options(table, clap_dir, **more):
    return {"pairs": str(table), "teacher": str(clap_dir), "steps": 4, "batch_size": 4,
            "queue_size": 8, "checkpoint_every": 2, "log_every": 1, **more}  # fmt: skip


def _resumes_exactly(options, tmp_path):
    from omnimap.train.loop import train
    from omnimap.train.recipes.geosound import GeoSoundConfig, GeoSoundRecipe

    def recipe():
        return GeoSoundRecipe(GeoSoundConfig.from_dict(options))

    straight = train(recipe(), tmp_path / "a", progress=False)
    train(recipe(), tmp_path / "b", progress=False, stop_after=2)
    resumed = train(recipe(), tmp_path / "b", progress=False)
    assert resumed.losses == straight.losses and all(np.isfinite(straight.losses))
    return straight


def test_source_input_is_learnt_unknown_on_maps_and_resumes(clap_dir, tmp_path):
    from omnimap.models.checkpoint import load_checkpoint

    table = _table(tmp_path)
    result = _resumes_exactly(_options(table, clap_dir, use_source=True, source_dropout=0.25), tmp_path)
    model = load_checkpoint(tmp_path / "a")
    assert model.config["sources"] == {"names": ["aporee", "freesound", "inat"], "dropout": 0.25}
    student = model.student
    assert student.source.indices(["Freesound", " iNat ", "xeno-canto", None]) == [2, 3, 0, 0]
    table_w = student.source.table.weight
    assert float(table_w[1:].abs().sum()) > 0  # learnt from their zero start
    meta = torch.zeros(2, 12)
    with_source = torch.cat([meta, torch.tensor([[1.0], [0.0]])], 1)
    m = student.encode_dynamic(with_source)
    # no source column (a map) is the unknown source; a known one moves m
    torch.testing.assert_close(m[1:], student.encode_dynamic(meta)[1:])
    assert not torch.allclose(m[0], m[1])
    assert len(result.losses) == 4


def test_probabilistic_student_saves_a_variance_head_that_responds_to_inputs(clap_dir, tmp_path):
    from omnimap.models.checkpoint import load_checkpoint

    table = _table(tmp_path)
    _resumes_exactly(_options(table, clap_dir, probabilistic=True, variance="diagonal", samples=3,
                              kl_weight=0.1, lr=1e-2), tmp_path)  # fmt: skip
    model = load_checkpoint(tmp_path / "a")
    assert model.config["variance"] == {"dims": "diagonal"}
    student = model.student
    patches = torch.from_numpy(np.random.default_rng(1).integers(0, 255, (5, 3, 16, 16), dtype=np.uint8))
    meta = torch.randn(5, 12)
    log_var = student.log_variance(student.encode_overhead(patches), student.encode_dynamic(meta))
    assert log_var.shape == (5, 16) and torch.isfinite(log_var).all()
    variance = log_var.exp()
    assert (variance > 0).all()
    assert float(variance.std(0).max()) > 0  # differs between inputs: not a constant
    # trained away from its constant start (a tenth of the mean's length)
    from omnimap.models.heads import prior_log_variance

    assert not torch.allclose(log_var, torch.full_like(log_var, prior_log_variance(16) + np.log(0.01)))


def test_probabilistic_loss_is_the_mean_over_samples_and_the_kl(clap_dir, tmp_path):
    from omnimap.train.recipes.geosound import GeoSoundConfig, GeoSoundRecipe, variance_kl

    recipe = GeoSoundRecipe(GeoSoundConfig.from_dict(
        _options(_table(tmp_path), clap_dir, probabilistic=True, samples=5)))  # fmt: skip
    s = torch.nn.functional.normalize(torch.randn(4, 16), dim=-1)
    views = recipe.embedding_samples(s, {"log_variance": torch.full((4, 1), -2.0)})
    assert len(views) == 5 and all(torch.allclose(v.norm(dim=1), torch.ones(4)) for v in views)
    assert not torch.allclose(views[0], views[1])
    assert recipe.embedding_samples(s, {}) == [s]
    # KL per dimension: zero at the prior 1/D, positive on both sides
    assert float(variance_kl(torch.full((3, 1), -np.log(16)), 16)) == pytest.approx(0.0, abs=1e-7)
    r = 0.01
    assert float(variance_kl(torch.full((3, 1), np.log(r / 16)), 16)) == pytest.approx(0.5 * (r - 1 - np.log(r)))
    assert float(variance_kl(torch.full((3, 1), np.log(10 / 16)), 16)) > 0


def test_codebook_trains_saves_and_assigns(clap_dir, tmp_path):
    from omnimap.datasets.geosound import clap_targets, open_audio_pairs
    from omnimap.models.checkpoint import load_checkpoint
    from omnimap.teachers.clap import ClapTeacher
    from omnimap.train.recipes.geosound import codebook_losses

    table = _table(tmp_path)
    _resumes_exactly(_options(table, clap_dir, codebook=4, loss="per_pair"), tmp_path)
    model = load_checkpoint(tmp_path / "a")
    assert model.config["codebook"] == {"size": 4, "temperature": 0.1}
    book = model.student.codebook
    s = torch.nn.functional.normalize(torch.randn(6, 16), dim=-1)
    w = book.assign(s)
    assert w.shape == (6, 4) and torch.allclose(w.sum(1), torch.ones(6)) and (w >= 0).all()
    assert book.reconstruct(w).shape == (6, 16)
    # concepts started at clips' targets and moved with training
    targets = torch.from_numpy(clap_targets(ClapTeacher(str(clap_dir)), open_audio_pairs(table), 0.5, False))
    nearest = (book.unit_concepts() @ targets.T).max(1).values
    assert (nearest > 0.5).all() and (nearest < 1 - 1e-6).any()
    # the usage term: 0 for uniform use, log K when one concept takes everything
    rebuilt, usage = codebook_losses(torch.full((3, 4), 0.25), s[:3], s[:3])
    assert float(rebuilt) == pytest.approx(0.0, abs=1e-6) and float(usage) == pytest.approx(0.0, abs=1e-6)
    one = torch.zeros(3, 4)
    one[:, 0] = 1
    assert float(codebook_losses(one, s[:3], -s[:3])[1]) == pytest.approx(np.log(4), abs=1e-5)
    assert float(codebook_losses(one, s[:3], -s[:3])[0]) == pytest.approx(2.0, abs=1e-5)


def test_plain_students_build_exactly_as_before():
    from omnimap.models.checkpoint import load_checkpoint

    for name in ("atlas", "soundscape"):
        model = load_checkpoint(name)  # strict load of the shipped weights
        s = model.student
        assert s.source is None and s.variance is None and s.codebook is None


@pytest.mark.parametrize("bad, message", [
    ({"variance": "full"}, "variance must be one of scalar, diagonal"),
    ({"samples": 0}, "samples must be within 1..64"),
    ({"kl_weight": -1.0}, "kl_weight must be at least 0"),
    ({"codebook": 1}, "codebook must be 0 \\(none\\) or within 2..4096"),
    ({"source_dropout": 1.5}, "source_dropout must be within 0..1"),
    ({"codebook_temperature": 0.0}, "codebook_weight and codebook_temperature must be positive"),
    ({"probabilistic": "yes"}, "'probabilistic' must be true or false"),
])  # fmt: skip
def test_bad_head_options_are_one_clear_error(bad, message):
    from omnimap.train.recipes.geosound import GeoSoundConfig

    with pytest.raises(InputError, match=message):
        GeoSoundConfig.from_dict({"pairs": "p.csv", **bad})


def test_a_table_without_sources_or_too_few_clips_is_refused(clap_dir, tmp_path):
    from omnimap.train.recipes import run_recipe

    table = _table(tmp_path)
    with pytest.raises(InputError, match="codebook of 13 concepts needs at least as many clips"):
        run_recipe("geosound", _options(table, clap_dir, codebook=13), tmp_path / "r1", progress=False)
    plain = tmp_path / "plain.csv"
    lines = table.read_text().splitlines()
    plain.write_text("\n".join(",".join(x if i != 4 else "" for i, x in enumerate(r.split(",")))
                               for r in lines[1:]).join([lines[0] + "\n", "\n"]))  # fmt: skip
    with pytest.raises(InputError, match="use_source needs a pairs table whose source column has values"):
        run_recipe("geosound", _options(plain, clap_dir, use_source=True), tmp_path / "r2", progress=False)


def test_evaluation_feeds_each_clip_its_source_and_reports_the_variance(clap_dir, tmp_path, monkeypatch):
    from omnimap.eval import geosound as G
    from omnimap.train.recipes import run_recipe

    table = _table(tmp_path)
    run_recipe("geosound", _options(table, clap_dir, use_source=True, probabilistic=True, codebook=2,
                                    lr=1e-2), tmp_path / "run", progress=False)  # fmt: skip
    seen = []
    real = G.Embedder.samples
    monkeypatch.setattr(G.Embedder, "samples", lambda self, p, m: seen.append(m) or real(self, p, m))
    metrics = G.evaluate_geosound(tmp_path / "run", table)
    # The source index follows the 12 inputs: aporee 1, freesound 2, inat 3 (clips cycle them).
    assert seen[0].shape == (12, 13)
    np.testing.assert_array_equal(seen[0][:3, 12], [2, 1, 3])
    u = metrics["uncertainty"]
    assert u["mean_variance"] > 0 and -1 <= u["variance_vs_error_spearman"] <= 1
    assert "variance: mean" in G.format_table(metrics)
    assert [c["concept"] for c in metrics["concepts"]] == [0, 1]
    assert all(c["captions"] == ["birds at a lake"] for c in metrics["concepts"])  # the one caption
    assert "concept 1: birds at a lake" in G.format_table(metrics)


def test_a_probabilistic_model_maps_its_uncertainty_as_band_two(clap_dir, tmp_path):
    import rasterio

    from omnimap.api import zero_shot_map
    from omnimap.maps.result import UNCERTAINTY_LABEL
    from omnimap.train.recipes import run_recipe

    table = _table(tmp_path)
    run_recipe("geosound", _options(table, clap_dir, probabilistic=True, lr=1e-2),
               tmp_path / "run", progress=False)  # fmt: skip
    result = zero_shot_map("birds at a lake", bbox="-10,35,10,50", resolution=1.0,
                           when="2024-05-01T06:00", model=str(tmp_path / "run"), uncertainty=True)  # fmt: skip
    assert result.uncertainty.shape == result.scores.shape == (15, 20)
    assert (result.uncertainty > 0).all() and result.uncertainty.std() > 0  # varies by place
    paths = result.write(tmp_path / "map.tif")
    with rasterio.open(paths["tif"]) as src:
        assert src.count == 2 and src.descriptions[1] == UNCERTAINTY_LABEL
        np.testing.assert_allclose(src.read(2), result.uncertainty, rtol=1e-6)
        np.testing.assert_allclose(src.read(1), result.scores, rtol=1e-6)


def test_uncertainty_from_a_model_without_a_variance_head_is_one_clear_error(tmp_path):
    from tests.test_train_atlas import _run_cli

    code, _, err = _run_cli("map", "sand dunes", "--bbox", "0,20,10,30", "--resolution", "1",
                            "--uncertainty", "--out", str(tmp_path / "m.tif"))  # fmt: skip
    assert code == 2 and "has no variance head" in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())  # nothing written


def test_each_concept_is_read_by_its_nearest_captions():
    from omnimap.eval.geosound import concept_captions
    from omnimap.models.heads import Codebook

    class Words:  # a teacher that embeds a caption by a few word counts
        words = ("lake", "birds", "traffic", "wind")

        def embed(self, modality, texts):
            return np.array([[t.count(w) + 1e-3 for w in self.words] for t in texts], np.float32)

    book = Codebook(2, 4)
    with torch.no_grad():
        book.concepts.copy_(torch.tensor([[0.0, 0.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]]))
    captions = ["traffic in town", "birds at a lake", "", "wind and traffic", "birds at a lake"]
    got = concept_captions(book, Words(), captions, k=2)
    assert [c["captions"][0] for c in got] == ["traffic in town", "birds at a lake"]
    assert got[1]["captions"].count("birds at a lake") == 1  # distinct captions only
    assert got[0]["similarity"][0] > got[0]["similarity"][1]
    assert concept_captions(book, Words(), ["", ""]) == []
