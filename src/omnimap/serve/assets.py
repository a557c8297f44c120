"""The web page's built files (``make web`` puts them in ``static/``), held in memory.

They are read once at start-up into a dict; a request can only pick one of those
names, so no path from a request ever reaches the file system.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import xxhash

STATIC_DIR = Path(__file__).resolve().parent / "static"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
MAX_ASSET_BYTES = 16 * 1024**2  # a built bundle is ~200 kB; anything huge is not ours


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def load_assets(directory: Path = STATIC_DIR) -> dict[str, Asset]:
    """The built files directly in ``directory`` by name (empty if not built)."""
    if not directory.is_dir():
        return {}
    assets = {}
    for path in sorted(directory.iterdir()):
        media_type = MEDIA_TYPES.get(path.suffix)
        if media_type is None or not path.is_file() or path.stat().st_size > MAX_ASSET_BYTES:
            continue
        body = path.read_bytes()
        assets[path.name] = Asset(body, media_type, f'"{xxhash.xxh3_64_hexdigest(body)}"')
    return assets


def missing_page() -> str:
    """Shown at / when the page was not built: says how to build it (and shows no
    path of this machine)."""
    return """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>omnimap: web page not built</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em}
code{background:#eee;padding:.1em .3em;border-radius:3px}</style></head>
<body><h1>The web map is not built</h1>
<p>The server is running, but this installation of omnimap has no page assets.</p>
<p>A wheel of omnimap carries them; in a clone, build them with <code>make web</code>
(runs <code>npm ci</code> and the build in <code>web/</code>; <code>make install</code>
and <code>make demo</code> do it too), then restart <code>omnimap serve</code>.</p>
<p>The tile, legend, search and download endpoints work without the page:
<code>/tiles/{z}/{x}/{y}.png?q=...</code>, <code>/legend?q=...</code>,
<code>/search?q=...</code>, <code>/map.tif?q=...</code>, <code>/health</code>.</p>
</body></html>
"""
