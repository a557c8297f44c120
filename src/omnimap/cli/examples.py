"""``omnimap example``: runnable end-to-end examples."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

example_app = typer.Typer(no_args_is_help=True, help="Runnable end-to-end examples.")


@example_app.command("sat2cap")
def example_sat2cap_command(
    workdir: Annotated[
        Path, typer.Option(help="Folder for the data, the run and the outputs.")
    ] = Path("sat2cap-example"),
    steps: Annotated[int, typer.Option(help="Training steps.")] = 40,
) -> None:
    """Build a small synthetic cross-view set offline, train, evaluate, map, search."""
    from omnimap.examples.sat2cap import run

    result = run(workdir, steps=steps)
    typer.echo(result["table"])
    outputs = {"metrics": result["metrics"], **result["map"], "search": result["search"]["png"],
               "captions": result["captions"]}  # fmt: skip
    for kind, path in outputs.items():
        typer.echo(f"  {kind:9s}{path}")
