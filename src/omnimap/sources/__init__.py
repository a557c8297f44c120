"""Overhead imagery sources behind one interface.

Every source gives north-up uint8 RGB patches (N, 3, P, P) centred on points
(``patches``, or ``read`` for a per-point failure mask), a content ``key``, an
``attribution`` and a ``to_config`` dict that ``source_from_config`` turns back into
the same source. Kinds: the built-in Blue Marble (``sources.bmng``), local GeoTIFF/COG
(``sources.geotiff``) and XYZ tile servers (``sources.xyz``).
"""

from omnimap.sources.base import PatchBatch, PatchSource
from omnimap.sources.config import open_source, source_from_config
from omnimap.sources.warp import PatchGeometry

__all__ = ["PatchBatch", "PatchGeometry", "PatchSource", "open_source", "source_from_config"]
