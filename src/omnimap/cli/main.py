"""``omnimap``: the command line, a thin layer over the Python API.

Errors a user can cause print one line and exit with code 2.
"""

from __future__ import annotations

import os
import sys

import typer

from omnimap.cli.cache import cache_app
from omnimap.cli.evaluate import evaluate_app
from omnimap.cli.examples import example_app
from omnimap.cli.field import field_app
from omnimap.cli.locate import gallery_app, locate_command, verify_command, when_command
from omnimap.cli.maps import captions_command, map_command, models_command, search_command
from omnimap.cli.pairs import pairs_app
from omnimap.cli.serve import serve_command
from omnimap.cli.sound import listen_command, species_command
from omnimap.cli.train import train_app
from omnimap.core.errors import OmnimapError
from omnimap.core.progress import QUIET_ENV

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Zero-shot maps: map anything, anywhere, anytime.")  # fmt: skip


@app.callback()
def _global_options(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars (they go to stderr, "
                               "and only on a terminal)."),
) -> None:  # fmt: skip
    if quiet:
        os.environ[QUIET_ENV] = "1"


app.command("map")(map_command)
app.command("search")(search_command)
app.command("captions")(captions_command)
app.command("models")(models_command)
app.command("serve")(serve_command)
app.command("species")(species_command)
app.command("listen")(listen_command)
app.add_typer(train_app, name="train")
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(field_app, name="field")
app.add_typer(pairs_app, name="pairs")
app.add_typer(example_app, name="example")
app.add_typer(cache_app, name="cache")
app.add_typer(gallery_app, name="gallery")
app.command("locate")(locate_command)
app.command("when")(when_command)
app.command("verify")(verify_command)


def main() -> None:
    try:
        app()
    except OmnimapError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
