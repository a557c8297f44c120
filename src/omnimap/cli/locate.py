"""``omnimap gallery build``, ``locate``, ``when`` and ``verify``: where and when."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from omnimap.cli.options import BBoxOpt, ModelOpt, RegionOpt, ResolutionOpt, WhenOpt
from omnimap.core.errors import InputError

gallery_app = typer.Typer(no_args_is_help=True, help="Galleries of geotagged observations.")

ImageOpt = Annotated[bool, typer.Option("--image", help="QUERY is a photo file.")]
AudioOpt = Annotated[
    bool,
    typer.Option("--audio", help="QUERY is an audio file (default model: soundscape)."),
]
TextOpt = Annotated[bool, typer.Option("--text", help="QUERY is a description (the default).")]
AtOpt = Annotated[str, typer.Option("--at", help="LON,LAT in degrees.")]
ClipOpt = Annotated[
    str | None,
    typer.Option(help="CLIP ViT-L/14 for GeoCLIP on photos: hub name or local folder "
                 "(default openai/clip-vit-large-patch14, downloaded on first use)."),
]  # fmt: skip


def _modality(text: bool, image: bool, audio: bool) -> str:
    if text + image + audio > 1:
        raise InputError("give at most one of --text, --image, --audio")
    return "image" if image else "audio" if audio else "text"


def _tif(out: Path) -> Path:
    if out.suffix.lower() not in (".tif", ".tiff"):
        raise InputError(f"--out must end in .tif or .tiff, got {str(out)!r}")
    return out


@gallery_app.command("build")
def gallery_build_command(
    out: Annotated[Path, typer.Option("--out", help="The gallery folder to write.")],
    pairs: Annotated[
        Path | None,
        typer.Option(help="A pairs table, or a CSV lon,lat,path[,datetime]: its photos "
                     "through an image teacher."),
    ] = None,
    atlas_samples: Annotated[
        int | None, typer.Option(help="This many atlas descriptions (outside the hold-out).")
    ] = None,
    model: ModelOpt = None,
    teacher: Annotated[
        str | None,
        typer.Option(help="Teacher name (default: the model's; photos: clip-vit-b32, or any "
                     "CLIP hub name or folder)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Atlas sampling seed.")] = 20_241_109,
) -> None:
    """Build a gallery: observations (GeoParquet), teacher embeddings and a faiss index."""
    from omnimap import api

    if (pairs is None) == (atlas_samples is None):
        raise InputError("give exactly one of --pairs TABLE or --atlas-samples N")
    if atlas_samples is not None and atlas_samples < 1:
        raise InputError("--atlas-samples must be at least 1")
    path = api.build_gallery(out, pairs=pairs, atlas_samples=atlas_samples, model=model,
                             teacher=teacher, seed=seed)  # fmt: skip
    typer.echo(f"written {path}")


@gallery_app.command("train-cells")
def gallery_train_cells_command(
    gallery: Annotated[Path, typer.Argument(help="The gallery folder.")],
    t1: Annotated[
        int, typer.Option(help="Split a cell holding more observations than this.")
    ] = 100,
    t2: Annotated[int, typer.Option(help="Drop a cell holding fewer observations than this.")] = 10,
) -> None:
    """Train the PlaNet head (adaptive S2 cells + classifier) for --method cells."""
    from omnimap import api

    if t1 < 1 or t2 < 1 or t2 > t1:
        raise InputError("--t1 and --t2 must be positive with t2 <= t1")
    typer.echo(f"written {api.train_cells(gallery, t1, t2)}")


def locate_command(
    query: Annotated[
        str, typer.Argument(help="A description, or a photo/audio file with --image/--audio.")
    ],
    text: TextOpt = False,
    image: ImageOpt = False,
    audio: AudioOpt = False,
    when: WhenOpt = None,
    bbox: BBoxOpt = None,
    region: RegionOpt = None,
    resolution: ResolutionOpt = None,
    method: Annotated[
        str | None, typer.Option(help="field, knn, cells or geoclip (default: the best measured).")
    ] = None,
    gallery: Annotated[
        Path | None,
        typer.Option(help="A gallery (omnimap gallery build): knn, cells, geoclip on a description."),
    ] = None,
    model: ModelOpt = None,
    clip: ClipOpt = None,
    out: Annotated[
        Path, typer.Option(help="Posterior GeoTIFF; .png and .geojson beside it.")
    ] = Path("where.tif"),
) -> None:
    """Where was this observed: writes the posterior (where.tif, where.png) and ranked
    hypotheses with probability mass and confidence radius (where.geojson).
    --method geoclip on a photo (--image) is GeoCLIP itself: CLIP ViT-L/14 features, its
    image head and its 100k GPS gallery (no model or gallery needed)."""
    from omnimap import api

    _tif(out)
    post = api.locate(query, _modality(text, image, audio), when=when, bbox=bbox, region=region,
                      resolution=resolution, method=method, gallery=gallery, model=model,
                      clip=clip)  # fmt: skip
    paths = post.write(out)
    for kind, path in paths.items():
        typer.echo(f"  {kind:8s}{path}")
    for h in post.hypotheses:
        typer.echo(
            f"  {h.rank}. lon {h.lon:.3f}, lat {h.lat:.3f}: mass {h.mass:.3f}, within {h.radius_km:.0f} km"
        )


def when_command(
    query: Annotated[
        str, typer.Argument(help="A description, or a photo/audio file with --image/--audio.")
    ],
    at: AtOpt,
    text: TextOpt = False,
    image: ImageOpt = False,
    audio: AudioOpt = False,
    model: ModelOpt = None,
    out: Annotated[Path, typer.Option(help="PNG plot; the JSON goes beside it.")] = Path(
        "when.png"
    ),
) -> None:
    """When was this observed at a place: posterior over local solar hour and month
    (a soundscape model's, e.g. for --audio: and BirdNET week)."""
    from omnimap import api
    from omnimap.core.fileio import atomic_path, write_json_atomic

    if out.suffix.lower() != ".png":
        raise InputError(f"--out must end in .png, got {str(out)!r}")
    post = api.when(query, at, _modality(text, image, audio), model=model)
    data = post.to_json()
    with atomic_path(out) as tmp:
        post.figure().savefig(tmp, format="png")
    write_json_atomic(out.with_suffix(".json"), data)
    typer.echo(f"best hour {data['best_hour']:02d}h (p {max(data['hour']):.3f}), "
               f"best month {data['best_month']} (p {max(data['month']):.3f})")  # fmt: skip
    if "week" in data:
        typer.echo(f"best BirdNET week {data['best_week']} (p {max(data['week']):.3f})")
    typer.echo(f"written {out} and {out.with_suffix('.json')}")


def verify_command(
    query: Annotated[
        str, typer.Argument(help="A description, or a photo/audio file with --image/--audio.")
    ],
    at: AtOpt,
    when: Annotated[str, typer.Option(help="The claimed time, ISO-8601.")],
    text: TextOpt = False,
    image: ImageOpt = False,
    audio: AudioOpt = False,
    model: ModelOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Is a claimed time consistent with the content? Its score and its rank among all
    24 x 12 hours and months (1 = most consistent)."""
    from omnimap import api

    result = api.verify(query, at, when, _modality(text, image, audio), model=model)
    if as_json:
        typer.echo(json.dumps(result, indent=1))
        return
    typer.echo(f"score: {result['score']:.4f}")
    typer.echo(f"rank: {result['rank']} of {result['of']} (hour rank {result['hour_rank']} of 24, "
               f"month rank {result['month_rank']} of 12)")  # fmt: skip
