"""Plain-words descriptions of what is on the ground, from fact codes.

Each fact has several phrasings and the sentence has several shapes, so the student
learns meanings rather than one template. A description is a deterministic function
of (facts, variant): samples sharing facts share a small set of sentences, which
bounds how many sentences the teacher must embed.

The vocabulary deliberately avoids the words of the evaluation prompts
(``omnimap.eval.prompts``); a test checks that the two never overlap.
"""

from __future__ import annotations

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
    F.MOUNTAINS: ["in steep mountains", "on rugged mountain slopes", "high in the mountains"],
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
        "in the polar night, when the sun never rises",
        "during the long polar darkness",
        "in the endless night of the polar winter",
    ],
    F.MIDNIGHT_SUN: [
        "under the midnight sun",
        "with the sun still up at midnight",
        "in the never-ending daylight of the polar summer",
    ],
}
SEASON = {
    F.WINTER: ["in winter", "in the middle of winter", "during the cold of winter"],
    F.SPRING: ["in spring", "in springtime", "during spring"],
    F.SUMMER: ["in summer", "in high summer", "during the warm summer"],
    F.AUTUMN: ["in autumn", "in the fall", "during autumn"],
    F.TROPICAL: ["in the tropics", "at tropical latitudes", "in the tropical zone"],
}
BIG_LIGHTS = [
    "with city lights glowing",
    "lit by countless street lights",
    "with lit windows and street lights",
]
SMALL_LIGHTS = ["with street lights on", "with a few lights glowing"]
DARK_TIMES = (F.NIGHT, F.DAWN, F.DUSK, F.POLAR_NIGHT)

TEMPLATES = ["{scene}, {time}.", "{time_cap}: {scene}.", "{scene}, seen {time}."]


def all_phrases() -> list[str]:
    """Every phrase the generator can use (for vocabulary checks)."""
    out = list(SECOND_FORMS) + list(SECOND_COVER.values()) + LAKE_SCENES + ICY_LAKE_SCENES
    out += SNOW + COASTAL_LAND + BIG_LIGHTS + SMALL_LIGHTS + TEMPLATES
    for table in (TERRAIN, SETTLEMENT, TIME_OF_DAY, SEASON, OCEAN_SCENES):
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


def _land_scene(f: dict[str, int], pick: _Picker) -> str:
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
    parts.append(pick(SETTLEMENT[f["settlement"]]))
    if f["coast"] == F.COASTAL:
        parts.append(pick(COASTAL_LAND))
    return ", ".join(parts)


def _water_scene(f: dict[str, int], pick: _Picker) -> str:
    if f["surface"] == F.SURF_LAKE:
        return pick(ICY_LAKE_SCENES if f["snow"] != F.NO_SNOW else LAKE_SCENES)
    if f["sea_ice"]:
        return pick(OCEAN_SCENES["ice"])
    return pick(OCEAN_SCENES[f["coast"]])


def _time_phrase(f: dict[str, int], pick: _Picker) -> str:
    if f["time_of_day"] < 0:
        return ""
    text = pick(TIME_OF_DAY[f["time_of_day"]]) + " " + pick(SEASON[f["season"]])
    if f["time_of_day"] in DARK_TIMES and f["settlement"] >= F.TOWN:
        text += ", " + pick(BIG_LIGHTS if f["settlement"] >= F.CITY else SMALL_LIGHTS)
    return text


def describe_row(row: np.ndarray, variant: int, names: list[str]) -> str:
    """One description for one facts row (as from ``Facts.matrix()``)."""
    f = {name: int(v) for name, v in zip(names, row, strict=True)}
    pick = _Picker(row, variant)
    scene = _land_scene(f, pick) if f["surface"] == F.SURF_LAND else _water_scene(f, pick)
    time = _time_phrase(f, pick)
    if not time:
        return scene[0].upper() + scene[1:] + "."
    text = pick(TEMPLATES).format(scene=scene, time=time, time_cap=time[0].upper() + time[1:])
    return text[0].upper() + text[1:]


def describe(facts: F.Facts, variants: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Descriptions for every sample, built once per unique (facts, variant).

    Returns (unique_texts, index) with ``unique_texts[index[i]]`` describing sample i.
    """
    names = [f for f in facts.__dataclass_fields__]
    keyed = np.concatenate([facts.matrix(), np.asarray(variants, np.int8)[:, None]], axis=1)
    uniq, index = np.unique(keyed, axis=0, return_inverse=True)
    texts = [describe_row(u[:-1], int(u[-1]), names) for u in uniq]
    # Different fact rows can yield the same sentence; merge them so that identical
    # text always shares one id (identical descriptions are never negatives).
    text_ids: dict[str, int] = {}
    remap = np.array([text_ids.setdefault(t, len(text_ids)) for t in texts], dtype=np.int64)
    return list(text_ids), remap[index.ravel()]
