"""``omnimap evaluate``: the atlas on its spatial hold-out; cross-view retrieval; the
soundscape model against the BirdNET meta model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from omnimap.core.errors import InputError

evaluate_app = typer.Typer(no_args_is_help=True, help="Evaluate models.")


@evaluate_app.command("atlas")
def evaluate_atlas_command(
    model: Annotated[str, typer.Option(help="Built-in model name or a model directory.")] = "atlas",
    out: Annotated[Path, typer.Option(help="Metrics JSON.")] = Path("atlas-metrics.json"),
    samples: Annotated[int, typer.Option(help="Held-out retrieval samples.")] = 10_000,
    card: Annotated[
        bool,
        typer.Option(help="Also write MODEL_CARD.md and metrics.json into the model directory."),
    ] = False,
    baseline: Annotated[
        str | None,
        typer.Option(help="Another model (e.g. the previous weights) whose climate measures go beside."),
    ] = None,
) -> None:
    """The atlas on the spatial hold-out: retrieval, zero-shot land-cover AUC, time response."""
    from omnimap.core.fileio import write_json_atomic
    from omnimap.eval.atlas import evaluate_atlas, format_report
    from omnimap.eval.card import write_card
    from omnimap.models.checkpoint import load_checkpoint

    metrics = evaluate_atlas(model, samples=samples, baseline=baseline)
    write_json_atomic(out, metrics)
    typer.echo(format_report(metrics))
    typer.echo(f"written {out}")
    if card:
        loaded = load_checkpoint(model)
        write_json_atomic(loaded.path / "metrics.json", metrics)
        typer.echo(f"written {write_card(loaded.path, loaded.config, metrics)}")


def _ablations(values: list[str] | None) -> dict[str, str]:
    out = {}
    for value in values or []:
        name, sep, path = value.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise InputError(f"--ablation must be NAME=RUN_DIR, got {value!r}")
        out[name.strip()] = path.strip()
    return out


@evaluate_app.command("retrieval")
def evaluate_retrieval_command(
    model: Annotated[str, typer.Option("--model", help="A trained Sat2Cap run directory.")],
    pairs: Annotated[Path, typer.Option(help="Held-out pairs: a pairs table or a shard folder.")],
    gallery: Annotated[int, typer.Option(help="Gallery size (all samples if fewer).")] = 10_000,
    ablation: Annotated[
        list[str] | None, typer.Option(help="NAME=RUN_DIR of an ablation run (repeatable).")
    ] = None,
    baseline: Annotated[bool, typer.Option(help="Include the plain-CLIP baseline row.")] = True,
    out: Annotated[Path, typer.Option(help="Metrics JSON.")] = Path("retrieval-metrics.json"),
) -> None:
    """Overhead <-> ground retrieval: R@1/5/10 and median rank, both directions."""
    from omnimap.core.fileio import write_json_atomic
    from omnimap.eval.crossview import evaluate_retrieval, format_table

    metrics = evaluate_retrieval(model, pairs, gallery=gallery, ablations=_ablations(ablation),
                                 baseline=baseline)  # fmt: skip
    write_json_atomic(out, metrics)
    typer.echo(format_table(metrics))
    typer.echo(f"written {out}")


@evaluate_app.command("geolocation")
def evaluate_geolocation_command(
    model: Annotated[str, typer.Option(help="Built-in model name or a model directory.")] = "atlas",
    samples: Annotated[int, typer.Option(help="Held-out query descriptions.")] = 10_000,
    gallery: Annotated[Path | None, typer.Option(help="A gallery for knn/geoclip (default: built from atlas samples outside the hold-out).")] = None,
    gallery_samples: Annotated[int, typer.Option(help="Atlas samples in the default gallery.")] = 30_000,
    resolution: Annotated[float, typer.Option(help="World grid of the field method, degrees.")] = 0.5,
    methods: Annotated[str | None, typer.Option(help="Comma-separated: field,knn,cells,geoclip (default all; photos: knn, cells if trained, geoclip if the teacher is ViT-L/14).")] = None,
    time_queries: Annotated[int, typer.Option(help="Queries for the time evaluation.")] = 2000,
    save_calibration: Annotated[bool, typer.Option(help="Write the fitted temperatures (locate.json) beside the model.")] = False,
    queries: Annotated[Path | None, typer.Option(help="Photos with true positions (pairs table, or CSV lon,lat,path[,datetime]) to locate against --gallery, a photo gallery.")] = None,
    teacher: Annotated[str | None, typer.Option(help="With --queries: the teacher to embed them (default: the gallery's; must be it).")] = None,
    clip: Annotated[str | None, typer.Option(help="With --queries and geoclip: the CLIP ViT-L/14 for GeoCLIP's features (default: the gallery's teacher if ViT-L/14, else openai/clip-vit-large-patch14).")] = None,
    out: Annotated[Path, typer.Option(help="Metrics JSON.")] = Path("geolocation-metrics.json"),
) -> None:
    """Where and when on the atlas hold-out: % within 1/25/200/750/2500 km per method and
    baselines, hour/month accuracy and timestamp verification AUC. With --gallery G
    --queries Q: where were Q's photos taken, located against the photo gallery G."""
    chosen = tuple(m.strip() for m in (methods or "").split(",") if m.strip()) or None
    if queries is not None:
        from omnimap.eval.geolocation_photos import evaluate_photo_geolocation, format_photo_report

        if gallery is None:
            raise InputError("--queries needs --gallery G, a photo gallery (omnimap gallery build --pairs)")
        metrics = evaluate_photo_geolocation(gallery, queries, methods=chosen, teacher=teacher,
                                             clip=clip, out=out)  # fmt: skip
        typer.echo(format_photo_report(metrics))
        typer.echo(f"written {out}")
        return
    if teacher is not None or clip is not None:
        raise InputError("--teacher and --clip go with --queries (photo galleries)")
    from omnimap.eval.geolocation import evaluate_geolocation, format_report

    chosen = chosen or ("field", "knn", "cells", "geoclip")
    unknown = set(chosen) - {"field", "knn", "cells", "geoclip"}
    if unknown:
        raise InputError(f"--methods must name field, knn, cells or geoclip, got {methods!r}")
    if samples < 1 or time_queries < 1:
        raise InputError("--samples and --time-queries must be at least 1")
    metrics = evaluate_geolocation(model, samples=samples, gallery=gallery, gallery_samples=gallery_samples,
                                   resolution=resolution, methods=chosen, time_queries=time_queries,
                                   out=out, save_calibration=save_calibration)  # fmt: skip
    typer.echo(format_report(metrics))
    typer.echo(f"written {out}")


@evaluate_app.command("fusion")
def evaluate_fusion_command(
    model: Annotated[str, typer.Option(help="Built-in model name or a model directory.")] = "atlas",
    out: Annotated[Path, typer.Option(help="Metrics JSON.")] = Path("fusion-metrics.json"),
) -> None:
    """Land-cover AUCs with 1% and 10% of held-out cells observed vs none (RANGE-style fusion)."""
    from omnimap.eval.fusion import evaluate_fusion, format_fusion

    metrics = evaluate_fusion(model, out=out)
    typer.echo(format_fusion(metrics))
    typer.echo(f"written {out}")


@evaluate_app.command("soundscape")
def evaluate_soundscape_command(
    model: Annotated[
        str, typer.Option(help="A soundscape model: name or directory.")
    ] = "soundscape",
    out: Annotated[Path, typer.Option(help="Metrics JSON.")] = Path("soundscape-metrics.json"),
    samples: Annotated[
        int, typer.Option(help="Held-out samples (places x held-out weeks).")
    ] = 2_000,
    card: Annotated[
        bool,
        typer.Option(help="Also write MODEL_CARD.md and metrics.json into the model directory."),
    ] = False,
) -> None:
    """Species (seen, zero-shot, seasons), sound retrieval and text queries on the hold-out,
    against the BirdNET meta model (a pseudo-truth)."""
    from omnimap.core.fileio import write_json_atomic, write_text_atomic
    from omnimap.eval.soundscape import evaluate_soundscape, format_report, render_card
    from omnimap.models.checkpoint import load_checkpoint

    if samples < 100:
        raise InputError("--samples must be at least 100")
    metrics = evaluate_soundscape(model, samples=samples)
    write_json_atomic(out, metrics)
    typer.echo(format_report(metrics))
    typer.echo(f"written {out}")
    if card:
        loaded = load_checkpoint(model)
        write_json_atomic(loaded.path / "metrics.json", metrics)
        card_path = loaded.path / "MODEL_CARD.md"
        write_text_atomic(card_path, render_card(loaded.config, metrics))
        typer.echo(f"written {card_path}")


@evaluate_app.command("geosound")
def evaluate_geosound_command(
    model: Annotated[str, typer.Option("--model", help="A trained geosound run directory.")],
    pairs: Annotated[Path, typer.Option(help="Held-out audio pairs table (CSV or Parquet).")],
    out: Annotated[Path, typer.Option(help="Metrics JSON.")] = Path("geosound-metrics.json"),
) -> None:
    """Overhead <-> sound retrieval on held-out clips: R@10/R@100/median rank, with and
    without time."""
    from omnimap.core.fileio import write_json_atomic
    from omnimap.eval.geosound import evaluate_geosound, format_table

    metrics = evaluate_geosound(model, pairs)
    write_json_atomic(out, metrics)
    typer.echo(format_table(metrics))
    typer.echo(f"written {out}")
