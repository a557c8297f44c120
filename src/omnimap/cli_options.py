"""Command-line options shared by several commands, defined once so that every
command states the same contract (order, meaning, help) for place and time."""

from __future__ import annotations

from typing import Annotated

import typer

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
