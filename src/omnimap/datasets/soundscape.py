"""Samples for the soundscape model: (place, week, hour) -> what one would hear there then.

Each sample gets two kinds of target (``omnimap.teachers.soundscape``):

- biophony: BirdNET's occurrence ("meta") model at the place and week gives each
  class a probability; the target mixes the classes' BirdNET vectors and the text
  vectors of their names by those probabilities (held-out species left out). The meta
  model is a model, so the targets and every metric against it are a pseudo-truth.
- a caption of the soundscape, composed from real facts there and then
  (``omnimap.datasets.atlas.facts``): traffic and sirens in cities, surf on coasts,
  wind on open ground, the dawn chorus in spring, frogs in wetlands at night, silence
  on ice, in several phrasings (the Sat2Sound idea of captions that describe the sound
  of a place).

Weeks are BirdNET's (four to a month: days 1-7, 8-14, 15-21, 22-end); a sample's date
is the middle day of its week, its hour local mean solar time.

The caption vocabulary avoids the words of the evaluation queries
(``omnimap.eval.soundscape``); a test checks that they never overlap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from omnimap.datasets.atlas import facts as F
from omnimap.datasets.atlas.facts import Facts, compute_facts
from omnimap.datasets.atlas.layers import GroundLayers
from omnimap.datasets.atlas.sampling import sample_points
from omnimap.geo.timefeat import LocalTime, metadata_features

WEEKS = 48
WEEK_MID_DAY = (4, 11, 18, 26)  # middle day of each of a month's four BirdNET weeks
PRESENT = 0.1  # occurrence probability counted as presence (the threshold)
TARGET_CHUNK = 2048  # points per meta-model call and mixing product (~55 MB of probabilities)
# A place's year for the seasonal gain: one week in each of six months, none held out.
REFERENCE_WEEKS = (4, 12, 20, 28, 36, 44)
RICH, POOR = 8.0, 0.5  # expected number of species (sum of probabilities) for "many"/"few"

FOREST = (1, 2, 3, 4, 5)
OPEN_GROUND = (7, 9, 10, 16)  # open shrublands, savannas, grasslands, barren
FARMLAND = (12, 14)
WETLAND = 11
DAYTIME = (F.MORNING, F.MIDDAY, F.AFTERNOON)
FIRST_LIGHT = (F.DAWN, F.SUNRISE, F.MORNING)
DARK = (F.NIGHT, F.DUSK, F.POLAR_NIGHT)

# Sound elements and their phrasings. Words of the evaluation queries never appear.
ELEMENTS: dict[str, tuple[str, ...]] = {
    "city": ("traffic noise and sirens in the city streets",
             "engines, horns and sirens of urban traffic",
             "the steady hum of city traffic with a distant siren"),
    "city_night": ("the low hum of a city at night and a siren far off",
                   "late traffic and an ambulance siren in the dark city",
                   "distant engines and sirens across the sleeping city"),
    "town": ("vehicles passing and people talking in a town",
             "a small town's street sounds, engines and voices",
             "voices, footsteps and the odd vehicle in town"),
    "surf": ("surf pounding the shore", "the wash of the sea surging onto the beach",
             "the sound of the surf along the coast"),
    "open_sea": ("wind over the open sea and the slap of the swell",
                 "the swell of the ocean far from land",
                 "nothing but wind and water on the open ocean"),
    "lake": ("water lapping at the lakeshore", "ripples splashing on a lake's edge",
             "the quiet splash of lake water"),
    # The sound of the wood itself, at every hour that is not dark and under snow too:
    # before, forest by day had only its birds, shared with every rich place.
    "forest": ("a breeze stirring the forest canopy", "branches creaking in the deep woods",
               "the hushed, sheltered sound inside a forest"),
    "wind": ("wind blowing across open ground", "a gusty breeze sweeping the open plains",
             "wind whistling over bare, open land"),
    "dawn_chorus": ("the dawn chorus of songbirds", "birds singing at first light",
                    "a chorus of birdsong at daybreak"),
    "woodland_birds": ("birdsong in the woodland", "birds calling in the forest canopy",
                       "woodpeckers and songbirds among the branches"),
    "forest_night": ("owls hooting in the dark forest", "insects and an owl in the woods at night",
                     "the night sounds of the forest, an owl calling"),
    "frogs": ("frogs calling from the marsh at night",
              "a chorus of frogs by the water after dark",
              "frogs and insects in the wetland at dusk"),
    "insects": ("crickets and cicadas chirping in the warm night",
                "the buzz of insects on a hot night", "crickets singing in the grass after dark"),
    "farm": ("farm machinery and cattle in the fields", "a tractor working the farmland",
             "cows and a distant tractor in the countryside"),
    "ice": ("near silence on the ice, only the wind", "the hush of a frozen, snowy land",
            "stillness over the ice and snow"),
    "quiet": ("a quiet night in the countryside", "calm and silent, hardly a sound",
              "a still, peaceful quiet"),
    "many_birds": ("many kinds of birds calling", "a rich mix of bird calls",
                   "a lively medley of birdsong"),
    "few_birds": ("hardly any birds to be heard", "few birds, if any, calling",
                  "almost no birdsong"),
}  # fmt: skip
ELEMENT_CODES = {name: i for i, name in enumerate(ELEMENTS)}


@dataclass
class SoundscapeSet:
    lon: np.ndarray  # (N,) float32
    lat: np.ndarray
    year: np.ndarray  # (N,) int16
    week: np.ndarray  # (N,) int16, 1..48
    hour: np.ndarray  # (N,) float32 local mean solar hour
    facts: Facts
    texts: list[str]  # distinct captions
    caption_index: np.ndarray  # (N,) caption of each sample
    elements: np.ndarray  # (N, len(ELEMENTS)) bool: the sound elements a caption draws on

    def __len__(self) -> int:
        return len(self.lon)

    def local_time(self) -> LocalTime:
        month, day, doy = week_dates(self.week, self.year)
        return LocalTime(self.year, month, day, self.hour.astype(np.float64), doy)

    def metadata(self, with_time: bool = True) -> np.ndarray:
        """(N, 12) model inputs (time zeroed when not ``with_time``)."""
        return metadata_features(self.lon, self.lat, self.local_time() if with_time else None)


def week_dates(week, year) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(month, day, day of year) of the middle day of BirdNET weeks 1..48."""
    week = np.asarray(week, np.int64)
    month = (week - 1) // 4 + 1
    day = np.asarray(WEEK_MID_DAY)[(week - 1) % 4]
    year = np.broadcast_to(np.asarray(year, np.int64), week.shape)
    dates = (
        (year - 1970).astype("datetime64[Y]").astype("datetime64[M]")
        + (month - 1).astype("timedelta64[M]")
    ).astype("datetime64[D]") + (day - 1).astype("timedelta64[D]")
    jan1 = (year - 1970).astype("datetime64[Y]").astype("datetime64[D]")
    return month, day, (dates - jan1).astype(np.int64) + 1


def sound_elements(facts: Facts, richness: np.ndarray) -> np.ndarray:
    """(N, len(ELEMENTS)) bool: what one hears, from the facts and the expected number
    of species (the sum of the meta model's probabilities)."""
    n = len(facts)
    e = np.zeros((n, len(ELEMENTS)), bool)
    tod, season, cover = facts.time_of_day, facts.season, facts.land_cover
    land = facts.surface == F.SURF_LAND
    frozen = (
        (facts.snow == F.PERMANENT_ICE)
        | (facts.sea_ice == 1)
        | ((facts.snow == F.SEASONAL_SNOW) & (season == F.WINTER))
    )
    city = land & (facts.settlement >= F.CITY)
    dark = np.isin(tod, DARK)
    # Frogs and insects call when it is at least mild (the warmth fact at the hour).
    warm = facts.warmth >= F.MILD
    breeding = np.isin(season, (F.SPRING, F.SUMMER)) | ((season == F.NO_SEASON) & land)
    wet = land & ((cover == WETLAND) | (facts.second_cover == WETLAND)) | (
        facts.surface == F.SURF_LAKE
    )

    def put(name: str, mask: np.ndarray) -> None:
        e[:, ELEMENT_CODES[name]] = mask

    put("city", city & ~dark)
    put("city_night", city & dark)
    put("town", land & (facts.settlement == F.TOWN) & ~dark & ~frozen)
    put("surf", (facts.coast == F.COASTAL) & ~frozen & (facts.surface != F.SURF_LAKE))
    put("open_sea", (facts.surface == F.SURF_OCEAN) & (facts.coast != F.COASTAL) & ~frozen)
    put("lake", (facts.surface == F.SURF_LAKE) & ~frozen)
    put("forest", land & np.isin(cover, FOREST) & ~city & ~dark
        & (facts.snow != F.PERMANENT_ICE))  # fmt: skip
    put("wind", land & np.isin(cover, OPEN_GROUND) & ~city & ~frozen)
    vegetated = land & ~city & ~frozen & ~np.isin(cover, (16, 15, 13))
    put(
        "dawn_chorus", vegetated & np.isin(tod, (F.DAWN, F.SUNRISE)) & breeding & (richness >= POOR)
    )
    put(
        "woodland_birds",
        vegetated & np.isin(cover, FOREST) & np.isin(tod, DAYTIME) & (richness >= POOR),
    )
    put("forest_night", vegetated & np.isin(cover, FOREST) & dark)
    put("frogs", wet & ~frozen & dark & warm)
    put("insects", vegetated & dark & warm & ~np.isin(cover, FOREST) & ~wet)
    put("farm", land & np.isin(cover, FARMLAND) & ~city & ~dark & ~frozen)
    put("ice", frozen)
    put("many_birds", vegetated & ~dark & (richness >= RICH))
    put("few_birds", land & ~frozen & ~city & ~dark & (richness < POOR))
    quiet = ~e.any(axis=1)
    put("quiet", quiet)
    return e


def compose_captions(elements: np.ndarray, variant: np.ndarray,
                     max_parts: int = 3) -> tuple[list[str], np.ndarray]:  # fmt: skip
    """Distinct captions and each sample's index: the first ``max_parts`` elements in
    ``ELEMENTS`` order, each in phrasing ``variant`` (rotated per element)."""
    names = list(ELEMENTS)
    texts: dict[str, int] = {}
    index = np.empty(len(elements), np.int64)
    cache: dict[tuple, int] = {}
    for i, (row, v) in enumerate(zip(elements, variant, strict=True)):
        codes = tuple(np.flatnonzero(row)[:max_parts].tolist())
        key = (codes, int(v))
        if key not in cache:
            parts = [ELEMENTS[names[c]][(int(v) + j) % len(ELEMENTS[names[c]])]
                     for j, c in enumerate(codes)]  # fmt: skip
            text = "; ".join(parts)
            text = text[0].upper() + text[1:] + "."
            cache[key] = texts.setdefault(text, len(texts))
        index[i] = cache[key]
    return list(texts), index


def biophony_mix(meta, lon, lat, week, species_matrix: np.ndarray, taxon_matrix: np.ndarray,
                 keep: np.ndarray, seasonal_gain: float = 0.0,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Occurrence-weighted mixes of the kept classes' vectors at each (lon, lat, week):
    (biophony (N, 1024), taxon (N, 384), richness (N,)), in chunks of points.

    ``meta`` is a ``BirdNetMeta``; ``keep`` (6522,) bool selects the classes that
    count (species seen in training). Unnormalised: blocks are made unit on compose.
    ``seasonal_gain`` g > 0 weighs a class by p + g * max(p - p_year, 0), p_year its
    mean over ``REFERENCE_WEEKS`` there: a mix of ~140 species barely moves when one
    arrives, and this makes the arrivals of the week stand out (training targets only;
    the richness stays the plain sum of p)."""
    lon, lat, week = (np.asarray(a) for a in (lon, lat, week))
    n = len(lon)
    bio = np.empty((n, species_matrix.shape[1]), np.float32)
    tax = np.empty((n, taxon_matrix.shape[1]), np.float32)
    rich = np.empty(n, np.float32)
    cols = np.flatnonzero(keep)
    s_mat, t_mat = species_matrix[cols], taxon_matrix[cols]
    for lo in range(0, n, TARGET_CHUNK):
        sl = slice(lo, lo + TARGET_CHUNK)
        p = meta.occurrence(lon[sl], lat[sl], week[sl])[:, cols]
        rich[sl] = p.sum(axis=1)
        if seasonal_gain > 0:
            year = np.mean([meta.occurrence(lon[sl], lat[sl], np.full(len(p), w))[:, cols]
                            for w in REFERENCE_WEEKS], axis=0)  # fmt: skip
            p = p + seasonal_gain * np.maximum(p - year, 0.0)
        bio[sl] = p @ s_mat
        tax[sl] = p @ t_mat
    return bio, tax, rich


def sample_places_and_times(layers: GroundLayers, n: int, rng: np.random.Generator, accept=None,
                            weeks: np.ndarray | None = None, weeks_per_place: int = 1) -> dict[str, np.ndarray]:  # fmt: skip
    """``n`` samples (as the atlas samples places), each with a year, a week from
    ``weeks`` (default all 48) and a uniform local solar hour. ``weeks_per_place`` k > 1:
    n // k places, each k times in a row at weeks spread over the year (the first
    drawn, the others about 48 / k weeks on, +-3), so a batch that keeps such rows
    together holds the same place in other seasons as negatives."""
    pool = np.arange(1, WEEKS + 1) if weeks is None else np.asarray(weeks)
    k = int(weeks_per_place)
    lon, lat = sample_points(layers, n // k, rng, accept=accept)
    if k == 1:  # the draws of the shipped model's run and of the evaluation, unchanged
        return {
            "lon": lon.astype(np.float32), "lat": lat.astype(np.float32),
            "year": rng.integers(2016, 2026, n).astype(np.int16),
            "week": rng.choice(pool, n).astype(np.int16),
            "hour": rng.uniform(0.0, 24.0, n).astype(np.float32),
        }  # fmt: skip
    first = rng.choice(pool, len(lon)).astype(np.float64)
    jitter = rng.integers(-3, 4, (len(lon), k)) * (np.arange(k) > 0)
    spread = (first[:, None] + np.arange(k) * (WEEKS / k) + jitter - 1) % WEEKS + 1
    gap = np.abs(spread[..., None] - pool)  # the nearest allowed week on the circle of 48
    week = pool[np.minimum(gap, WEEKS - gap).argmin(axis=-1)].ravel()
    m = len(week)
    return {
        "lon": np.repeat(lon, k).astype(np.float32), "lat": np.repeat(lat, k).astype(np.float32),
        "year": rng.integers(2016, 2026, m).astype(np.int16),
        "week": week.astype(np.int16),
        "hour": rng.uniform(0.0, 24.0, m).astype(np.float32),
    }  # fmt: skip


def build_soundscape_set(layers: GroundLayers, points: dict[str, np.ndarray],
                         richness: np.ndarray, variants: int, rng: np.random.Generator) -> SoundscapeSet:  # fmt: skip
    """Facts, sound elements and captions of sampled places and times."""
    month, _, doy = week_dates(points["week"], points["year"])
    facts = compute_facts(layers, points["lon"], points["lat"], month, doy, points["hour"])
    elements = sound_elements(facts, richness)
    texts, index = compose_captions(elements, rng.integers(0, variants, len(elements)))
    return SoundscapeSet(
        lon=points["lon"], lat=points["lat"], year=points["year"], week=points["week"],
        hour=points["hour"], facts=facts, texts=texts, caption_index=index, elements=elements,
    )  # fmt: skip
