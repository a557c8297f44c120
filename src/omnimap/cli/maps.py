"""``omnimap map``, ``search``, ``captions`` and ``models``."""

from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path
from typing import Annotated

import typer

from omnimap.cli.classes import ClassesOpt, class_map_command
from omnimap.cli.options import BBoxOpt, FieldOpt, ModelOpt, RegionOpt, ResolutionOpt, WhenOpt
from omnimap.core.errors import InputError
from omnimap.core.fileio import check_output_file


def default_out(prompt: str) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:60] or "map"
    return Path(f"{slug}.tif")


def map_command(
    prompt: Annotated[str | None, typer.Argument(help="What to map, in words.")] = None,
    bbox: BBoxOpt = None,
    region: RegionOpt = None,
    resolution: ResolutionOpt = None,
    when: WhenOpt = None,
    out: Annotated[
        Path | None, typer.Option(help="Output GeoTIFF; .png, .geojson and .stac.json beside it.")
    ] = None,
    model: ModelOpt = None,
    top_k: Annotated[int, typer.Option("--top-k", help="Peaks written to the GeoJSON.")] = 10,
    field: FieldOpt = None,
    classes: ClassesOpt = None,
    audio: Annotated[
        Path | None, typer.Option(help="Map an audio clip instead of a prompt (soundscape model).")
    ] = None,
    observations: Annotated[
        Path | None, typer.Option(help="A gallery: cells blend in the observations near them.")
    ] = None,
    uncertainty: Annotated[
        bool, typer.Option(help="Band 2: the predicted variance (a probabilistic model).")
    ] = False,
) -> None:
    """Map a prompt: writes PATH.tif (COG), PATH.png, PATH.geojson and PATH.stac.json.
    With --classes instead of a prompt: P(class) bands, the most likely class, a PNG;
    with --audio: where that sound could be heard (a soundscape model)."""
    from omnimap.api import observed_map, zero_shot_map
    from omnimap.cli.sound import map_audio

    if sum(x is not None for x in (prompt, classes, audio)) != 1:
        raise InputError("give exactly one of PROMPT, --classes or --audio CLIP")
    if classes is not None:
        return class_map_command(classes, bbox, region, resolution, when, out, model, field)
    out = out or default_out(prompt or audio.stem)
    if out.suffix.lower() not in (".tif", ".tiff"):
        raise InputError(f"--out must end in .tif or .tiff, got {str(out)!r}")
    if top_k < 1:
        raise InputError("--top-k must be at least 1")
    check_output_file(out)
    if uncertainty and (audio is not None or observations is not None):
        raise InputError("--uncertainty goes with a text prompt, not with --audio or --observations")
    if audio is not None:
        result = map_audio(audio, bbox, region, resolution, when, model)
    else:
        mapper = (partial(zero_shot_map, uncertainty=uncertainty) if observations is None
                  else partial(observed_map, observations=observations))  # fmt: skip
        result = mapper(prompt, bbox=bbox, region=region, resolution=resolution,
                        when=when, model=model, field=field)  # fmt: skip
    paths = result.write(out, k=top_k)
    g = result.grid
    typer.echo(f"{result.title}: {g.nrows} x {g.ncols} cells at {g.resolution:g} deg")
    for kind, path in paths.items():
        typer.echo(f"  {kind:8s}{path}")
    for p in result.peaks(3):
        typer.echo(
            f"  peak {p['rank']}: lon {p['lon']:.3f}, lat {p['lat']:.3f}, score {p['score']:.3f}"
        )


def search_command(
    prompt: Annotated[str, typer.Argument(help="What to find, in words.")],
    field: FieldOpt = None,
    bbox: BBoxOpt = None,
    region: RegionOpt = None,
    resolution: ResolutionOpt = None,
    when: WhenOpt = None,
    model: ModelOpt = None,
    pairs: Annotated[
        Path | None,
        typer.Option(
            help="Search the samples of a pairs table or shard folder (each at its own time)."
        ),
    ] = None,
    k: Annotated[int, typer.Option("--k", "-k", help="How many to list.")] = 20,
    method: Annotated[
        str,
        typer.Option(
            help="exact (one pass), flat (cached index, float16) or ivf (cached, approximate)."
        ),
    ] = "exact",
    nprobe: Annotated[
        int | None, typer.Option(help="ivf: inverted lists to scan (more: slower, better recall).")
    ] = None,
    geojson: Annotated[
        Path | None, typer.Option(help="Also write the hits as GeoJSON points.")
    ] = None,
    sheet: Annotated[
        Path | None,
        typer.Option(help="Also write a PNG contact sheet of the hits' overhead patches."),
    ] = None,
) -> None:
    """Where in the world: the cells of a field or region (or the samples of a pairs set)
    that best match a prompt."""
    from omnimap import api

    for path, what in ((geojson, "--geojson"), (sheet, "--sheet")):
        if path is not None:
            check_output_file(path, what)
    if pairs is not None:
        if field is not None or bbox is not None or region is not None:
            raise InputError("--pairs searches its own samples: leave out --field/--bbox/--region")
        result, patches = api.search_pairs(prompt, pairs, model=model or "atlas", when=when, k=k)
    else:
        result = api.search(prompt, field=field, bbox=bbox, region=region, resolution=resolution,
                            when=when, k=k, method=method, nprobe=nprobe, model=model)  # fmt: skip
        patches = None
    typer.echo(result.table())
    if geojson is not None:
        typer.echo(f"written {result.write_geojson(geojson)}")
    if sheet is not None:
        typer.echo(
            f"written {api.write_contact_sheet(result, sheet, patches, model=model, field=field)}"
        )


def captions_command(
    lon: Annotated[float, typer.Option(help="Longitude, degrees.")],
    lat: Annotated[float, typer.Option(help="Latitude, degrees.")],
    when: WhenOpt = None,
    model: Annotated[str, typer.Option(help="Built-in model name or a model directory.")] = "atlas",
    bank: Annotated[
        Path | None, typer.Option(help="Caption file, one per line (default: built-in).")
    ] = None,
    k: Annotated[int, typer.Option("-k", help="How many captions.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What a place looks like at a time: the captions its embedding matches best."""
    from omnimap import api
    from omnimap.maps.captions import read_caption_bank

    ranked = api.captions(lon, lat, when=when, bank=read_caption_bank(bank) if bank else None,
                          k=k, model=model)  # fmt: skip
    if as_json:
        typer.echo(json.dumps(ranked, indent=1))
        return
    for r in ranked:
        typer.echo(f"{r['rank']:2d}. {r['score']:.3f}  {r['caption']}")


def models_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The built-in models and teachers: what they embed, dimensions, licences."""
    from omnimap import api

    listing = api.list_models()
    if as_json:
        typer.echo(json.dumps(listing, indent=1))
        return
    typer.echo("models")
    for m in listing["models"]:
        typer.echo(
            f"  {m['name']:14s} {m['dim']:>5}-d  teacher {m['teacher']:12s} {m['description']}"
        )
    typer.echo("teachers")
    for t in listing["teachers"]:
        typer.echo(f"  {t['name']:14s} {t['dim']:>5}-d  {'+'.join(t['modalities']):12s} {t['licence']}; "
                   f"{t['source']} ({t['install']})")  # fmt: skip
