"""How much a field's storage dtype changes maps: Spearman correlation of each prompt's
map from a quantised field with its map from the float32 field of the same region."""

from __future__ import annotations

import numpy as np

from omnimap.fields.store import Field
from omnimap.geo.timefeat import When
from omnimap.maps.engine import MapEngine

# Varied on purpose: land cover, water, ice, cities, light and season, activities.
EVAL_PROMPTS = (
    "sand dunes in a hot desert",
    "dense tropical rainforest",
    "snow-covered mountains",
    "the open ocean far from land",
    "a busy harbour at night",
    "city lights seen from space",
    "rice paddies and farmland",
    "frozen tundra",
    "a coral reef in shallow turquoise water",
    "a large river delta",
    "vineyards on sunny hills",
    "an active volcano",
    "a glacier calving into the sea",
    "savanna with scattered trees",
    "a quiet village in winter",
    "wheat fields in summer",
    "a dense city of skyscrapers",
    "a mangrove swamp",
    "a pine forest in the morning mist",
    "a salt flat",
)


def spearman_by_prompt(
    reference, other, prompts=EVAL_PROMPTS, when: When | None = None
) -> np.ndarray:
    """Per prompt, Spearman's rho between the maps of two fields (paths or
    :class:`Field`) of the same grid."""
    from scipy.stats import spearmanr

    reference = reference if isinstance(reference, Field) else Field.open(reference)
    other = other if isinstance(other, Field) else Field.open(other)
    if reference.grid != other.grid:
        raise ValueError(f"fields cover different grids: {reference.grid} vs {other.grid}")
    a = MapEngine(None, field=reference, use_cache=False).score(list(prompts), reference.grid, when)
    b = MapEngine(None, field=other, use_cache=False).score(list(prompts), other.grid, when)
    return np.array([spearmanr(x.ravel(), y.ravel()).statistic for x, y in zip(a, b, strict=True)])
