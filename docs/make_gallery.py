"""Render the README gallery with the built-in atlas: docs/gallery/*.png.

.venv/bin/python docs/make_gallery.py          # all of them
.venv/bin/python docs/make_gallery.py --new    # only the climate and class-set ones
"""

from __future__ import annotations

from pathlib import Path

import omnimap

OUT = Path(__file__).resolve().parent / "gallery"

# (file stem, prompt, place keyword arguments, when)
MAPS = [
    ("alps-snow-january", "snow-covered mountains", {"region": "Alps"}, "2024-01-15T09:00"),
    ("alps-snow-july", "snow-covered mountains", {"region": "Alps"}, "2024-07-15T09:00"),
    (
        "europe-harbour-night",
        "a busy harbour at night",
        {"bbox": "-10,35,30,60"},
        "2024-07-01T23:00",
    ),
    ("world-sand-dunes", "sand dunes", {}, None),
    ("world-winter-snow-january", "deep winter snow", {}, "2024-01-15T12:00"),
    ("world-winter-snow-july", "deep winter snow", {}, "2024-07-15T12:00"),
    ("world-night-utc", "a dark night sky with stars", {}, "2024-03-20T00:00+00:00"),
    ("south-america-rainforest", "rainforest canopy", {"region": "South America"}, None),
    ("fiji-antimeridian-open-sea", "waves offshore", {"bbox": "170,-25,-170,-10"}, None),
    ("asia-monsoon-july", "monsoon downpours drench the land", {"bbox": "60,0,130,40"}, "2024-07-15T15:00"),
    ("world-heat-july", "sweltering heatwave", {}, "2024-07-15T15:00"),
]
# (file stem, class set, place keyword arguments, when)
CLASS_MAPS = [
    ("europe-classes-igbp", "igbp", {"region": "Europe"}, None),
]
NEW = ("asia-monsoon-july", "world-heat-july", "europe-classes-igbp")  # added with the climate atlas


def main(only: tuple[str, ...] | None = None) -> None:
    """Render every gallery image, or only the stems in ``only``."""
    OUT.mkdir(parents=True, exist_ok=True)
    for stem, prompt, place, when in MAPS:
        if only is None or stem in only:
            result = omnimap.zero_shot_map(prompt, when=when, **place)
            result.write_png(OUT / f"{stem}.png")
            print(f"{stem}: {result.title}")
    for stem, classes, place, when in CLASS_MAPS:
        if only is None or stem in only:
            result = omnimap.class_map(classes, when=when, **place)
            result.write_png(OUT / f"{stem}.png")
            print(f"{stem}: {result.title}")


if __name__ == "__main__":
    import sys

    main(NEW if "--new" in sys.argv[1:] else None)
