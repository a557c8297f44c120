"""Evaluation prompts for the atlas, worded unlike any training description.

Land-cover prompts map to the MODIS IGBP classes that count as "there" for the
ROC-AUC test. No content word of these prompts appears in the description
vocabulary (checked by tests/test_atlas_data.py).

IGBP's savanna classes also cover open boreal forest (in the held-out blocks most of
their cells lie near 56 deg), which nobody would call a savanna with acacias; that
prompt's truth is therefore limited to |lat| <= 35, and cells of its classes outside
the band count as neither positive nor negative.
"""

from __future__ import annotations

import re

LAND_COVER_PROMPTS: dict[str, tuple[int, ...]] = {
    "sand dunes": (16,),
    "rainforest canopy": (2,),
    "frozen glaciers": (15,),
    "skyscrapers and traffic": (13,),
    "wheat and corn farms": (12, 14),
    "waves offshore": (0,),
    "savanna with acacias": (8, 9),  # within PROMPT_MAX_ABS_LAT below
    "pine and spruce taiga": (1, 3),
    "swamp and marshland": (11,),
    "prairie": (10,),
    "sagebrush and cactus scrubland": (6, 7),
    "oak and maple woodland": (4, 5),
}

PROMPT_MAX_ABS_LAT = {"savanna with acacias": 35.0}

# Prompts whose map should rise (+1) or fall (-1) between two times.
# (prompt, when_a, when_b, hemisphere filter, expected sign of mean(b) - mean(a))
TIME_PROMPTS = [
    ("a dark night sky with stars", "2024-06-15T12:00", "2024-06-15T00:00", "all", +1),
    ("bright daylight and sunshine", "2024-06-15T00:00", "2024-06-15T12:00", "all", +1),
    ("deep winter snow", "2024-07-15T12:00", "2024-01-15T12:00", "north", +1),
    ("deep winter snow", "2024-01-15T12:00", "2024-07-15T12:00", "south", +1),
    ("a hot summer day", "2024-01-15T12:00", "2024-07-15T12:00", "north", +1),
    ("a hot summer day", "2024-07-15T12:00", "2024-01-15T12:00", "south", +1),
]

STOP_WORDS = frozenset({"a", "an", "and", "the", "of", "with", "in", "on", "at"})


def words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def content_words(text: str) -> set[str]:
    return {w for w in words(text) if w not in STOP_WORDS}

# Climate prompts (word-disjoint from the descriptions, like the land-cover ones):
# Spearman of their maps with the ERA5 normals on held-out land cells.
HEAT_PROMPT = "sweltering heatwave"
RAIN_PROMPT = "torrential downpours"
CLIMATE_TIMES = {"january": "2024-01-15T15:00", "july": "2024-07-15T15:00"}
# Season prompts for the tropics test: their maps must not jump at 23.44 N/S.
SEASON_PROMPTS = ("the depths of midwinter", "midsummer sunshine")
SEASON_TIMES = ("2024-01-15T12:00", "2024-07-15T12:00")
EVAL_PROMPTS_WORD_DISJOINT = (*LAND_COVER_PROMPTS, HEAT_PROMPT, RAIN_PROMPT, *SEASON_PROMPTS)
