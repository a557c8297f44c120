"""Embedding fields: the time-free overhead part o of every cell's embedding, stored once
(Zarr, chunked, float32/float16/int8), so maps and searches at any time only run the
cheap location-and-time MLP.

    >>> from omnimap.fields import build_field, map_from_field, search_field
    >>> build_field("eu.field", bbox="-10,35,30,60", resolution=0.05)
    >>> map_from_field("eu.field", "vineyards", region="France", when="2024-09-01T12:00")
    >>> search_field("eu.field", "a busy harbour at night", k=20).hits
"""

from __future__ import annotations

__all__ = ["Field", "build_field", "map_from_field", "score_field", "search_field"]


def __getattr__(name: str):
    # Lazy, like omnimap/__init__: the CLI imports this package to register commands.
    if name == "Field":
        from omnimap.fields.store import Field

        return Field
    if name == "build_field":
        from omnimap.fields.build import build_field

        return build_field
    if name in ("map_from_field", "score_field"):
        from omnimap.fields import query

        return getattr(query, name)
    if name == "search_field":
        from omnimap.fields.search import search_field

        return search_field
    raise AttributeError(f"module 'omnimap.fields' has no attribute {name!r}")
