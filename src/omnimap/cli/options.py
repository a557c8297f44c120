"""Command-line options shared by several commands, defined once so that every
command states the same contract (order, meaning, help) for place, time and model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from omnimap.core.errors import InputError

BBoxOpt = Annotated[
    str | None, typer.Option(help="W,S,E,N in degrees; W > E crosses the antimeridian.")
]
RegionOpt = Annotated[
    str | None, typer.Option(help="A country, continent, natural region or populated place.")
]
WhenOpt = Annotated[
    str | None,
    typer.Option(help="ISO-8601; local solar time at each cell unless it has a UTC offset."),
]
ResolutionOpt = Annotated[
    float | None,
    typer.Option(help="Cell size in degrees (default: about a megapixel, or the field's)."),
]
ModelOpt = Annotated[
    str | None,
    typer.Option(help="Built-in model name or a model directory (default: atlas, or the field's)."),
]
FieldOpt = Annotated[
    Path | None, typer.Option(help="An embedding field (omnimap field build): o is read from it.")
]


def read_json_object(path: Path, what: str = "config") -> dict:
    """A JSON object from a file; one-line InputError otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {what} {path}: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"{what} {path} must hold a JSON object")
    return data
