"""``omnimap map --classes NAME|FILE.txt``: class-set maps (see maps/classes.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from omnimap.core.errors import InputError

ClassesOpt = Annotated[
    str | None,
    typer.Option(
        "--classes",
        help="Map a class set instead of a prompt: transient, scenes, igbp, or a .txt file "
        "of one class per line.",
    ),
]


def class_map_command(classes: str, bbox, region, resolution, when, out: Path | None, model,
                      field) -> None:  # fmt: skip
    from omnimap.api import class_map
    from omnimap.maps.classes import read_class_set

    class_set = read_class_set(classes)  # one-line errors before anything loads
    out = out or Path(f"classes-{class_set.name}.tif")
    if out.suffix.lower() not in (".tif", ".tiff"):
        raise InputError(f"--out must end in .tif or .tiff, got {str(out)!r}")
    result = class_map(classes, bbox=bbox, region=region, resolution=resolution, when=when,
                       model=model, field=field)  # fmt: skip
    paths = result.write(out)
    g = result.grid
    typer.echo(f"{result.title}: {len(class_set.classes)} classes, {g.nrows} x {g.ncols} cells at {g.resolution:g} deg")
    for kind, path in paths.items():
        typer.echo(f"  {kind:14s}{path}")
    for name, share in result.shares()[:5]:
        typer.echo(f"  {share:6.1%}  {name}")
