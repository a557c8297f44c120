"""omnimap: zero-shot maps of anything, anywhere, anytime.

>>> import omnimap
>>> result = omnimap.zero_shot_map("snow-covered mountains", region="Alps", when="2024-01-15T09:00")
>>> result.write("alps.tif")  # alps.tif (COG), alps.png, alps.geojson, alps.stac.json

Everything here is :mod:`omnimap.api`, loaded on first use so that ``import omnimap``
stays fast (torch loads with the first map).
"""

from __future__ import annotations

__version__ = "0.1.0"


def __getattr__(name: str):
    import importlib

    api = importlib.import_module("omnimap.api")  # not "from omnimap import": that recurses
    if name in api.__all__:
        return getattr(api, name)
    raise AttributeError(f"module 'omnimap' has no attribute {name!r}")
