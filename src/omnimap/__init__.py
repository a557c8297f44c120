"""omnimap: zero-shot maps of anything, anywhere, anytime.

>>> import omnimap
>>> result = omnimap.zero_shot_map("snow-covered mountains", region="Alps", when="2024-01-15T09:00")
>>> result.write("alps.tif")  # alps.tif (COG), alps.png, alps.geojson
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["MapResult", "zero_shot_map", "__version__"]


def __getattr__(name: str):
    # Lazy: `import omnimap` stays fast; torch loads on first use.
    if name == "zero_shot_map":
        from omnimap.api import zero_shot_map

        return zero_shot_map
    if name == "MapResult":
        from omnimap.maps.result import MapResult

        return MapResult
    raise AttributeError(f"module 'omnimap' has no attribute {name!r}")
