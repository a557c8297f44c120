"""User-level locations (caches)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Root of omnimap's caches: $OMNIMAP_CACHE_DIR, else ~/.cache/omnimap."""
    root = os.environ.get("OMNIMAP_CACHE_DIR")
    path = Path(root) if root else Path.home() / ".cache" / "omnimap"
    path.mkdir(parents=True, exist_ok=True)
    return path
