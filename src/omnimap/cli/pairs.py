"""``omnimap pairs``: build pairs tables and shards from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

pairs_app = typer.Typer(
    no_args_is_help=True, help="Pair geotagged ground photos with overhead imagery."
)

ImageryOpt = Annotated[
    str,
    typer.Option(
        "--imagery",
        help="'bmng' (built-in Blue Marble), a GeoTIFF path, or an XYZ tile URL "
        "template such as https://host/{z}/{x}/{y}.png.",
    ),
]
GroundOpt = Annotated[
    float, typer.Option("--ground-size-m", help="Side of the overhead patch on the ground, metres.")
]
PixelsOpt = Annotated[int, typer.Option("--pixels", help="Side of the overhead patch in pixels.")]
AttributionOpt = Annotated[
    str | None, typer.Option(help="Imagery attribution (tile servers and GeoTIFFs).")
]
RateOpt = Annotated[
    float | None,
    typer.Option("--requests-per-second", help="Tile server request limit (default 4)."),
]
MaxZoomOpt = Annotated[int | None, typer.Option(help="Highest tile zoom to request (default 19).")]


def _open(imagery: str, ground: float, pixels: int, **options: Any):
    from omnimap.sources import open_source

    return open_source(
        imagery, ground, pixels, **{k: v for k, v in options.items() if v is not None}
    )


def _echo_skips(summary: dict[str, Any], listing: str) -> None:
    if summary["skipped"]:
        reasons = ", ".join(f"{r} {n}" for r, n in summary["skipped_by_reason"].items())
        typer.echo(f"skipped {summary['skipped']}: {reasons} (listed in {listing})")
    typer.echo(f"imagery: {summary['attribution']}")


def _echo_table(summary: dict[str, Any]) -> None:
    typer.echo(f"wrote {summary['written']} pairs to {summary['table']}")
    _echo_skips(summary, summary["skipped_list"])
    for field, label in (
        ("without_datetime", "capture time"),
        ("without_utc_offset", "UTC offset"),
    ):
        if summary[field]:
            typer.echo(f"  {summary[field]} pairs have no {label}")


@pairs_app.command("from-photos")
def from_photos_command(
    photo_dir: Annotated[
        Path, typer.Argument(help="Folder of geotagged photos (searched recursively).")
    ],
    imagery: ImageryOpt,
    out: Annotated[Path, typer.Option(help="Pairs table to write (GeoParquet).")],
    ground_size_m: GroundOpt = 500.0,
    pixels: PixelsOpt = 224,
    attribution: AttributionOpt = None,
    requests_per_second: RateOpt = None,
    max_zoom: MaxZoomOpt = None,
) -> None:
    """Pair photos by their EXIF GPS position and capture time."""
    from omnimap.datasets.pairs.build import from_photos

    source = _open(imagery, ground_size_m, pixels, attribution=attribution,
                   requests_per_second=requests_per_second, max_zoom=max_zoom)  # fmt: skip
    _echo_table(from_photos(photo_dir, source, out))


@pairs_app.command("from-csv")
def from_csv_command(
    csv_path: Annotated[Path, typer.Argument(help="CSV with columns lon, lat, datetime, path.")],
    imagery: ImageryOpt,
    out: Annotated[Path, typer.Option(help="Pairs table to write (GeoParquet).")],
    ground_size_m: GroundOpt = 500.0,
    pixels: PixelsOpt = 224,
    attribution: AttributionOpt = None,
    requests_per_second: RateOpt = None,
    max_zoom: MaxZoomOpt = None,
) -> None:
    """Pair photos listed in a CSV (paths relative to the CSV's folder)."""
    from omnimap.datasets.pairs.build import from_csv

    source = _open(imagery, ground_size_m, pixels, attribution=attribution,
                   requests_per_second=requests_per_second, max_zoom=max_zoom)  # fmt: skip
    _echo_table(from_csv(csv_path, source, out))


@pairs_app.command("shard")
def shard_command(
    pairs: Annotated[Path, typer.Argument(help="Pairs table (from from-photos or from-csv).")],
    out: Annotated[Path, typer.Option(help="Folder for the shards (reruns resume).")],
    samples_per_shard: Annotated[int, typer.Option(help="Samples per tar shard.")] = 1000,
    max_ground_side: Annotated[
        int | None, typer.Option(help="Shrink larger photos to this many pixels (JPEG).")
    ] = None,
) -> None:
    """Cut each pair's overhead patch and write WebDataset-style tar shards."""
    from omnimap.datasets.pairs.shards import write_shards

    summary = write_shards(
        pairs, out, samples_per_shard=samples_per_shard, max_ground_side=max_ground_side
    )
    typer.echo(f"wrote {summary['samples']} samples in {summary['shards']} shards to {out}")
    if summary["resumed_shards"]:
        typer.echo(f"  {summary['resumed_shards']} shards were already complete")
    _echo_skips(summary, str(out / "skipped.csv"))
