"""Species and sound maps on the built-in soundscape model (needs the sound extra).

1. A species map of the world for one week on cached cells (the overhead part of every
   cell cached, the week's fused embeddings in memory when they fit): the time of a
   second species, against running BirdNET's meta model over the same cells for that
   one species (measured on an evenly spaced sample of the cells and scaled by the
   cell count: the meta model's cost is linear in the points). Target: >= 10x.
2. A 30 s clip (synthetic chirps and noise, as a WAV file) to a map of Europe at
   0.1 deg on cached cells: decode + BirdNET embedding + scoring, and how much of it
   is the embedding; beside it, in the same run, the embedding as it was before
   (fixed batches of 8 windows, the last padded to 8: a 30 s clip's 10 windows cost
   16) on its own interpreter, and the largest difference between the two vectors.

    python benchmarks/bench_species.py [--resolution 0.25] [--audio-only]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from common import best_of, save
from omnimap.core.store import ArrayStore
from omnimap.examples.sound import chirps
from omnimap.geo.bbox import BBox
from omnimap.geo.grid import LatLonGrid
from omnimap.maps.engine import MapEngine
from omnimap.maps.sound import sound_map, soundscape_teacher, species_maps, week_when
from omnimap.media.audio import read_audio, windows
from omnimap.teachers.birdnet import (
    SAMPLE_RATE,
    WINDOW_SECONDS,
    BirdNetMeta,
    _Classifier,
    pool_windows,
)  # fmt: skip

META_SAMPLE = 65_536  # cells the meta model is timed on


def write_clip(path: Path, seconds: float = 30.0) -> Path:
    import soundfile as sf

    sf.write(path, *chirps(seconds, rate=44_100))
    return path


def embed_before(model: _Classifier, teacher, clip, batch: int = 8):
    """The clip's query as the teacher made it before: windows in fixed batches of
    ``batch``, the last one padded to ``batch``."""
    x = windows(clip.resample(SAMPLE_RATE), WINDOW_SECONDS)
    runs = [model.run(x[lo : lo + batch], pad=batch) for lo in range(0, len(x), batch)]
    logits = np.concatenate([r[0] for r in runs])
    emb = np.concatenate([r[1] for r in runs])
    return teacher.compose(1, biophony=pool_windows(emb, logits)[None])


def species_part(engine: MapEngine, resolution: float) -> dict:
    world = LatLonGrid.from_bbox(BBox(-180, -90, 180, 90), resolution)
    when = week_when(19)
    t = time.perf_counter()
    species_maps(engine, "Turdus merula", world, [when])
    cold = time.perf_counter() - t
    second = best_of(lambda: species_maps(engine, "Hirundo rustica", world, [when]), 3)

    lon, lat = world.centers()
    step = max(1, len(lon) // META_SAMPLE)
    meta = BirdNetMeta()
    meta.occurrence(lon[:10], lat[:10], 19, species=["Hirundo rustica"])  # load it
    t = time.perf_counter()
    meta.occurrence(lon[::step], lat[::step], 19, species=["Hirundo rustica"])
    meta_world = (time.perf_counter() - t) * len(lon) / len(lon[::step])
    return {
        "world_cells": world.size, "resolution": resolution,
        "species_first_map_s": round(cold, 3), "species_second_map_s": round(second, 3),
        "meta_model_same_cells_s": round(meta_world, 3),
        "speedup_vs_meta": round(meta_world / second, 1),
    }  # fmt: skip


def audio_part(engine: MapEngine, teacher, tmp: str, repeat: int = 3) -> dict:
    europe = LatLonGrid.from_bbox(BBox(-25, 34, 45, 72), 0.1)
    engine.score_vectors(teacher.embed("species", ["Hirundo rustica"]), europe, None)  # cache o
    clip_path = write_clip(Path(tmp) / "clip.wav")
    old = _Classifier(teacher.birdnet.files["model"], None)  # the "before" path's own
    clip = read_audio(clip_path)
    teacher.embed("audio", [clip]), embed_before(old, teacher, clip)  # plan both once

    def embed_now():
        return teacher.embed("audio", [read_audio(clip_path)])

    def embed_old():
        return embed_before(old, teacher, read_audio(clip_path))

    embed_s, before_s = [], []
    for _ in range(repeat):  # interleaved, so both see the same load
        embed_s.append(best_of(embed_now, 1))
        before_s.append(best_of(embed_old, 1))
    embed_s, before_s = min(embed_s), min(before_s)
    q = embed_now()
    diff = float(np.abs(q - embed_old()).max())
    score_s = best_of(lambda: engine.score_vectors(q, europe, None), repeat)
    total = best_of(lambda: sound_map(engine, read_audio(clip_path), europe, None), repeat)
    return {
        "audio_europe_cells": europe.size, "audio_windows": len(windows(clip.resample(SAMPLE_RATE))),
        "audio_embed_s": round(embed_s, 3), "audio_embed_before_s": round(before_s, 3),
        "audio_embed_speedup": round(before_s / embed_s, 2),
        "audio_query_max_abs_diff": float(f"{diff:.2g}"),
        "audio_score_s": round(score_s, 3), "audio_total_s": round(total, 3),
        "audio_total_before_s": round(total - embed_s + before_s, 3),
        "audio_embed_share": round(embed_s / (embed_s + score_s), 3),
    }  # fmt: skip


def main(resolution: float = 0.25, audio_only: bool = False) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        engine = MapEngine("soundscape", store=ArrayStore("cells", root=tmp))
        teacher = soundscape_teacher(engine)
        teacher.taxon_matrix  # noqa: B018 (loaded once, as a long-running process would)
        result = {"dim": engine.dim, "load_avg_1min": round(os.getloadavg()[0], 1)}
        if not audio_only:
            result |= species_part(engine, resolution)
        result |= audio_part(engine, teacher, tmp)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--resolution", type=float, default=0.25)
    parser.add_argument("--audio-only", action="store_true", help="Only the clip to Europe.")
    args = parser.parse_args()
    result = main(args.resolution, args.audio_only)
    for k, v in result.items():
        print(f"{k:28s} {v}")
    print("saved", save("species", result))
