"""``omnimap train RECIPE``: the atlas and Sat2Cap recipes over the one training loop.

    omnimap train atlas [--config FILE.json] [--out runs/atlas] [--samples N] [--steps N]
    omnimap train sat2cap --config FILE.json [--out runs/sat2cap]
    torchrun --nproc-per-node 8 -m omnimap.cli.main train sat2cap --config FILE.json

Running the same command again resumes the run exactly; another config is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from omnimap.cli.options import read_json_object

train_app = typer.Typer(no_args_is_help=True, help="Train models (resume by running again).")

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="JSON file of training options.")]
OutOpt = Annotated[Path | None, typer.Option(help="Run directory (default runs/<name>).")]
StepsOpt = Annotated[int | None, typer.Option(help="Optimizer steps (overrides the config).")]
SeedOpt = Annotated[int | None, typer.Option(help="Random seed (overrides the config).")]


def _run(recipe: str, config: Path | None, out: Path | None, **overrides) -> None:
    from omnimap.train.recipes import run_recipe

    options = read_json_object(config, "training config") if config else {}
    options.update({k: v for k, v in overrides.items() if v is not None})
    base = config.resolve().parent if config else None
    result = run_recipe(recipe, options, out, base_dir=base, progress=True)
    if not result.is_main:  # under torchrun, rank 0 reports
        return
    if result.losses:
        typer.echo(f"step {len(result.losses)}: loss {result.losses[-1]:.4f} "
                   f"({result.samples_per_second:,.1f} samples/s)")  # fmt: skip
    typer.echo(f"saved {result.model.path}")


@train_app.command("atlas")
def train_atlas_command(
    config: ConfigOpt = None,
    out: OutOpt = None,
    samples: Annotated[
        int | None, typer.Option(help="Training samples (overrides the config).")
    ] = None,
    steps: StepsOpt = None,
    seed: SeedOpt = None,
) -> None:
    """Train the built-in world atlas from scratch (CPU, under 30 minutes on 2 cores)."""
    _run("atlas", config, out, samples=samples, steps=steps, seed=seed)


@train_app.command("sat2cap")
def train_sat2cap_command(config: ConfigOpt = None, out: OutOpt = None, steps: StepsOpt = None,
                          seed: SeedOpt = None) -> None:  # fmt: skip
    """Train a Sat2Cap student on geotagged photos (a config naming its pairs)."""
    _run("sat2cap", config, out, steps=steps, seed=seed)


@train_app.command("soundscape")
def train_soundscape_command(
    config: ConfigOpt = None,
    out: OutOpt = None,
    samples: Annotated[
        int | None, typer.Option(help="Training samples (overrides the config).")
    ] = None,
    steps: StepsOpt = None,
    seed: SeedOpt = None,
) -> None:
    """Train the built-in soundscape model (needs the sound extra; CPU, ~12 minutes)."""
    _run("soundscape", config, out, samples=samples, steps=steps, seed=seed)


@train_app.command("geosound")
def train_geosound_command(config: ConfigOpt = None, out: OutOpt = None, steps: StepsOpt = None,
                           seed: SeedOpt = None) -> None:  # fmt: skip
    """Train a sound-map student on geotagged recordings with CLAP (a config naming its pairs)."""
    _run("geosound", config, out, steps=steps, seed=seed)
