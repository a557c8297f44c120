"""Progress bars, one policy: on stderr, only when stderr is a terminal, never with
``omnimap --quiet`` (``OMNIMAP_QUIET=1``) or ``TQDM_DISABLE=1``."""

from __future__ import annotations

import os
import sys

QUIET_ENV = "OMNIMAP_QUIET"


def bars_off() -> bool:
    quiet = any(os.environ.get(v, "").strip() not in ("", "0") for v in (QUIET_ENV, "TQDM_DISABLE"))
    return quiet or not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())


def progress(total: int | None, desc: str, unit: str = "cell", *, show: bool = True, **kwargs):
    """A tqdm bar (a context manager with ``update``); ``show=False`` hides it too (e.g.
    a pass too short to need one)."""
    from tqdm.auto import tqdm  # tqdm is imported on first use, like every bar's owner

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False,
                disable=not show or bars_off(), **kwargs)  # fmt: skip
