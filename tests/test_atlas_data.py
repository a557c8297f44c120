"""The atlas's ground truth: facts at known places, descriptions, the hold-out."""

import numpy as np
import pytest

from omnimap.datasets.atlas import describe as D
from omnimap.datasets.atlas import facts as F
from omnimap.datasets.atlas.dataset import build_set
from omnimap.datasets.atlas.layers import GroundLayers
from omnimap.datasets.atlas.sampling import HoldOut, choose_holdout
from omnimap.eval.prompts import (
    EVAL_PROMPTS_WORD_DISJOINT,
    LAND_COVER_PROMPTS,
    content_words,
    words,
)


@pytest.fixture(scope="module")
def layers():
    return GroundLayers()


def _training_vocabulary() -> set[str]:
    vocab = set()
    for phrase in D.all_phrases():
        vocab |= set(words(phrase))
    return vocab


def test_evaluation_prompts_share_no_word_with_training_descriptions():
    vocab = _training_vocabulary()
    assert len(vocab) > 250
    assert {"sweltering heatwave", "torrential downpours"} <= set(EVAL_PROMPTS_WORD_DISJOINT)
    for prompt in EVAL_PROMPTS_WORD_DISJOINT:
        for w in content_words(prompt):
            # same word, same 5-letter stem, or a longer word built on a short one
            clash = [
                t
                for t in vocab
                if t == w or (len(w) >= 5 and t[:5] == w[:5]) or (len(w) < 5 and t.startswith(w))
            ]
            assert not clash, f"prompt {prompt!r}: {w!r} resembles training words {clash}"


def test_every_class_and_time_has_several_phrasings():
    for cls, by_season in D.LAND_COVER.items():
        assert len(by_season[None]) >= 3, cls
    for table in (D.TIME_OF_DAY, D.SEASON, D.SETTLEMENT, D.TERRAIN):
        assert all(len(v) >= 3 for v in table.values())


PLACES = {  # name: (lon, lat)
    "sahara": (5.0, 25.0),
    "amazon": (-62.0, -4.0),
    "greenland": (-40.0, 72.0),
    "alps": (7.8, 46.0),
    "paris": (2.35, 48.86),
    "mid_pacific": (-140.0, 0.0),
    "iowa": (-93.5, 42.0),
    "lake_victoria": (33.0, -1.0),
}


def test_facts_at_known_places(layers):
    lon = np.array([p[0] for p in PLACES.values()])
    lat = np.array([p[1] for p in PLACES.values()])
    f = F.compute_facts(layers, lon, lat)
    got = {name: {k: int(getattr(f, k)[i]) for k in ("surface", "land_cover", "terrain", "settlement", "coast", "snow")}
           for i, name in enumerate(PLACES)}  # fmt: skip
    assert got["sahara"]["land_cover"] == 16 and got["sahara"]["settlement"] == F.REMOTE
    assert got["amazon"]["land_cover"] == 2
    assert got["greenland"]["snow"] == F.PERMANENT_ICE
    assert got["alps"]["terrain"] == F.MOUNTAINS
    assert got["paris"]["settlement"] == F.METROPOLIS and got["paris"]["land_cover"] == 13
    assert (
        got["mid_pacific"]["surface"] == F.SURF_OCEAN
        and got["mid_pacific"]["coast"] == F.FAR_OFFSHORE
    )
    assert got["iowa"]["land_cover"] == 12 and got["iowa"]["terrain"] == F.FLAT
    assert got["lake_victoria"]["surface"] == F.SURF_LAKE


def test_time_facts_follow_the_sun_and_the_hemisphere():
    lat = np.array([45.0, 45.0, -45.0, 0.0, 80.0, 80.0])
    doy = np.array([15, 196, 15, 80, 355, 172])  # mid-Jan, mid-Jul, mid-Jan, equinox, Dec, Jun
    hour = np.array([12.0, 0.5, 12.0, 6.5, 12.0, 0.0])
    tod = F.time_of_day(lat, doy, hour)
    assert tod.tolist() == [F.MIDDAY, F.NIGHT, F.MIDDAY, F.SUNRISE, F.POLAR_NIGHT, F.MIDNIGHT_SUN]


def _facts_at(layers, places, doy, hour):
    lon = np.array([p[0] for p in places], float)
    lat = np.array([p[1] for p in places], float)
    n = len(lon)
    return F.compute_facts(layers, lon, lat, np.full(n, 1), np.full(n, doy), np.full(n, hour))


def test_seasons_follow_the_local_climate_not_the_hemisphere(layers):
    # Paris, Melbourne, Singapore, the open North Atlantic, the sea off East Greenland
    places = [(2.35, 48.86), (144.96, -37.81), (103.82, 1.35), (-30.0, 45.0), (-20.0, 70.0)]
    jan, jul = _facts_at(layers, places, 15, 12.0), _facts_at(layers, places, 196, 12.0)
    assert jan.season.tolist() == [F.WINTER, F.SUMMER, F.NO_SEASON, F.NO_SEASON, F.WINTER]
    assert jul.season.tolist() == [F.SUMMER, F.WINTER, F.NO_SEASON, F.NO_SEASON, F.NO_SEASON]
    # Seasons are not cut at 23.44 deg: the sub-tropical deserts on both sides have them.
    desert = _facts_at(layers, [(10.0, 22.0), (10.0, 25.0)], 196, 12.0)
    assert desert.season.tolist() == [F.SUMMER, F.SUMMER]


def test_heat_rain_monsoon_and_altitude_from_the_climate(layers):
    places = [(72.88, 19.08), (5.0, 25.0), (37.6, 55.75), (88.0, 32.0), (-62.0, -4.0)]
    jan_night = _facts_at(layers, places, 15, 3.0)
    jul_noon = _facts_at(layers, places, 196, 15.0)
    mumbai, sahara, moscow, tibet, amazon = range(5)
    assert jul_noon.wetness[mumbai] == F.MONSOON and jan_night.wetness[mumbai] == F.DRY_SEASON
    assert jul_noon.warmth[sahara] == F.SCORCHING and jul_noon.wetness[sahara] == F.ARID
    assert jan_night.warmth[moscow] in (F.FREEZING, F.BITTER) and jan_night.snow[moscow] == F.SEASONAL_SNOW
    assert jul_noon.warmth[moscow] >= F.MILD and jul_noon.snow[moscow] == F.NO_SNOW
    assert tibet_is_high(jul_noon.altitude[tibet]) and jul_noon.altitude[amazon] == F.LOWLAND
    # The afternoon is warmer than the night at the same place and date.
    assert (_facts_at(layers, places, 196, 3.0).warmth <= jul_noon.warmth).all()


def tibet_is_high(code) -> bool:
    return int(code) in (F.HIGH_ALTITUDE, F.EXTREME_ALTITUDE)


def test_descriptions_say_what_a_person_notices(layers):
    f = _facts_at(layers, [(72.88, 19.08), (5.0, 25.0), (88.0, 32.0)], 196, 15.0)
    texts, index = D.describe(f, np.zeros(3, int))
    mumbai, sahara, tibet = (texts[i].lower() for i in index)
    assert "monsoon" in mumbai
    assert any(w in sahara for w in ("scorching", "blistering", "fierce heat"))
    assert any(w in tibet for w in ("thin", "altitude", "metres"))


def test_seasonal_snow_in_continental_winter_not_in_summer(layers):
    lon, lat = np.array([37.6, 37.6]), np.array([55.75, 55.75])  # Moscow
    winter = F.compute_facts(
        layers,
        lon,
        lat,
        month=np.array([1, 7]),
        day_of_year=np.array([15, 196]),
        hour=np.array([12.0, 12.0]),
    )
    assert winter.snow.tolist() == [F.SEASONAL_SNOW, F.NO_SNOW]


def test_descriptions_vary_and_identical_text_shares_an_id(layers):
    rng = np.random.default_rng(0)
    lon, lat = np.full(60, 2.35), np.full(60, 48.86)
    f = F.compute_facts(
        layers, lon, lat, month=np.full(60, 1), day_of_year=np.full(60, 15), hour=np.full(60, 23.0)
    )
    texts, index = D.describe(f, rng.integers(0, 3, 60))
    assert 2 <= len(texts) <= 3  # one fact set, up to three phrasings
    assert len(set(texts)) == len(texts)
    for t in texts:
        assert t[0].isupper() and t.endswith(".")
        assert "night" in t or "dark" in t
        assert "lights" in t  # a big city at night
    assert sorted(set(index.tolist())) == list(range(len(texts)))


def test_describe_is_deterministic():
    row = np.array([1, 12, -1, 0, 0, 3, 4, 2, 0, 0, 0, F.HOT, F.RAINY], dtype=np.int8)
    names = list(F.Facts.__dataclass_fields__)
    text = D.describe_row(row, 1, names).lower()
    assert text == D.describe_row(row, 1, names).lower()
    assert "crop" in text and "summer" in text and "town" in text
    assert any(w in text for w in ("hot", "heat")) and any(w in text for w in ("rain", "showers"))


class _WordTeacher:
    """A teacher that embeds a clause as the count vector of a few words: exact sums."""

    words = ("desert", "dunes", "night", "dark", "rain", "heat", "summer", "winter", "midday")

    def embed(self, modality, texts, progress=False):
        return np.array([[t.lower().count(w) for w in self.words] for t in texts], np.float32)


def test_time_free_targets_are_the_scene_sentence_alone(layers):
    data = build_set(layers, 400, seed=3)
    scene = data.scene_vectors(_WordTeacher())
    full = data.target_vectors(_WordTeacher())
    assert scene.shape == full.shape and (data.scene_clauses >= 1).all()
    for t in range(0, len(data.texts), 37):
        n = data.scene_clauses[t]
        clauses = [data.parts[i] for i in data.part_index[t] if i >= 0]
        sentence = data.texts[t].split(". ")[0]
        assert ", ".join(clauses[:n]).lower() == sentence.lower().rstrip(".")  # the scene
        # The scene target counts the scene clauses only (the cover twice), unit length.
        want = sum(D.COVER_WEIGHT ** (k == 0) * _WordTeacher().embed("text", [c])[0]
                   for k, c in enumerate(clauses[:n]))  # fmt: skip
        if np.linalg.norm(want) > 0:
            np.testing.assert_allclose(scene[t], want / np.linalg.norm(want), atol=1e-6)
    # Somewhere the moment adds words the scene lacks (night, rain, heat...).
    assert np.abs(scene - full).max() > 0.1


def test_dry_places_are_described_without_the_word_rain():
    """The text teacher barely reads negation: "hardly any rain" embeds near "rain"."""
    for key in (F.ARID, F.LITTLE_RAIN, F.DRY_SEASON):
        for phrase in D.WETNESS[key]:
            assert "rain" not in phrase and "never" not in phrase, phrase


def test_holdout_blocks_are_never_trained_on(layers):
    holdout = choose_holdout(layers, land_fraction=0.1, seed=3)
    assert 10 <= len(holdout.blocks) <= 60
    train = build_set(layers, 3000, seed=1, accept=lambda lo, la: ~holdout.near(lo, la))
    assert not holdout.near(train.lon, train.lat).any()
    held = build_set(layers, 500, seed=2, accept=holdout.contains)
    assert holdout.contains(held.lon, held.lat).all()
    # the buffer is wider than half an overhead patch (16 px of 1/15 deg)
    assert holdout.buffer_deg > 8 / 15
    again = HoldOut.from_json(holdout.to_json())
    assert again.blocks == holdout.blocks


def test_holdout_has_truth_for_every_prompt_class(layers):
    holdout = choose_holdout(layers)
    boxes = holdout.bboxes()
    lc = layers.land_cover
    counts = np.zeros(17, int)
    for b in boxes:
        r0, r1 = int((90 - b.north) / 0.05), int((90 - b.south) / 0.05)
        c0, c1 = int((b.west + 180) / 0.05), int((b.east_unwrapped + 180) / 0.05)
        counts += np.bincount(lc[r0:r1, c0:c1].ravel(), minlength=17)
    for prompt, classes in LAND_COVER_PROMPTS.items():
        assert counts[list(classes)].sum() >= 400, prompt


def test_the_hour_and_the_rain_are_clauses_that_weigh_more_than_the_season(layers):
    data = build_set(layers, 400, seed=4)
    hours = {p for table in D.TIME_OF_DAY.values() for p in table}
    seasons = {p for table in D.SEASON.values() for p in table}
    timed = [t for t in range(len(data.texts)) if data.part_index[t, data.scene_clauses[t]] >= 0]
    assert timed
    for t in timed:
        hour = data.parts[data.part_index[t, data.scene_clauses[t]]]
        assert hour in hours  # the moment opens with the hour, alone
        assert data.part_weights[data.part_index[t, data.scene_clauses[t]]] == D.HOUR_WEIGHT
        assert data.part_weights[data.part_index[t, 0]] == D.COVER_WEIGHT
    used = [data.parts[i] for i in np.unique(data.part_index[data.part_index >= 0])]
    assert any(p in seasons for p in used)
    assert all(data.part_weights[data.parts.index(p)] == 1.0 for p in used if p in seasons)
    rains = [p for p in used if p in D.RAIN_PHRASES]
    assert rains and all(data.part_weights[data.parts.index(p)] == D.RAIN_WEIGHT for p in rains)
    full = data.target_vectors(_WordTeacher())
    t = timed[0]
    ids = [i for i in data.part_index[t] if i >= 0]
    want = sum(data.part_weights[i] * _WordTeacher().embed("text", [data.parts[i]])[0] for i in ids)
    if np.linalg.norm(want) > 0:
        np.testing.assert_allclose(full[t], want / np.linalg.norm(want), atol=1e-6)


def test_every_rain_level_is_said_ordinary_rain_included():
    for key in (F.ARID, F.LITTLE_RAIN, F.USUAL_RAIN, F.RAINY, F.DELUGE):
        assert D.WETNESS[key], key
    assert not any("rain" in p for p in D.WETNESS[F.LITTLE_RAIN])


def test_the_warmth_clause_takes_its_own_weight(layers, monkeypatch):
    monkeypatch.setattr(D, "WARMTH_WEIGHT", 2.5)
    data = build_set(layers, 300, seed=5)
    used = [data.parts[i] for i in np.unique(data.part_index[data.part_index >= 0])]
    warm = [p for p in used if p in D.WARMTH_PHRASES]
    assert warm and all(data.part_weights[data.parts.index(p)] == 2.5 for p in warm)
    others = [p for p in used if p not in D.WARMTH_PHRASES]
    assert all(data.part_weights[data.parts.index(p)] != 2.5 for p in others)


def test_each_timed_description_names_its_rain_and_warmth_clauses_and_codes(layers):
    data = build_set(layers, 600, seed=6)
    clause, code = D.clauses_of("rain", data.parts, data.part_index)
    timed = data.part_index[np.arange(len(data.texts)), data.scene_clauses] >= 0
    assert timed.all()  # sampled with a time; dropped only in training
    assert (clause >= 0).all()  # every moment says its rain, dry or wet
    # The scene sentence alone (the time unknown) has no rain clause.
    beyond = np.arange(data.part_index.shape[1])[None, :] >= data.scene_clauses[:, None]
    scene_only = np.where(beyond, -1, data.part_index)
    assert (D.clauses_of("rain", data.parts, scene_only)[0] == -1).all()
    first = {}  # the facts of one sample per description
    for i, t in enumerate(data.text_index):
        first.setdefault(int(t), i)
    for t in np.flatnonzero(timed):
        phrase, i = data.parts[clause[t]], first[int(t)]
        assert phrase in D.RAIN_PHRASES and phrase in data.texts[t]
        if phrase in D.SNOWFALL:
            assert code[t] == D.SNOWFALL_CODE
        else:
            assert phrase in D.WETNESS[code[t]] and code[t] == data.facts.wetness[i]
    clause, code = D.clauses_of("warmth", data.parts, data.part_index)
    assert (clause >= 0).all()
    for t in np.flatnonzero(timed):
        assert data.parts[clause[t]] in D.WARMTH[code[t]] and code[t] == data.facts.warmth[first[int(t)]]
    clause, code = D.clauses_of("season", data.parts, data.part_index)
    seasonal = np.isin(data.facts.season[[first[int(t)] for t in range(len(data.texts))]], list(D.SEASON))
    assert seasonal.any() and (~seasonal).any()  # the tropics have none
    assert (clause[seasonal] >= 0).all() and (clause[~seasonal] == -1).all()
    for t in np.flatnonzero(seasonal):
        assert data.parts[clause[t]] in D.SEASON[code[t]] and code[t] == data.facts.season[first[int(t)]]
