"""Paired samples for Sat2Cap-style training: ground photos with location, local time
and an overhead patch reference (GeoParquet tables), cut into streaming shards, with
teacher embeddings stored beside them.

    >>> from omnimap.pairs import from_photos, write_shards, ShardReader
    >>> from_photos("photos/", "bmng", "pairs.parquet", ground_size_m=500, pixels=224)
    >>> write_shards("pairs.parquet", "shards/")
    >>> for sample in ShardReader("shards/").iter_samples(seed=0, epoch=0): ...
"""

from __future__ import annotations

import importlib

_HOMES = {
    "from_csv": "build",
    "from_photos": "build",
    "write_geotagged_jpeg": "exif",
    "Position": "shards",
    "Sample": "shards",
    "ShardReader": "shards",
    "load_ground": "shards",
    "write_shards": "shards",
    "Pairs": "table",
    "read_pairs": "table",
    "TeacherEmbeddings": "teacher",
    "read_teacher_embeddings": "teacher",
    "write_teacher_embeddings": "teacher",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    # Lazy, like omnimap/__init__: the CLI imports omnimap.pairs.cli on every start,
    # and pyarrow, rasterio and the tile stack are not needed to print --help.
    if name in _HOMES:
        return getattr(importlib.import_module(f"omnimap.pairs.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'omnimap.pairs' has no attribute {name!r}")
