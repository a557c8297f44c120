"""``omnimap species`` and ``omnimap listen``: species range maps by season and what
one would hear at a place and time (soundscape models; needs the sound extra)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from omnimap.cli.options import BBoxOpt, RegionOpt, ResolutionOpt
from omnimap.core.errors import InputError

SoundModelOpt = Annotated[
    str, typer.Option(help="A soundscape model: built-in name or a model directory.")
]
OUT_SUFFIXES = (".tif", ".tiff", ".gif")


def species_command(
    name: Annotated[
        str, typer.Argument(help="Scientific or common name (38 languages), or a genus.")
    ],
    when: Annotated[
        str | None, typer.Option(help="Date (YYYY-MM-DD: local solar noon) or ISO date-time.")
    ] = None,
    weeks: Annotated[
        str | None,
        typer.Option(help="A time-lapse of BirdNET weeks, e.g. 1-48 (multi-band COG or GIF)."),
    ] = None,
    bbox: BBoxOpt = None,
    region: RegionOpt = None,
    resolution: ResolutionOpt = None,
    out: Annotated[
        Path, typer.Option(help="X.tif (with .png/.geojson/.stac.json), or X.gif for --weeks.")
    ] = Path("species.tif"),
    model: SoundModelOpt = "soundscape",
) -> None:
    """Map where (and when) a species is expected: one date, or a time-lapse of weeks."""
    from omnimap.api import get_engine, map_grid
    from omnimap.geo.place import resolve_place
    from omnimap.maps.result import MapResult
    from omnimap.maps.sound import (
        parse_weeks,
        species_maps,
        week_when,
        when_of,
        write_weeks_cog,
        write_weeks_gif,
    )  # fmt: skip

    if out.suffix.lower() not in OUT_SUFFIXES:
        raise InputError(f"--out must end in .tif, .tiff or .gif, got {str(out)!r}")
    if weeks is not None and when is not None:
        raise InputError("give --when (one map) or --weeks (a time-lapse), not both")
    week_list = parse_weeks(weeks) if weeks is not None else None
    if week_list is None and out.suffix.lower() == ".gif":
        raise InputError("a .gif is a time-lapse: add --weeks, e.g. --weeks 1-48")
    moment = when_of(when)
    resolve_place(bbox, region)  # a bad place fails before the model loads
    engine = get_engine(model)
    grid, label, inside = map_grid(engine, bbox, region, resolution)
    year = moment.dt.year if moment is not None else 2024
    whens = [week_when(w, year) for w in week_list] if week_list else [moment]
    cube, title = species_maps(engine, name, grid, whens)
    if inside is not None:
        cube[:, ~inside] = np.nan  # outside the country or continent: nodata
    results = [MapResult(scores=c, grid=grid, prompt=title, when=w, place=label, model=engine.name)
               for c, w in zip(cube, whens, strict=True)]  # fmt: skip
    licence = engine.teacher.licence
    if week_list is None:
        paths = results[0].write(out)
    elif out.suffix.lower() == ".gif":
        paths = {"gif": write_weeks_gif(out, results)}
    else:
        tags = {"prompt": title, "model": engine.name, "place": label, "licence": licence}
        paths = {"tif": write_weeks_cog(out, cube, grid, week_list, tags)}
    typer.echo(f"{title}: {grid.nrows} x {grid.ncols} cells at {grid.resolution:g} deg, "
               f"{len(whens)} map(s); licence {licence}")  # fmt: skip
    for kind, path in paths.items():
        typer.echo(f"  {kind:8s}{path}")


def listen_command(
    at: Annotated[str, typer.Option("--at", help="LON,LAT in degrees.")],
    when: Annotated[
        str | None,
        typer.Option(help="Date (local solar noon) or ISO date-time; default: any time."),
    ] = None,
    k: Annotated[int, typer.Option("-k", help="How many species and captions.")] = 10,
    model: SoundModelOpt = "soundscape",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What one would hear at a place and time: top species and soundscape captions."""
    from omnimap.api import get_engine
    from omnimap.maps.sound import listen, when_of

    try:
        lon, lat = (float(v) for v in at.split(","))
    except ValueError:
        raise InputError(f"--at must be LON,LAT in degrees, got {at!r}") from None
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise InputError(f"--at is out of range: lon {lon}, lat {lat}")
    moment = when_of(when)
    heard = listen(get_engine(model), lon, lat, moment, k=k)
    if as_json:
        typer.echo(json.dumps(heard, indent=1, ensure_ascii=False))
        return
    typer.echo(f"at {lon:g}, {lat:g}, {moment.describe() if moment else 'any time'} "
               f"(model {heard['model']}; licence {heard['licence']})")  # fmt: skip
    typer.echo("species (model score; BirdNET meta-model probability that week)")
    for s in heard["species"]:
        typer.echo(f"  {s['rank']:2d}. {s['score']:.3f}  p={s['meta_probability']:.2f}  "
                   f"{s['common']} ({s['scientific']})")  # fmt: skip
    typer.echo("sounds")
    for c in heard["captions"]:
        typer.echo(f"  {c['rank']:2d}. {c['score']:.3f}  {c['caption']}")


def map_audio(audio: Path, bbox, region, resolution, when, model):
    """``omnimap map --audio``: the MapResult of a clip (bad input fails before any
    model loads)."""
    from omnimap.api import get_engine, map_grid
    from omnimap.geo.place import resolve_place
    from omnimap.maps.sound import sound_map, when_of
    from omnimap.media.audio import read_audio

    moment = when_of(when)
    resolve_place(bbox, region)
    clip = read_audio(audio)  # corrupt, empty, silent or too long: fails before the model loads
    engine = get_engine(model or "soundscape")
    grid, label, inside = map_grid(engine, bbox, region, resolution)
    result = sound_map(engine, clip, grid, moment, f"sound of {audio.name}", label)
    if inside is not None:
        result.scores[~inside] = np.nan  # outside the country or continent: nodata
    return result
