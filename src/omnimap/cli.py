"""Command line: a thin layer over the Python API.

Errors a user can cause print one line and exit with code 2.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from omnimap.cli_options import BBoxOpt, RegionOpt, WhenOpt
from omnimap.errors import InputError, OmnimapError
from omnimap.fields.cli import field_app, map_with_field, search_command
from omnimap.pairs.cli import pairs_app
from omnimap.sat2cap.cli import register as register_sat2cap
from omnimap.serve.cli import serve_command

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Zero-shot maps: map anything, anywhere, anytime.")  # fmt: skip
train_app = typer.Typer(no_args_is_help=True, help="Train models.")
evaluate_app = typer.Typer(no_args_is_help=True, help="Evaluate models.")
app.add_typer(train_app, name="train")
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(field_app, name="field")
app.add_typer(pairs_app, name="pairs")
app.command("search")(search_command)
app.command("serve")(serve_command)
register_sat2cap(app, train_app, evaluate_app)


def _default_out(prompt: str) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:60] or "map"
    return Path(f"{slug}.tif")


@app.command("map")
def map_command(
    prompt: Annotated[str, typer.Argument(help="What to map, in words.")],
    bbox: BBoxOpt = None,
    region: RegionOpt = None,
    resolution: Annotated[
        float | None, typer.Option(help="Cell size in degrees (default: about a megapixel).")
    ] = None,
    when: WhenOpt = None,
    out: Annotated[
        Path | None, typer.Option(help="Output GeoTIFF; .png and .geojson are written beside it.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Built-in model name or a model directory (default: atlas, or the field's)."
        ),
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", help="Peaks written to the GeoJSON.")] = 10,
    field: Annotated[
        Path | None, typer.Option(help="Map from an embedding field (its model and resolution).")
    ] = None,
) -> None:
    """Map a prompt: writes PATH.tif (COG), PATH.png, PATH.geojson and PATH.stac.json."""
    from omnimap.api import zero_shot_map

    out = out or _default_out(prompt)
    if out.suffix.lower() not in (".tif", ".tiff"):
        raise InputError(f"--out must end in .tif or .tiff, got {str(out)!r}")
    if top_k < 1:
        raise InputError("--top-k must be at least 1")
    if field is not None:
        result = map_with_field(
            prompt, field, bbox=bbox, region=region, resolution=resolution, when=when, model=model
        )
    else:
        place = {"bbox": bbox, "region": region, "resolution": resolution, "when": when}
        result = zero_shot_map(prompt, model=model or "atlas", **place)
    paths = result.write(out, k=top_k)
    typer.echo(
        f"{result.title}: {result.grid.nrows} x {result.grid.ncols} cells at {result.grid.resolution:g} deg"
    )
    for kind, path in paths.items():
        typer.echo(f"  {kind:8s}{path}")
    for p in result.peaks(3):
        typer.echo(
            f"  peak {p['rank']}: lon {p['lon']:.3f}, lat {p['lat']:.3f}, score {p['score']:.3f}"
        )


@train_app.command("atlas")
def train_atlas_command(
    out: Annotated[Path, typer.Option(help="Run directory for the checkpoint.")] = Path(
        "runs/atlas"
    ),
    samples: Annotated[int | None, typer.Option(help="Training samples (default 300,000).")] = None,
    steps: Annotated[int | None, typer.Option(help="Optimizer steps (default 6,000).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    config: Annotated[Path | None, typer.Option(help="JSON file of training options.")] = None,
) -> None:
    """Train the built-in world atlas from scratch (CPU, under 30 minutes on 2 cores)."""
    from omnimap.train.atlas import AtlasTrainConfig, train_atlas

    options = _read_json(config) if config else {}
    options.update({k: v for k, v in {"samples": samples, "steps": steps}.items() if v is not None})
    options.setdefault("seed", seed)
    model = train_atlas(AtlasTrainConfig.from_dict(options), out)
    t = model.config["training"]
    typer.echo(
        f"saved {model.path} ({t['prep_seconds']:.0f} s data, {t['train_seconds']:.0f} s training)"
    )


@evaluate_app.command("atlas")
def evaluate_atlas_command(
    model: Annotated[str, typer.Option(help="Built-in model name or a model directory.")] = "atlas",
    out: Annotated[Path, typer.Option(help="Metrics JSON.")] = Path("atlas-metrics.json"),
    samples: Annotated[int, typer.Option(help="Held-out retrieval samples.")] = 10_000,
    card: Annotated[
        bool,
        typer.Option(help="Also write MODEL_CARD.md and metrics.json into the model directory."),
    ] = False,
) -> None:
    """Evaluate on the spatial hold-out: retrieval, zero-shot land-cover AUC, time response."""
    from omnimap.atlas.card import write_card
    from omnimap.eval.atlas import evaluate_atlas, format_report
    from omnimap.fileio import write_json_atomic
    from omnimap.models.checkpoint import load_checkpoint

    metrics = evaluate_atlas(model, samples=samples, out=out)
    typer.echo(format_report(metrics))
    typer.echo(f"written {out}")
    if card:
        loaded = load_checkpoint(model)
        write_json_atomic(loaded.path / "metrics.json", metrics)
        typer.echo(f"written {write_card(loaded.path, loaded.config, metrics)}")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read config {path}: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"config {path} must hold a JSON object")
    return data


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
