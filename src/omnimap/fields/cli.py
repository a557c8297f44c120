"""Command-line pieces for embedding fields, mounted by omnimap.cli:

    app.add_typer(field_app, name="field")    # omnimap field build ...
    app.command("search")(search_command)     # omnimap search PROMPT --field FIELD
    # omnimap map PROMPT --field FIELD: map_command calls map_with_field

Library errors a user can cause are InputError/DataError, printed by omnimap.cli.main
as one line with exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from omnimap.cli_options import BBoxOpt, RegionOpt, WhenOpt
from omnimap.errors import InputError
from omnimap.fields.store import DEFAULT_CHUNK
from omnimap.maps.result import MapResult

field_app = typer.Typer(
    no_args_is_help=True,
    help="Embedding fields: every cell's overhead embedding stored once, for fast maps and search.",
)


@field_app.command("build")
def build_command(
    out: Annotated[Path, typer.Option(help="Field directory (Zarr) to create, or to finish.")],
    resolution: Annotated[float, typer.Option(help="Cell size in degrees.")],
    bbox: BBoxOpt = None,
    region: RegionOpt = None,
    model: Annotated[str, typer.Option(help="Built-in model name or a model directory.")] = "atlas",
    dtype: Annotated[
        str, typer.Option(help="Storage: float32, float16, or int8 with a per-cell scale.")
    ] = "float16",
    engine: Annotated[
        str, typer.Option(help="local (this process) or ray (Ray actors, RAY_ADDRESS or local).")
    ] = "local",
    workers: Annotated[
        int | None, typer.Option(help="Ray actors (default: one per CPU Ray has).")
    ] = None,
    chunk: Annotated[int, typer.Option(help="Chunk side in cells.")] = DEFAULT_CHUNK,
) -> None:
    """Store the time-free overhead embedding of every cell of a region (no region: the
    world). An interrupted build resumes: run the same command again."""
    from omnimap.fields.build import build_field

    r = build_field(out, resolution=resolution, bbox=bbox, region=region, model=model,
                    dtype=dtype, engine=engine, workers=workers, chunk=chunk)  # fmt: skip
    typer.echo(
        f"{r.path}: built {r.chunks_built} of {r.chunks_total} chunks ({r.cells_built:,} cells) "
        f"in {r.seconds:.1f} s, {r.cells_per_s:,.0f} cells/s"
        + (f"; {r.chunks_skipped} were already built" if r.chunks_skipped else "")
    )


def search_command(
    prompt: Annotated[str, typer.Argument(help="What to find, in words.")],
    field: Annotated[Path, typer.Option(help="A field built by `omnimap field build`.")],
    when: WhenOpt = None,
    k: Annotated[int, typer.Option("--k", help="How many cells to list.")] = 20,
    method: Annotated[
        str,
        typer.Option(
            help="exact (a pass over the field), flat (cached index, float16) or ivf (cached, approximate)."
        ),
    ] = "exact",
    nprobe: Annotated[
        int | None, typer.Option(help="ivf: inverted lists to scan (more: slower, better recall).")
    ] = None,
    geojson: Annotated[
        Path | None, typer.Option(help="Also write the cells as GeoJSON points.")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Where to load the field's model (default: as recorded).")
    ] = None,
) -> None:
    """Where in the world: the cells of a field that best match a prompt."""
    from omnimap.fields.search import search_field

    result = search_field(field, prompt, when=when, k=k, method=method, nprobe=nprobe, model=model)
    typer.echo(result.table())
    if geojson is not None:
        typer.echo(f"written {result.write_geojson(geojson)}")


def map_with_field(
    prompt: str, field: Path, bbox: str | None = None, region: str | None = None,
    resolution: float | None = None, when: str | None = None, model: str | None = None,
) -> MapResult:  # fmt: skip
    """What ``omnimap map PROMPT --field FIELD`` computes (no region: the field's extent)."""
    from omnimap.fields.query import map_from_field

    if resolution is not None:
        raise InputError("--resolution comes from the field; leave it out with --field")
    return map_from_field(field, prompt, bbox=bbox, region=region, when=when, model=model)
