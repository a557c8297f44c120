"""Evaluation prompts for the atlas, worded unlike any training description.

Land-cover prompts map to the MODIS IGBP classes that count as "there" for the
ROC-AUC test. No content word of these prompts appears in the description
vocabulary (checked by tests/test_atlas_describe.py).
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
    "savanna with acacias": (8, 9),
    "pine and spruce taiga": (1, 3),
    "swamp and marshland": (11,),
    "prairie": (10,),
    "sagebrush and cactus scrubland": (6, 7),
    "oak and maple woodland": (4, 5),
}

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
