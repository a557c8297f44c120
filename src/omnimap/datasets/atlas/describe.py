"""Plain-words descriptions of what is on the ground, from fact codes.

Each fact has several phrasings and the sentence has several shapes, so the student
learns meanings rather than one template. A description is a deterministic function
of (facts, variant): samples sharing facts share a small set of sentences, which
bounds how many sentences the teacher must embed.

The vocabulary deliberately avoids the words of the evaluation prompts
(``omnimap.eval.prompts``); a test checks that the two never overlap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xxhash

from omnimap.datasets.atlas import facts as F

# Land cover scenes by IGBP class; a season key overrides the default (None).
LAND_COVER: dict[int, dict[int | None, list[str]]] = {
    1: {
        None: [
            "a dense coniferous forest",
            "a forest of evergreen conifers",
            "tall fir trees with needles all year",
        ]
    },
    2: {
        None: [
            "a dense tropical jungle",
            "a humid evergreen broadleaf forest",
            "a tall, steamy jungle that stays green all year",
        ]
    },
    3: {
        None: [
            "a larch forest",
            "a forest of larches",
            "needle-leaved trees that shed their needles",
        ],
        F.WINTER: ["a bare larch forest without needles", "leafless larches in a cold forest"],
        F.AUTUMN: ["a larch forest turning golden", "larches with yellow needles"],
    },
    4: {
        None: [
            "a deciduous broadleaf forest",
            "a forest of leafy broadleaved trees",
            "tall trees in full green leaf",
        ],
        F.WINTER: [
            "a leafless deciduous forest",
            "bare broadleaved trees without leaves",
            "a forest of bare grey branches",
        ],
        F.AUTUMN: [
            "a deciduous forest in red and gold",
            "broadleaved trees with leaves turning colour",
            "a forest in autumn colours",
        ],
        F.SPRING: [
            "a deciduous forest with fresh green leaves",
            "broadleaved trees coming into leaf",
        ],
    },
    5: {
        None: [
            "a mixed forest of conifers and broadleaved trees",
            "mixed woods of needle-leaved and leafy trees",
            "a forest with both conifers and leafy trees",
        ],
        F.WINTER: [
            "a mixed forest of dark conifers and bare leafless trees",
            "conifers among leafless broadleaved trees",
        ],
        F.AUTUMN: ["a mixed forest with conifers and trees in autumn colours"],
    },
    6: {None: ["dense shrubland", "thick bushes and thickets", "a tangle of dense shrubs"]},
    7: {
        None: [
            "sparse shrubs on dry ground",
            "semi-arid land with scattered bushes",
            "dry, thinly vegetated shrubland",
        ]
    },
    8: {
        None: [
            "grassland with many scattered trees",
            "open forest with grass between the trees",
            "sparse forest with grassy clearings",
        ]
    },
    9: {
        None: [
            "grassland with a few scattered trees",
            "tall grass dotted with lone trees",
            "open grassy country with occasional trees",
        ]
    },
    10: {
        None: ["a wide grassland", "open meadows of grass", "a grassy steppe used for grazing"],
        F.WINTER: ["dormant brown grassland", "a steppe of dry winter grass"],
        F.SUMMER: ["a wide grassland in summer growth", "grassy meadows in the summer sun"],
    },
    11: {
        None: [
            "a wetland with standing water",
            "a peat bog with reeds",
            "flooded, waterlogged ground with reeds",
        ]
    },
    12: {
        None: ["cultivated fields", "agricultural land with crops", "a patchwork of crop fields"],
        F.WINTER: [
            "bare, harvested fields",
            "empty ploughed fields after the harvest",
            "fallow cropland",
        ],
        F.SPRING: [
            "freshly sown fields",
            "young green crops in the fields",
            "ploughed fields being planted",
        ],
        F.SUMMER: [
            "fields of tall ripening crops",
            "green and golden crop fields",
            "cropland in full growth",
        ],
        F.AUTUMN: [
            "fields being harvested",
            "stubble fields after the harvest",
            "cropland at harvest time",
        ],
    },
    13: {
        None: [
            "a built-up urban area",
            "dense buildings and streets",
            "city blocks, roads and houses",
        ]
    },
    14: {
        None: [
            "a mosaic of fields and natural vegetation",
            "small fields between patches of trees and bushes",
            "cropland mixed with wild vegetation",
        ]
    },
    15: {
        None: [
            "a permanent ice sheet",
            "an endless expanse of ice and snow",
            "a vast white ice cap",
        ]
    },
    16: {
        None: ["a barren desert", "bare rock and gravel", "an arid, lifeless desert with no plants"]
    },
}

SECOND_COVER = {
    0: "open water", 1: "conifers", 2: "jungle", 3: "larches", 4: "leafy trees", 5: "mixed forest",
    6: "thickets", 7: "sparse bushes", 8: "grass and trees", 9: "grass and lone trees",
    10: "grassland", 11: "wetland", 12: "crop fields", 13: "built-up land", 14: "small fields",
    15: "ice and snow", 16: "bare ground",
}  # fmt: skip
SECOND_FORMS = ["with patches of {}", "mixed with {}", "interspersed with {}"]

OCEAN_SCENES = {
    "ice": [
        "drifting sea ice on a cold ocean",
        "an ocean covered with floating pack ice",
        "ice floes on the polar sea",
    ],
    F.FAR_OFFSHORE: [
        "the open ocean far from any land",
        "deep ocean water with no land in sight",
        "the empty sea, hundreds of kilometres from the shore",
    ],
    F.COASTAL: [
        "the sea close to the shore",
        "coastal waters near the shoreline",
        "shallow sea just off the coast",
    ],
    F.INLAND: ["the open ocean", "ocean water stretching to the horizon", "the open sea"],
}
LAKE_SCENES = ["a freshwater lake", "the calm water of a lake", "a wide river or lake"]
ICY_LAKE_SCENES = ["a lake covered with ice", "an ice-covered lake", "a lake under ice and snow"]

TERRAIN = {
    F.FLAT: ["on flat lowland", "on a level plain", "on flat ground"],
    F.HILLS: ["among rolling hills", "in hilly country", "on gentle hills"],
    F.MOUNTAINS: ["in steep mountains", "on rugged mountain slopes", "among steep peaks and valleys"],
}
SNOW = ["covered in snow", "under a blanket of snow", "with snow lying on the ground"]
SETTLEMENT = {
    F.REMOTE: [
        "far from any settlement",
        "in an uninhabited wilderness",
        "with no towns or villages around",
    ],
    F.RURAL: [
        "in thinly populated countryside",
        "with a few scattered homes",
        "in quiet rural country",
    ],
    F.VILLAGE: ["near a village", "around a small village", "with villages nearby"],
    F.TOWN: ["near a town", "on the outskirts of a town", "around a small town"],
    F.CITY: ["in a city", "in a large city", "on the edge of a busy city"],
    F.METROPOLIS: [
        "in a huge metropolis of millions",
        "in the heart of a sprawling megacity",
        "in an enormous city with millions of people",
    ],
}
COASTAL_LAND = ["on the coast", "by the seashore", "along the shoreline"]

TIME_OF_DAY = {
    F.NIGHT: ["at night", "in the dark of night", "under a night sky"],
    F.DAWN: ["at dawn", "in the grey light before sunrise", "at first light"],
    F.SUNRISE: ["at sunrise", "in the early morning with the sun low", "as the sun rises"],
    F.MORNING: ["in the morning", "in morning sunlight", "in the light of a clear morning"],
    F.MIDDAY: ["at midday", "under the high midday sun", "in full daylight around noon"],
    F.AFTERNOON: [
        "in the afternoon",
        "in afternoon sunlight",
        "in the warm light of the afternoon",
    ],
    F.SUNSET: ["at sunset", "as the sun sets", "in the evening with the sun low"],
    F.DUSK: ["at dusk", "in the twilight after sunset", "as darkness falls"],
    F.POLAR_NIGHT: [
        "in the polar night, dark all day long",
        "during the long polar darkness",
        "in the endless night of the polar winter",
    ],
    F.MIDNIGHT_SUN: [
        "in the round-the-clock sunlight of the polar summer",
        "with the sun circling the sky without setting",
        "in the endless daylight of the polar summer",
    ],
}
SEASON = {
    F.WINTER: ["in winter", "in the middle of winter", "during the cold of winter"],
    F.SPRING: ["in spring", "in springtime", "during spring"],
    F.SUMMER: ["in summer", "in high summer", "during the warm summer"],
    F.AUTUMN: ["in autumn", "in the fall", "during autumn"],
}
# What a person there notices of the weather at that hour and time of year.
WARMTH = {
    F.BITTER: ["bitterly cold air", "a deep, biting cold", "cold so fierce it stings the face"],
    F.FREEZING: ["below freezing", "freezing cold air", "icy cold"],
    F.FROSTY: ["with frost on the ground", "white frost on the grass", "a crisp frost"],
    F.CHILLY: ["chilly air", "cool and raw", "a cold, damp feel"],
    F.MILD: ["mild air", "pleasantly mild", "neither warm nor cold"],
    F.WARM: ["warm air", "pleasantly warm", "a warm, balmy feel"],
    F.HOT: ["hot weather", "hot, heavy air", "in the heat"],
    F.SCORCHING: ["scorching heat", "blistering heat", "baking in fierce heat"],
}
WETNESS = {
    # Dryness in words of dryness: the text teacher barely reads negation, so "hardly
    # any rain" would sit beside "heavy rain" and invert every rain map. Each rung is
    # nearer rain queries than the one below for the teacher (docs/atlas_rain_ladder.py,
    # on queries that are not the evaluation's), and none speaks of sun or light: these
    # are said at every hour.
    F.ARID: ["dust blowing over dry ground", "cracked, parched earth", "bone-dry air"],
    F.LITTLE_RAIN: ["mostly dry days", "dry weather", "a dry spell"],
    # Said, not left out: a month of ordinary rain must sit between the dry and the
    # wet ones for the teacher.
    F.USUAL_RAIN: ["changeable skies with some rain", "a shower now and then", "a few showers"],
    F.RAINY: ["wet, rainy days", "rain on many days", "frequent rain"],
    F.DELUGE: ["relentless heavy rain", "heavy rain", "pouring rain"],
    F.DRY_SEASON: ["in the parched season", "during the long dry season", "the dusty dry season"],
    F.MONSOON: ["in the monsoon rains", "the monsoon, with heavy rain", "in the rainy monsoon season"],
}
SNOWFALL = ["frequent snowfall", "snow falling often", "heavy snowfalls"]
ALTITUDE = {
    F.LOWLAND: [],
    F.UPLAND: ["in the highlands", "on an upland plateau", "well above sea level"],
    F.HIGH_ALTITUDE: [
        "high in the mountains, the air thin and cold",
        "at high altitude, over 2,000 metres up",
        "high above sea level in thin air",
    ],
    F.EXTREME_ALTITUDE: [
        "at extreme altitude, above 3,500 metres",
        "on a lofty plateau in thin, cold air",
        "far above the treeline in thin air",
    ],
}
BIG_LIGHTS = [
    "with city lights glowing",
    "lit by countless street lights",
    "with lit windows and street lights",
]
SMALL_LIGHTS = ["with street lights on", "with a few lights glowing"]
DARK_TIMES = (F.NIGHT, F.DAWN, F.DUSK, F.POLAR_NIGHT)

# Most clauses a description has: cover, second cover, snow, terrain, altitude,
# settlement, coast; hour, season, lights; warmth, rain.
MAX_CLAUSES = 12
MOMENT_TEMPLATES = ["{time}; {weather}.", "{time}, {weather}.", "{weather}, {time}."]


def all_phrases() -> list[str]:
    """Every phrase the generator can use (for vocabulary checks)."""
    out = list(SECOND_FORMS) + list(SECOND_COVER.values()) + LAKE_SCENES + ICY_LAKE_SCENES
    out += SNOW + COASTAL_LAND + BIG_LIGHTS + SMALL_LIGHTS + MOMENT_TEMPLATES + SNOWFALL
    for table in (TERRAIN, SETTLEMENT, TIME_OF_DAY, SEASON, OCEAN_SCENES, WARMTH, WETNESS, ALTITUDE):
        for phrases in table.values():
            out += phrases
    for by_season in LAND_COVER.values():
        for phrases in by_season.values():
            out += phrases
    return out


class _Picker:
    """Deterministic choices seeded by the facts and the variant number."""

    def __init__(self, row: np.ndarray, variant: int):
        seed = xxhash.xxh64_intdigest(row.astype(np.int8).tobytes() + bytes([variant]))
        self.rng = np.random.default_rng(seed)

    def __call__(self, options: list[str]) -> str:
        return options[int(self.rng.integers(len(options)))]


def _land_scene(f: dict[str, int], pick: _Picker) -> list[str]:
    if f["snow"] == F.PERMANENT_ICE:
        base = pick(LAND_COVER[15][None])
    else:
        by_season = LAND_COVER[f["land_cover"]]
        base = pick(by_season.get(f["season"], by_season[None]))
    parts = [base]
    if f["second_cover"] >= 0 and f["snow"] != F.PERMANENT_ICE:
        parts.append(pick(SECOND_FORMS).format(SECOND_COVER[f["second_cover"]]))
    if f["snow"] == F.SEASONAL_SNOW:
        parts.append(pick(SNOW))
    parts.append(pick(TERRAIN[f["terrain"]]))
    if ALTITUDE[f["altitude"]]:
        parts.append(pick(ALTITUDE[f["altitude"]]))
    parts.append(pick(SETTLEMENT[f["settlement"]]))
    if f["coast"] == F.COASTAL:
        parts.append(pick(COASTAL_LAND))
    return parts


def _water_scene(f: dict[str, int], pick: _Picker) -> list[str]:
    if f["surface"] == F.SURF_LAKE:
        return [pick(ICY_LAKE_SCENES if f["snow"] != F.NO_SNOW else LAKE_SCENES)]
    if f["sea_ice"]:
        return [pick(OCEAN_SCENES["ice"])]
    return [pick(OCEAN_SCENES[f["coast"]])]


def _time_phrase(f: dict[str, int], pick: _Picker) -> list[str]:
    """[time of day], [season] where there is one and, at dark times in towns, [their
    lights]: the hour and the season are separate clauses, so the target can weigh
    the light of the hour above the calendar (``HOUR_WEIGHT``)."""
    parts = [pick(TIME_OF_DAY[f["time_of_day"]])]
    if f["season"] in SEASON:
        parts.append(pick(SEASON[f["season"]]))
    if f["time_of_day"] in DARK_TIMES and f["settlement"] >= F.TOWN:
        parts.append(pick(BIG_LIGHTS if f["settlement"] >= F.CITY else SMALL_LIGHTS))
    return parts


def _weather_phrase(f: dict[str, int], pick: _Picker) -> list[str]:
    parts = [pick(WARMTH[f["warmth"]])]
    wet = f["wetness"]
    if f["warmth"] in (F.BITTER, F.FREEZING) and wet in (F.RAINY, F.DELUGE, F.MONSOON):
        parts.append(pick(SNOWFALL))
    elif WETNESS[wet]:
        parts.append(pick(WETNESS[wet]))
    return parts


def _scene_key(f: dict[str, int]) -> tuple[int, ...]:
    """The facts a scene sentence depends on (the season only where it changes the cover)."""
    cover_season = f["season"] if f["season"] in LAND_COVER.get(f["land_cover"], {}) else -1
    return (f["surface"], f["land_cover"], f["second_cover"], f["terrain"], f["coast"],
            f["settlement"], f["snow"], f["sea_ice"], f["altitude"], cover_season)  # fmt: skip


def _moment_key(f: dict[str, int]) -> tuple[int, ...]:
    """The facts the sentence about the moment depends on."""
    lights = 0 if f["settlement"] < F.TOWN else (1 if f["settlement"] < F.CITY else 2)
    return (f["time_of_day"], f["season"], f["warmth"], f["wetness"], lights)


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def describe_clauses_row(
    row: np.ndarray, variant: int, names: list[str]
) -> tuple[str, list[str], list[str]]:
    """(full description, scene clauses, moment clauses) for one facts row (as from
    ``Facts.matrix()``).

    The description is a scene sentence (what the place is) and, when the time is
    known, a moment sentence (time of day, season, weather). Its clauses ("a barren
    desert", "on flat ground", "at midday in summer", "scorching heat", ...) are what
    the teacher embeds; each sentence is seeded only by the facts it depends on."""
    f = {name: int(v) for name, v in zip(names, row, strict=True)}
    pick = _Picker(np.array(_scene_key(f)), variant)
    scene = _land_scene(f, pick) if f["surface"] == F.SURF_LAND else _water_scene(f, pick)
    text = _cap(", ".join(scene)) + "."
    if f["time_of_day"] < 0:
        return text, scene, []
    pick = _Picker(np.array(_moment_key(f)), variant)
    time, weather = _time_phrase(f, pick), _weather_phrase(f, pick)
    moment = pick(MOMENT_TEMPLATES).format(time=", ".join(time), weather=", ".join(weather))
    return f"{text} {_cap(moment)}", scene, time + weather


def describe_parts_row(row: np.ndarray, variant: int, names: list[str]) -> tuple[str, list[str]]:
    """(full description, all its clauses) for one facts row."""
    text, scene, moment = describe_clauses_row(row, variant, names)
    return text, scene + moment


def describe_row(row: np.ndarray, variant: int, names: list[str]) -> str:
    """One full description (scene then moment) for one facts row."""
    return describe_parts_row(row, variant, names)[0]


@dataclass
class Descriptions:
    """Distinct full descriptions, which one each sample has, and the distinct clauses
    each description is made of: ``parts[part_index[t]]`` (-1 pads). The teacher
    embeds the clauses; a description's target is the normalised sum of its clause
    embeddings: a few hundred phrases to embed instead of ~100,000 descriptions,
    which a shared 2-core CPU could not embed within the training budget."""

    texts: list[str]
    index: np.ndarray  # (N,) description of each sample
    parts: list[str]
    part_index: np.ndarray  # (len(texts), MAX_CLAUSES) clause ids of each description; -1 none
    scene_clauses: np.ndarray  # (len(texts),) how many leading clauses are the scene sentence
    part_weights: np.ndarray  # (len(parts),) a clause's weight in a target (cover, hour: more)


def describe_with_parts(facts: F.Facts, variants: np.ndarray) -> Descriptions:
    """Descriptions for every sample, built once per unique (facts, variant)."""
    names = [f for f in facts.__dataclass_fields__]
    keyed = np.concatenate([facts.matrix(), np.asarray(variants, np.int8)[:, None]], axis=1)
    uniq, index = np.unique(keyed, axis=0, return_inverse=True)
    described = [describe_clauses_row(u[:-1], int(u[-1]), names) for u in uniq]
    # Different fact rows can yield the same sentence; merge them so that identical
    # text always shares one id (identical descriptions are never negatives).
    text_ids: dict[str, int] = {}
    part_ids: dict[str, int] = {}
    part_rows: list[list[int]] = []
    scene_counts: list[int] = []
    weights: dict[int, float] = {}
    remap = np.empty(len(described), dtype=np.int64)
    for k, (full, scene, moment) in enumerate(described):
        tid = text_ids.setdefault(full, len(text_ids))
        if tid == len(part_rows):
            ids = [part_ids.setdefault(c, len(part_ids)) for c in scene + moment]
            part_rows.append(ids + [-1] * (MAX_CLAUSES - len(ids)))
            scene_counts.append(len(scene))
            # The cover opens the scene and the hour opens the moment, always.
            weights[ids[0]] = COVER_WEIGHT
            if moment:
                weights[ids[len(scene)]] = HOUR_WEIGHT
            for pid, clause in zip(ids[len(scene):], moment, strict=True):
                if clause in RAIN_PHRASES:
                    weights[pid] = RAIN_WEIGHT
                elif clause in WARMTH_PHRASES:
                    weights[pid] = WARMTH_WEIGHT
        remap[k] = tid
    part_weights = np.ones(len(part_ids), np.float32)
    for pid, w in weights.items():
        part_weights[pid] = w
    return Descriptions(
        texts=list(text_ids), index=remap[index.ravel()], parts=list(part_ids),
        part_index=np.array(part_rows, dtype=np.int64).reshape(-1, MAX_CLAUSES),
        scene_clauses=np.array(scene_counts, dtype=np.int64), part_weights=part_weights,
    )  # fmt: skip


def describe(facts: F.Facts, variants: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Returns (unique_texts, index) with ``unique_texts[index[i]]`` describing sample i."""
    d = describe_with_parts(facts, variants)
    return d.texts, d.index


# Weight of the first clause (the land cover or the water) in a description's target:
# with up to 12 clauses an equal sum drowns what the place *is* in weather and time words.
COVER_WEIGHT = 2.0
# Weight of the hour clause: light or darkness is what an observer notices first of a
# moment; the season and the warmth count once each.
HOUR_WEIGHT = 2.0
# Weight of the rain or snowfall clause, one of up to twelve (2 before candidate 11).
# Weight alone, with 1 to 3, left rain maps at a Spearman of ~0.3 with the month's
# precipitation; the loss on the clause alone (``AtlasConfig.rain_loss_weight``) is what
# makes the student follow it (docs/atlas-climate-candidate.md).
RAIN_WEIGHT = 3.0
RAIN_PHRASES = frozenset(p for phrases in WETNESS.values() for p in phrases) | frozenset(SNOWFALL)
# Weight of the warmth clause. The shipped weights were trained with 1; candidates 8
# and 9 tried 2, candidate 10 tried 3 (docs/atlas-climate-candidate.md).
WARMTH_WEIGHT = 1.0
WARMTH_PHRASES = frozenset(p for phrases in WARMTH.values() for p in phrases)
# The code each rain or snowfall clause says (snowfall: a code of its own), each warmth
# and each season clause, for the recipe's losses on those clauses alone
# (``AtlasConfig.rain_loss_weight``, ``warmth_loss_weight``, ``season_loss_weight``).
SNOWFALL_CODE = 100
CLAUSE_CODES = {
    "rain": {p: code for code, phrases in WETNESS.items() for p in phrases}
    | {p: SNOWFALL_CODE for p in SNOWFALL},
    "warmth": {p: code for code, phrases in WARMTH.items() for p in phrases},
    "season": {p: code for code, phrases in SEASON.items() for p in phrases},
}


def clauses_of(kind: str, parts: list[str], part_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """((len(part_index),) clause id of each description's ``kind`` clause (a key of
    CLAUSE_CODES), and the code it says); -1 where a description has none (the time
    unknown; no season in the tropics)."""
    codes_of = CLAUSE_CODES[kind]
    code_of_part = np.array([codes_of.get(p, -1) for p in parts] + [-1], np.int64)
    codes = code_of_part[part_index]  # -1 pads pick the trailing -1
    has = codes >= 0
    column = has.argmax(axis=1)
    rows = np.arange(len(part_index))
    clause = np.where(has.any(axis=1), part_index[rows, column], -1)
    return clause, np.where(clause >= 0, codes[rows, column], -1)


def target_vectors(
    part_vectors: np.ndarray, part_index: np.ndarray, part_weights: np.ndarray,
    keep_clauses: np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    """(len(part_index), D) unit targets: normalised sum of each description's clause
    vectors, each weighted by ``part_weights``; with ``keep_clauses`` (one count per
    description), only that many leading clauses."""
    if keep_clauses is not None:
        beyond = np.arange(part_index.shape[1])[None, :] >= np.asarray(keep_clauses)[:, None]
        part_index = np.where(beyond, -1, part_index)
    weighted = np.asarray(part_vectors, np.float32) * np.asarray(part_weights, np.float32)[:, None]
    vectors = np.concatenate([weighted, np.zeros((1, weighted.shape[1]), np.float32)])
    out = vectors[part_index].sum(axis=1)  # -1 picks the zero row
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
