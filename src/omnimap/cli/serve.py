"""``omnimap serve``: the tile server and web map."""

from __future__ import annotations

import ipaddress
import socket
from typing import Annotated

import typer

from omnimap.core.errors import InputError


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_command(
    model: Annotated[
        str | None, typer.Option(help="Built-in model name or a model directory (default: atlas).")
    ] = None,
    field: Annotated[
        str | None,
        typer.Option(help="Serve an embedding field (o read from it; its model unless --model)."),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to bind; loopback unless you mean to share it.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8000,
    basemap_url: Annotated[
        str | None,
        typer.Option(
            "--basemap-url",
            help="Online basemap under the scores, e.g. https://tile.example/{z}/{x}/{y}.png "
            "(off by default: the page then uses only this server).",
        ),
    ] = None,
    cache_mb: Annotated[
        int,
        typer.Option(
            help="Memory for the server's caches, in MB: half overhead embeddings, a quarter "
            "fused embeddings, a quarter rendered tiles (the peak memory this gives is "
            "measured in the README's Performance table).",
            min=16,
            max=262144,
        ),
    ] = 1024,
) -> None:
    """Serve map tiles, legends, search, GeoTIFF downloads and the web map."""
    import uvicorn

    from omnimap.serve.app import create_app

    if not host.strip():
        raise InputError("--host is empty")
    if not _is_loopback(host):
        typer.echo(
            f"warning: binding {host} makes the server reachable from other machines; "
            "it has no authentication",
            err=True,
        )
    # Bound first: a busy port is one line and exit 2, before any model loads.
    sock = bind(host, port)
    try:
        app = create_app(model, field=field, basemap_url=basemap_url, cache_mb=cache_mb)
    except BaseException:
        sock.close()
        raise
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"omnimap: serving {app.state.service.scorer.name} on http://{shown}:{port}/")
    # One process: the model and every cache live in it (workers would each load them).
    config = uvicorn.Config(app, log_level="warning", limit_concurrency=256)
    uvicorn.Server(config).run(sockets=[sock])


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port; InputError when it cannot be had."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock
