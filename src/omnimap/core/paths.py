"""User-level locations (caches)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Root of omnimap's caches: $OMNIMAP_CACHE_DIR, else ~/.cache/omnimap. Not created
    here: the store creates what it writes, and turns itself off if it cannot."""
    root = os.environ.get("OMNIMAP_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "omnimap"
