"""Command-line wiring of the Sat2Cap recipe (thin: everything is in the library).

``register(app, train_app, evaluate_app)`` adds to omnimap's CLI:

- ``omnimap train --config FILE [--out RUN_DIR]`` (also under torchrun:
  ``torchrun --nproc-per-node 8 -m omnimap.cli train --config FILE``)
- ``omnimap evaluate retrieval --model RUN_DIR --pairs TABLE_OR_SHARDS``
- ``omnimap example sat2cap --workdir DIR``
- ``omnimap sat2cap search PROMPT --model RUN_DIR (--pairs P | --bbox W,S,E,N)``
- ``omnimap sat2cap captions --model RUN_DIR --lon X --lat Y [--when T]``
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from omnimap.cli_options import WhenOpt
from omnimap.errors import InputError

ModelOpt = Annotated[str, typer.Option("--model", help="A trained Sat2Cap run directory.")]


def train_from_file(config: Path, out: Path | None) -> None:
    """Train a Sat2Cap student (resumes an interrupted run in the same directory)."""
    from omnimap.sat2cap.config import TrainConfig
    from omnimap.sat2cap.train import train

    cfg = TrainConfig.from_file(config)
    result = train(cfg, out or Path("runs") / cfg.name)
    if not result.is_main:  # under torchrun, rank 0 reports
        return
    if result.losses:
        typer.echo(
            f"step {len(result.losses)}: loss {result.losses[-1]:.4f} ({result.samples_per_second:,.1f} samples/s)"
        )
    typer.echo(f"saved {result.model.path}")


def _ablations(values: list[str] | None) -> dict[str, str]:
    out = {}
    for value in values or []:
        name, sep, path = value.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise InputError(f"--ablation must be NAME=RUN_DIR, got {value!r}")
        out[name.strip()] = path.strip()
    return out


def evaluate_retrieval_command(
    model: ModelOpt,
    pairs: Annotated[Path, typer.Option(help="Held-out pairs: a pairs table or a shard folder.")],
    gallery: Annotated[int, typer.Option(help="Gallery size (all samples if fewer).")] = 10_000,
    ablation: Annotated[
        list[str] | None, typer.Option(help="NAME=RUN_DIR of an ablation run (repeatable).")
    ] = None,
    baseline: Annotated[bool, typer.Option(help="Include the plain-CLIP baseline row.")] = True,
    out: Annotated[Path, typer.Option(help="Metrics JSON.")] = Path("retrieval-metrics.json"),
) -> None:
    """Overhead <-> ground retrieval: R@1/5/10 and median rank, both directions."""
    from omnimap.fileio import write_json_atomic
    from omnimap.sat2cap.evaluate import evaluate_retrieval, format_table

    metrics = evaluate_retrieval(
        model, pairs, gallery=gallery, ablations=_ablations(ablation), baseline=baseline
    )
    write_json_atomic(out, metrics)
    typer.echo(format_table(metrics))
    typer.echo(f"written {out}")


def example_command(
    workdir: Annotated[
        Path, typer.Option(help="Folder for the data, the run and the outputs.")
    ] = Path("sat2cap-example"),
    steps: Annotated[int, typer.Option(help="Training steps.")] = 40,
) -> None:
    """Build a small synthetic cross-view set offline, train, evaluate, map, search."""
    from omnimap.sat2cap.example import run

    result = run(workdir, steps=steps)
    typer.echo(result["table"])
    for kind, path in {"metrics": result["metrics"], **result["map"], "search": result["search"]["png"],
                       "captions": result["captions"]}.items():  # fmt: skip
        typer.echo(f"  {kind:9s}{path}")


def search_command(
    prompt: Annotated[str, typer.Argument(help="What to look for, in words.")],
    model: ModelOpt,
    pairs: Annotated[
        Path | None, typer.Option(help="Candidates: the samples of a pairs table or shard folder.")
    ] = None,
    bbox: Annotated[
        str | None, typer.Option(help="Candidates: a grid over W,S,E,N from the model's imagery.")
    ] = None,
    resolution: Annotated[
        float, typer.Option(help="Grid cell size in degrees (with --bbox).")
    ] = 0.01,
    when: WhenOpt = None,
    k: Annotated[int, typer.Option("-k", help="How many places.")] = 16,
    out: Annotated[
        Path, typer.Option(help="Output stem: STEM.png (contact sheet) and STEM.geojson.")
    ] = Path("search"),
) -> None:
    """Text -> overhead retrieval: the top places for a prompt."""
    from omnimap.geo.bbox import BBox
    from omnimap.geo.grid import LatLonGrid
    from omnimap.geo.timefeat import When
    from omnimap.models.checkpoint import load_checkpoint
    from omnimap.sat2cap import search
    from omnimap.sat2cap.data import open_pairs
    from omnimap.sources import source_from_config

    if (pairs is None) == (bbox is None):
        raise InputError("give the candidates as either --pairs or --bbox")
    loaded = load_checkpoint(model)
    moment = When.parse(when) if when else None
    if pairs is not None:
        candidates = search.from_pairs(open_pairs(pairs), moment)
    else:
        grid = LatLonGrid.from_bbox(BBox.parse(bbox), resolution)
        candidates = search.from_grid(source_from_config(loaded.config["imagery"]), grid, moment)
    hits = search.search(loaded, prompt, candidates, k=k)
    paths = search.write_results(prompt, hits, candidates, out)
    for h in hits[:5]:
        typer.echo(
            f"  #{h['rank']}: lon {h['lon']:.5f}, lat {h['lat']:.5f}, score {h['score']:.3f}"
        )
    typer.echo(f"written {paths['png']} and {paths['geojson']}")


def captions_command(
    model: ModelOpt,
    lon: Annotated[float, typer.Option(help="Longitude, degrees.")],
    lat: Annotated[float, typer.Option(help="Latitude, degrees.")],
    when: WhenOpt = None,
    bank: Annotated[
        Path | None, typer.Option(help="Caption file, one per line (default: built-in).")
    ] = None,
    k: Annotated[int, typer.Option("-k", help="How many captions.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Rank captions for a place (and time) by the student's embedding."""
    from omnimap.sat2cap.captions import rank_captions, read_caption_bank

    ranked = rank_captions(
        model, lon, lat, when=when, bank=read_caption_bank(bank) if bank else None, k=k
    )
    if as_json:
        typer.echo(json.dumps(ranked, indent=1))
        return
    for r in ranked:
        typer.echo(f"{r['rank']:2d}. {r['score']:.3f}  {r['caption']}")


def register(app: typer.Typer, train_app: typer.Typer, evaluate_app: typer.Typer) -> None:
    """Add the commands above to omnimap's app and its train/evaluate groups."""

    @train_app.callback(invoke_without_command=True)
    def _train(
        ctx: typer.Context,
        config: Annotated[
            Path | None, typer.Option("--config", help="JSON file of Sat2Cap training options.")
        ] = None,
        out: Annotated[
            Path | None, typer.Option(help="Run directory (default runs/<name>).")
        ] = None,
    ) -> None:
        """Train models: a Sat2Cap student with --config FILE, or a subcommand."""
        if ctx.invoked_subcommand is not None:
            if config is not None or out is not None:
                raise InputError(
                    "--config/--out go without a subcommand: omnimap train --config FILE"
                )
            return
        if config is None:
            typer.echo(ctx.get_help())
            raise typer.Exit(2)
        train_from_file(config, out)

    evaluate_app.command("retrieval")(evaluate_retrieval_command)
    example_app = typer.Typer(no_args_is_help=True, help="Runnable end-to-end examples.")
    example_app.command("sat2cap")(example_command)
    app.add_typer(example_app, name="example")
    sat2cap_app = typer.Typer(
        no_args_is_help=True, help="Use a trained Sat2Cap student: search, captions."
    )
    sat2cap_app.command("search")(search_command)
    sat2cap_app.command("captions")(captions_command)
    app.add_typer(sat2cap_app, name="sat2cap")
