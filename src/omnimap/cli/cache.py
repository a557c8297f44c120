"""``omnimap cache info`` and ``omnimap cache clear``: the one store under the cache directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

cache_app = typer.Typer(
    no_args_is_help=True,
    help="The cache of computed embeddings (bounded, least recently used entries go first).",
)


def _where(path: str) -> str:
    home = str(Path.home())
    return "~" + path[len(home) :] if path.startswith(home + "/") else path


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


@cache_app.command("info")
def info_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Where the cache is, what it holds per kind, and its size limit."""
    from omnimap.core.store import LIMIT_ENV, ArrayStore

    info = ArrayStore("").info()
    if as_json:
        typer.echo(json.dumps(info, indent=1))
        return
    typer.echo(f"cache    {_where(info['root'])}")
    typer.echo(f"entries  {info['entries']:,} ({_size(info['bytes'])})")
    typer.echo(f"limit    {_size(info['limit_bytes'])} (set {LIMIT_ENV}, e.g. 2G)")
    if info["temp_bytes"]:
        typer.echo(f"temp     {_size(info['temp_bytes'])} (writes in progress or killed)")
    for ns, row in info["namespaces"].items():
        typer.echo(f"  {ns:60s} {row['entries']:>6,}  {_size(row['bytes']):>10s}")


@cache_app.command("clear")
def clear_command() -> None:
    """Remove every entry (and temp files of killed writers); they are recomputed on use."""
    from omnimap.core.store import ArrayStore

    store = ArrayStore("")
    before = store.info()
    removed = store.clear()
    typer.echo(
        f"removed {removed:,} entries ({_size(before['bytes'])}) from {_where(before['root'])}"
    )
