"""Why teacher embeddings are cached with the data: Sat2Cap training samples/s with the
teacher's photo embeddings read from the cache vs computed on the fly (decode the
photo, preprocess, run CLIP's image tower), same data, same student, in one run.

    python benchmarks/bench_sat2cap.py [--photo-size 384] [--steps 12]

The student and teacher are a small random CLIP built locally (no download); photos
are synthetic JPEGs (``--photo-size`` square; real photos are far larger, which only
widens the gap). The first step of each run is left out (warm-up); each mode runs
twice, interleaved, and keeps its best rate. torch gets ``--threads`` (default 1) so
the loader thread has a core of its own: on a 2-core machine, two OpenMP threads plus
the loader make every parallel op wait for the scheduler, which slows both modes
several-fold and hides the difference.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from common import save
from omnimap.datasets.crossview import open_pairs
from omnimap.examples.sat2cap import build_data
from omnimap.teachers.registry import get_teacher
from omnimap.teachers.tiny import make_tiny_clip
from omnimap.train.config import Sat2CapConfig
from omnimap.train.loop import train
from omnimap.train.recipes.sat2cap import Sat2CapRecipe

CLIP = {"image_size": 64, "patch": 16, "width": 64, "dim": 64, "layers": 4}


def main(
    photo_size: int = 384, steps: int = 12, batch_size: int = 32, repeats: int = 2, threads: int = 1
) -> dict:
    os.environ.setdefault("TQDM_DISABLE", "1")
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = build_data(root, n_train=batch_size * (steps + 1), n_test=8, photo_size=photo_size)
        clip = make_tiny_clip(root / "clip", **CLIP)
        data = open_pairs(paths["train"])
        started = time.perf_counter()
        teacher = get_teacher(str(clip), "clip", cached=False)
        data.teacher_vectors(teacher)  # once, stored beside the table
        cache_seconds = time.perf_counter() - started
        base = {"pairs": str(paths["train"]), "teacher": str(clip), "batch_size": batch_size,
                "queue_size": 2 * batch_size, "steps": steps, "checkpoint_every": steps, "device": "cpu"}  # fmt: skip
        rates, waits = {"cached": 0.0, "on_the_fly": 0.0}, {}
        for repeat in range(repeats):  # interleaved, best of: the least disturbed by other load
            for name in rates:
                cfg = Sat2CapConfig.from_dict({**base, "teacher_cache": name == "cached"})
                run = root / f"run-{name}-{repeat}"
                train(Sat2CapRecipe(cfg, data), run, progress=False, stop_after=1)  # warm-up step
                result = train(Sat2CapRecipe(cfg, data), run, progress=False)
                if result.samples_per_second > rates[name]:
                    rates[name] = result.samples_per_second
                    waits[name] = result.data_wait_seconds / result.seconds
    params = sum(p.numel() for p in teacher.model.vision_model.parameters())
    return {
        "clip": {**CLIP, "vision_params": params},
        "photo_size": photo_size,
        "batch_size": batch_size,
        "measured_steps": steps - 1,
        "threads": torch.get_num_threads(),
        "cached_samples_per_s": rates["cached"],
        "on_the_fly_samples_per_s": rates["on_the_fly"],
        "speedup": rates["cached"] / rates["on_the_fly"],
        "cached_data_wait_share": waits["cached"],
        "on_the_fly_data_wait_share": waits["on_the_fly"],
        "one_time_cache_seconds": cache_seconds,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo-size", type=int, default=384)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    r = main(args.photo_size, args.steps, args.batch_size, threads=args.threads)
    for k, v in r.items():
        print(f"{k:28s} {v:,.3f}" if isinstance(v, float) else f"{k:28s} {v}")
    print("saved", save("sat2cap", r))
