"""``omnimap field build``: embedding fields (``map``/``search``/``serve`` take ``--field``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from omnimap.cli.options import BBoxOpt, RegionOpt
from omnimap.core.fileio import check_output_dir
from omnimap.fields.store import DEFAULT_CHUNK

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
        int | None,
        typer.Option(help="Ray actors (default, and at most: one per CPU Ray sees).", min=1),
    ] = None,
    chunk: Annotated[int, typer.Option(help="Chunk side in cells.")] = DEFAULT_CHUNK,
) -> None:
    """Store the time-free overhead embedding of every cell of a region (no region: the
    world). An interrupted build resumes: run the same command again."""
    from omnimap.fields.build import build_field
    from omnimap.fields.ray_engine import start_ray, stop_ray

    check_output_dir(out)
    if engine == "ray":  # Ray missing or not starting: one line, and no field left behind
        workers = start_ray(workers)
    try:
        r = build_field(out, resolution=resolution, bbox=bbox, region=region, model=model,
                        dtype=dtype, engine=engine, workers=workers, chunk=chunk)  # fmt: skip
    finally:
        if engine == "ray":
            stop_ray()
    typer.echo(
        f"{r.path}: built {r.chunks_built} of {r.chunks_total} chunks ({r.cells_built:,} cells) "
        f"in {r.seconds:.1f} s, {r.cells_per_s:,.0f} cells/s"
        + (f"; {r.chunks_skipped} were already built" if r.chunks_skipped else "")
    )
    if r.repaired:
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(r.repaired.items()))
        typer.echo(f"repaired {sum(r.repaired.values())} damaged chunks ({kinds})")
