"""``python -m omnimap.serve``: the server without the rest of the CLI (tests, benchmarks)."""

import sys

import typer

from omnimap.errors import OmnimapError
from omnimap.serve.cli import serve_command

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(serve_command)

if __name__ == "__main__":
    try:
        app()
    except OmnimapError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
