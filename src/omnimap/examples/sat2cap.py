"""``omnimap example sat2cap --workdir DIR``: the whole recipe offline, in about a minute.

1. a synthetic world: an overhead GeoTIFF (UTM) and geotagged JPEG photos whose
   content follows the land cover under them and the local time (``synthetic``);
2. pairs tables built from the photos' EXIF (``omnimap.datasets.pairs.from_photos``);
3. a tiny random CLIP saved like a hub model and loaded back (``tiny``);
4. a few training steps; retrieval on the held-out pairs (``DIR/metrics.json``);
5. a map of a prompt through the normal map engine with the trained run, a text
   search contact sheet, and captions for one place at noon and at midnight.

The numbers mean little (a random teacher, a few steps); the point is that every
piece runs end to end, on the same code as a real ViT-B/32 run.
"""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image

from omnimap.api import captions, search_pairs, write_contact_sheet, zero_shot_map
from omnimap.core.fileio import write_json_atomic
from omnimap.datasets.crossview import open_pairs
from omnimap.datasets.pairs.build import from_photos
from omnimap.datasets.pairs.exif import write_geotagged_jpeg
from omnimap.datasets.synthetic import SyntheticWorld
from omnimap.eval.crossview import evaluate_retrieval, format_table
from omnimap.sources.geotiff import GeoTiffSource
from omnimap.teachers.tiny import make_tiny_clip
from omnimap.train.recipes import run_recipe

UTC_OFFSET_MINUTES = 60  # the synthetic world lies in northern Italy (CET)
GROUND_SIZE_M, PIXELS = 600.0, 32
PROMPT = "a town at night"


def write_photos(world: SyntheticWorld, folder: Path, n: int, seed: int, size: int = 48) -> None:
    """Geotagged JPEGs with real EXIF (``omnimap.datasets.pairs.write_geotagged_jpeg``) showing
    what the synthetic world looks like there and then."""
    lon, lat = world.sample_points(n, seed)
    times = world.sample_times(n, seed + 1)
    folder.mkdir(parents=True, exist_ok=True)
    for i, (x, y, when) in enumerate(zip(lon, lat, times, strict=True)):
        path = folder / f"photo-{i:04d}.jpg"
        write_geotagged_jpeg(
            path,
            float(x),
            float(y),
            when,
            offset=UTC_OFFSET_MINUTES,
            size=(size, size),
            seed=seed + i,
        )
        _paint(path, world.photo(x, y, _solar_hour(when, x), size=size, seed=seed + i))


def _solar_hour(when: datetime, lon: float) -> float:
    return (when.hour + when.minute / 60 - UTC_OFFSET_MINUTES / 60 + lon / 15) % 24


def _paint(path: Path, pixels: np.ndarray) -> None:
    """Replace a JPEG's pixels, keeping its EXIF block byte for byte (the writer's
    pixels are seeded colours; the example needs content that follows the scene)."""
    with Image.open(path) as im:
        exif = im.info["exif"]
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=92, exif=exif)
    path.write_bytes(buf.getvalue())


def build_data(
    workdir: Path, n_train: int = 256, n_test: int = 128, seed: int = 0, photo_size: int = 48
) -> dict[str, Path]:
    """The synthetic world's GeoTIFF, photos (``photo_size`` pixels square) and pairs
    tables under ``workdir``."""
    world = SyntheticWorld(seed=seed)
    tif = world.write_geotiff(workdir / "overhead.tif")
    source = GeoTiffSource(tif, GROUND_SIZE_M, PIXELS)
    tables = {}
    for split, n, split_seed in (("train", n_train, seed + 10), ("test", n_test, seed + 20_000)):
        write_photos(world, workdir / "photos" / split, n, split_seed, photo_size)
        tables[split] = workdir / f"{split}.parquet"
        from_photos(workdir / "photos" / split, source, tables[split], ground_size_m=GROUND_SIZE_M, pixels=PIXELS,
                    workers=2)  # fmt: skip
    return {"overhead": tif, **tables}


def example_options(train_table: Path, teacher: Path, steps: int) -> dict:
    """The recipe at toy scale: a higher lr (random tiny towers, few steps), milder crops."""
    return dict(
        pairs=str(train_table), teacher=str(teacher), name="sat2cap-example", steps=steps, batch_size=32,
        queue_size=64, lr=5e-4, crop_scale=[0.5, 1.0], rand_augment_magnitude=5, stats_samples=256,
        checkpoint_every=steps, log_every=5, device="cpu",
    )  # fmt: skip


def run(workdir: str | Path, steps: int = 40, progress: bool = False) -> dict:
    """Build, train, evaluate, map, search and caption; returns the paths and metrics."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    paths = build_data(workdir)
    teacher = make_tiny_clip(workdir / "tiny-clip")
    options = example_options(paths["train"], teacher, steps)
    result = run_recipe("sat2cap", options, workdir / "run", progress=progress)
    test = open_pairs(paths["test"])
    metrics = evaluate_retrieval(result.model, test)
    write_json_atomic(workdir / "metrics.json", metrics)

    world = SyntheticWorld()
    inset = 0.012  # whole 600 m patches need the cell a little inside the image
    bbox = (world.west + inset, world.south + inset, world.east - inset, world.north - inset)
    run_dir = str(workdir / "run")
    map_result = zero_shot_map(PROMPT, bbox=bbox, resolution=0.005, when="2021-07-01T23:00",
                               model=run_dir)  # fmt: skip
    map_paths = map_result.write(workdir / "map.tif", k=5)
    found, patches = search_pairs(PROMPT, paths["test"], model=run_dir, k=8)
    search_paths = {"png": write_contact_sheet(found, workdir / "search.png", patches),
                    "geojson": found.write_geojson(workdir / "search.geojson")}  # fmt: skip
    place = (float(test.lon[0]), float(test.lat[0]))
    ranked = {when: captions(*place, when=when, k=3, model=run_dir)
              for when in ("2021-07-01T12:00", "2021-07-01T00:00")}  # fmt: skip
    write_json_atomic(
        workdir / "captions.json", {"lon": place[0], "lat": place[1], "captions": ranked}
    )
    return {
        "table": format_table(metrics),
        "metrics": workdir / "metrics.json",
        "losses": result.losses,
        "map": {k: Path(v) for k, v in map_paths.items()},
        "search": search_paths,
        "captions": workdir / "captions.json",
        "run": workdir / "run",
    }
