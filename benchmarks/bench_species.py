"""Species and sound maps on the built-in soundscape model (needs the sound extra).

1. A species map of the world for one week on cached cells (the overhead part of every
   cell cached, the week's fused embeddings in memory when they fit): the time of a
   second species, against running BirdNET's meta model over the same cells for that
   one species (measured on an evenly spaced sample of the cells and scaled by the
   cell count: the meta model's cost is linear in the points). Target: >= 10x.
2. A 30 s clip (synthetic chirps and noise, as a WAV file) to a map of Europe at
   0.1 deg on cached cells: decode + BirdNET embedding + scoring, and how much of it
   is the embedding.

    python benchmarks/bench_species.py [--resolution 0.25]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from common import best_of, save
from omnimap.core.store import ArrayStore
from omnimap.examples.sound import chirps
from omnimap.geo.bbox import BBox
from omnimap.geo.grid import LatLonGrid
from omnimap.maps.engine import MapEngine
from omnimap.maps.sound import sound_map, soundscape_teacher, species_maps, week_when
from omnimap.media.audio import read_audio
from omnimap.teachers.birdnet import BirdNetMeta

META_SAMPLE = 65_536  # cells the meta model is timed on


def write_clip(path: Path, seconds: float = 30.0) -> Path:
    import soundfile as sf

    sf.write(path, *chirps(seconds, rate=44_100))
    return path


def main(resolution: float = 0.25) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        engine = MapEngine("soundscape", store=ArrayStore("cells", root=tmp))
        teacher = soundscape_teacher(engine)
        teacher.taxon_matrix  # noqa: B018 (loaded once, as a long-running process would)
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

        europe = LatLonGrid.from_bbox(BBox(-25, 34, 45, 72), 0.1)
        engine.score_vectors(teacher.embed("species", ["Hirundo rustica"]), europe, None)  # cache o
        clip_path = write_clip(Path(tmp) / "clip.wav")
        t = time.perf_counter()
        clip = read_audio(clip_path)
        q = teacher.embed("audio", [clip])
        embed_s = time.perf_counter() - t
        t = time.perf_counter()
        engine.score_vectors(q, europe, None)
        score_s = time.perf_counter() - t
        t = time.perf_counter()
        sound_map(engine, read_audio(clip_path), europe, None)
        total = time.perf_counter() - t
    return {
        "world_cells": world.size, "resolution": resolution, "dim": engine.dim,
        "species_first_map_s": round(cold, 3), "species_second_map_s": round(second, 3),
        "meta_model_same_cells_s": round(meta_world, 3),
        "speedup_vs_meta": round(meta_world / second, 1),
        "audio_europe_cells": europe.size, "audio_embed_s": round(embed_s, 3),
        "audio_score_s": round(score_s, 3), "audio_total_s": round(total, 3),
        "audio_embed_share": round(embed_s / (embed_s + score_s), 3),
    }  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--resolution", type=float, default=0.25)
    result = main(parser.parse_args().resolution)
    for k, v in result.items():
        print(f"{k:28s} {v}")
    print("saved", save("species", result))
