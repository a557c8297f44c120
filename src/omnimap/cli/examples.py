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


@example_app.command("sound")
def example_sound_command(
    workdir: Annotated[Path, typer.Option(help="Folder for the clip and the outputs.")] = Path(
        "sound-example"
    ),
    model: Annotated[str, typer.Option(help="A soundscape model: name or directory.")] = "soundscape",
) -> None:
    """A synthetic clip through decoding, BirdNET and sound/species maps (sound extra)."""
    from omnimap.examples.sound import run

    result = run(workdir, model=model)
    s = result["summary"]
    typer.echo(f"clip: {s['clip_seconds']:.1f} s in {s['windows']} BirdNET windows")
    for line in s["birdnet_heard"] or ["BirdNET hears nothing above 0.1"]:
        typer.echo(f"  {line}")
    for sp in s["listen"]["species"]:
        typer.echo(f"  heard in Zurich at dawn: {sp['common']} ({sp['score']:.3f})")
    outputs = {**result["where"], "swallow": result["swallow"], "summary": result["json"]}
    for kind, path in outputs.items():
        typer.echo(f"  {kind:9s}{path}")
