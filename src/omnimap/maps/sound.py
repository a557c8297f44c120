"""Sound and species maps through the engine's one scoring path, for soundscape models.

- ``species_query``: a BirdNET class by scientific or common name (any of its 38
  languages), or a genus, as one query vector of the soundscape space;
- ``species_maps``: a species' maps at one or many BirdNET weeks (a time-lapse);
- ``sound_map``: "where could I hear this, then?" for a clip;
- ``listen``: what one would hear at a place and time (top species, top captions);
- ``write_weeks_cog`` / ``write_weeks_gif``: a time-lapse as a multi-band COG or a GIF.

A date without a clock time means local solar noon (``when_of``). Every map carries the
BirdNET licence (CC BY-NC-SA 4.0, non-commercial) in its metadata.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
from PIL import Image

from omnimap.core.errors import InputError
from omnimap.core.fileio import atomic_path
from omnimap.datasets.soundscape import ELEMENTS, WEEK_MID_DAY, WEEKS
from omnimap.geo.grid import LatLonGrid
from omnimap.geo.timefeat import When
from omnimap.maps.captions import place_embedding
from omnimap.maps.engine import MapEngine
from omnimap.maps.render import render_map
from omnimap.maps.result import MapResult
from omnimap.maps.scoring import cosine_scores
from omnimap.media.audio import Waveform
from omnimap.teachers.birdnet import BirdNetMeta, week_of
from omnimap.teachers.registry import get_teacher
from omnimap.teachers.soundscape import SoundscapeTeacher

GIF_FRAME_MS = 400
MAX_TIMELAPSE_CELLS = 4_000_000  # weeks x cells held in memory for a time-lapse


def soundscape_teacher(engine: MapEngine) -> SoundscapeTeacher:
    """The engine's teacher, uncached (its matrices are used directly); a model of
    another teacher is an InputError naming the one to use."""
    spec = engine.model.config["teacher"]
    if spec.get("kind") != "soundscape":
        raise InputError(
            f"model {engine.name!r} has a {spec.get('kind', 'text')} teacher; species and sound "
            "maps need a soundscape model (--model soundscape)"
        )
    return get_teacher(str(spec["name"]), "soundscape", cached=False)


def when_of(text: str | When | None) -> When | None:
    """A ``--when``; a bare date (YYYY-MM-DD) is local solar noon of that day."""
    if text is None or isinstance(text, When):
        return text
    text = str(text).strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        text += "T12:00"
    return When.parse(text)


def parse_weeks(text: str) -> list[int]:
    """``"1-48"``, ``"20"`` or ``"1,13,25,37"`` -> BirdNET weeks (each 1..48)."""
    weeks: list[int] = []
    for part in str(text).split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise InputError(f"--weeks must look like 1-48 or 5,10,15, got {text!r}")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if not (1 <= lo <= hi <= WEEKS):
            raise InputError(f"weeks run 1..{WEEKS} (four per month), got {part.strip()!r}")
        weeks.extend(range(lo, hi + 1))
    return list(dict.fromkeys(weeks))


def week_when(week: int, year: int = 2024, hour: int = 12) -> When:
    """Local solar ``hour`` on the middle day of BirdNET week ``week``."""
    if not (isinstance(week, int) and 1 <= week <= WEEKS):
        raise InputError(f"week must be 1..{WEEKS}, got {week!r}")
    month, quarter = (week - 1) // 4 + 1, (week - 1) % 4
    return When(dt.datetime(year, month, WEEK_MID_DAY[quarter], hour))


def species_query(teacher: SoundscapeTeacher, name: str) -> tuple[np.ndarray, str]:
    """(1, D) query and a title for a species name, or a genus (its taxon text)."""
    labels = teacher.labels
    try:
        species = labels.species(name)
    except InputError as unknown:
        try:
            members = labels.genus(name)
        except InputError:
            raise unknown from None
        genus = members[0].genus
        return teacher.embed("taxon", [f"genus {genus}"]), f"genus {genus} ({len(members)} species)"
    return teacher.embed("species", [species.index]), str(species)


def species_maps(engine: MapEngine, name: str, grid: LatLonGrid,
                 whens: list[When | None]) -> tuple[np.ndarray, str]:  # fmt: skip
    """(len(whens), nrows, ncols) maps of a species and its title."""
    teacher = soundscape_teacher(engine)
    q, title = species_query(teacher, name)
    if len(whens) * grid.size > MAX_TIMELAPSE_CELLS:
        raise InputError(
            f"{len(whens)} weeks x {grid.size:,} cells is more than a time-lapse may hold "
            f"({MAX_TIMELAPSE_CELLS:,}); use a coarser --resolution or fewer --weeks"
        )
    cube = np.stack([engine.score_vectors(q, grid, w)[0] for w in whens])
    return cube, title


def sound_map(engine: MapEngine, clip: Waveform, grid: LatLonGrid, when: When | None,
              title: str = "a sound", place: str = "") -> MapResult:  # fmt: skip
    """Where (and, with ``when``, then) one could hear a clip."""
    q = soundscape_teacher(engine).embed("audio", [clip])
    scores = engine.score_vectors(q, grid, when)[0]
    return MapResult(scores=scores, grid=grid, prompt=title, when=when, place=place,
                     model=engine.name)  # fmt: skip


def caption_bank() -> list[str]:
    """Every phrasing of every sound element the captions are made of."""
    return [p[0].upper() + p[1:] for phrasings in ELEMENTS.values() for p in phrasings]


def listen(engine: MapEngine, lon: float, lat: float, when: When | None, k: int = 10,
           meta: BirdNetMeta | None = None) -> dict:  # fmt: skip
    """What one would hear at (lon, lat) then: the ``k`` species the model's embedding
    there matches best (with BirdNET's meta-model occurrence probability beside each,
    at that week), and the ``k`` best captions."""
    if k < 1:
        raise InputError("k must be at least 1")
    teacher = soundscape_teacher(engine)
    s = place_embedding(engine, lon, lat, when)
    labels = teacher.labels
    species = np.array([i for i in range(len(labels)) if labels[i].is_species])
    scores = cosine_scores(s, teacher.species_vectors(species)).ravel()
    top = species[np.argsort(-scores, kind="stable")[:k]]
    week = week_of(when.dt.date()) if when is not None else -1
    probs = (meta or BirdNetMeta()).occurrence(lon, lat, week, species=top.tolist())[0]
    bank = caption_bank()
    cap_scores = cosine_scores(
        s, teacher.compose(len(bank), caption=teacher.text_vectors(bank))
    ).ravel()
    order = np.argsort(-cap_scores, kind="stable")[:k]
    by_index = dict(zip(species.tolist(), scores.tolist(), strict=True))
    return {
        "lon": lon, "lat": lat, "when": when.dt.isoformat() if when else None,
        "week": week, "model": engine.name, "licence": teacher.licence,
        "species": [{"rank": r + 1, "scientific": labels[int(i)].scientific,
                     "common": labels[int(i)].common, "score": float(by_index[int(i)]),
                     "meta_probability": float(p)}
                    for r, (i, p) in enumerate(zip(top, probs, strict=True))],
        "captions": [{"rank": r + 1, "caption": bank[i], "score": float(cap_scores[i])}
                     for r, i in enumerate(order)],
    }  # fmt: skip


def write_weeks_cog(path: str | Path, cube: np.ndarray, grid: LatLonGrid, weeks: list[int],
                    tags: dict[str, str]) -> Path:  # fmt: skip
    """A float32 COG with one band per week (band descriptions ``week N``)."""
    import rasterio

    path = Path(path)
    profile = {
        "driver": "COG", "height": grid.nrows, "width": grid.ncols, "count": len(weeks),
        "dtype": "float32", "crs": "EPSG:4326", "transform": grid.transform, "nodata": np.nan,
        "compress": "deflate", "predictor": 3, "blocksize": 512, "resampling": "average",
        "overviews": "NONE" if grid.ncols == 1 else "AUTO",
    }  # fmt: skip
    with atomic_path(path, suffix=".tmp.tif") as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(cube.astype(np.float32))
        dst.update_tags(**tags, weeks=",".join(map(str, weeks)))
        for b, week in enumerate(weeks, start=1):
            dst.set_band_description(b, f"week {week}")
    return path


def write_weeks_gif(path: str | Path, results: list[MapResult]) -> Path:
    """An animated GIF of rendered maps, one frame per week (each frame's colour scale
    is its own: compare weeks in the COG)."""
    frames = []
    for result in results:
        figure = render_map(result)
        figure.canvas.draw()
        rgba = np.asarray(figure.canvas.buffer_rgba())
        frames.append(Image.fromarray(rgba[..., :3]).convert("P", palette=Image.ADAPTIVE))
    path = Path(path)
    with atomic_path(path, suffix=".tmp.gif") as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:],
                       duration=GIF_FRAME_MS, loop=0)  # fmt: skip
    return path
