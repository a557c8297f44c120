"""Sat2Cap student training on a GPU: ViT-B/32 throughput in bf16 and the share of the
time the GPU waits for data.

    python benchmarks/bench_sat2cap_gpu.py [--batch-size 256] [--steps 40] [--precision bf16]

The CLIP is randomly initialised from ``CLIPConfig()`` defaults (ViT-B/32 image tower,
512-d), saved and loaded like a hub model; the data are synthetic 224-px overhead
patches held in memory with random cached teacher embeddings, so nothing is
downloaded and the loop measures the training step plus in-memory batch assembly.
"Waiting" is the time the loop blocks on the next batch from the loader thread (each
step ends in a host sync, so the GPU is idle meanwhile). Without CUDA it prints that
it skipped and exits 0.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from common import save
from omnimap.datasets.crossview import CrossViewData
from omnimap.geo.timefeat import metadata_features
from omnimap.teachers.registry import get_teacher
from omnimap.teachers.tiny import save_clip
from omnimap.train.config import Sat2CapConfig
from omnimap.train.loop import train
from omnimap.train.recipes.sat2cap import Sat2CapRecipe

QUEUE_BATCHES = 38  # queue = 38 global batches (~9,700 at 256, the recipe's ~9,600)


class MemoryStore:
    """Synthetic overhead patches in memory (the shard/GeoTIFF stores' interface)."""

    def __init__(self, patches: np.ndarray):
        self.array, self.patch_size = patches, patches.shape[-1]

    def patches(self, rows: np.ndarray, size: int, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        return self.array[rows]

    def photo(self, row: int):
        raise RuntimeError("the benchmark uses cached teacher embeddings only")


def synthetic_data(root: Path, teacher, samples: int, size: int) -> CrossViewData:
    rng = np.random.default_rng(0)
    ids = np.array([f"{i:032x}" for i in range(samples)])
    lon, lat = rng.uniform(-180, 180, samples), rng.uniform(-60, 70, samples)
    meta = metadata_features(lon, lat, None)
    patches = rng.integers(0, 256, (samples, 3, size, size), dtype=np.uint8)
    vectors = rng.normal(size=(samples, teacher.dim)).astype(np.float32)
    data = CrossViewData(ids, lon, lat, meta, MemoryStore(patches), {"type": "synthetic"}, root)
    data.teacher_store(teacher).add(
        data.photo_keys(), vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    )
    return data


def measure(
    device: str, text: dict, vision: dict, dim: int, batch_size: int, steps: int, warmup: int,
    samples: int, precision: str,
) -> dict:  # fmt: skip
    """Train ``warmup`` steps, then time ``steps`` more on the same run."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clip = save_clip(root / "clip", text, vision, dim)
        teacher = get_teacher(str(clip), "clip", cached=False)
        size = int(teacher.model.config.vision_config.image_size)
        data = synthetic_data(root, teacher, max(samples, batch_size), size)
        cfg = Sat2CapConfig(
            pairs="synthetic", teacher=str(root / "clip"), steps=warmup + steps, batch_size=batch_size,
            queue_size=QUEUE_BATCHES * batch_size, precision=precision, device=device,
            checkpoint_every=warmup + steps, log_every=warmup + steps, stats_samples=256,
        )  # fmt: skip
        cfg.validate()
        train(Sat2CapRecipe(cfg, data), root / "run", progress=False, stop_after=warmup)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        result = train(Sat2CapRecipe(cfg, data), root / "run", progress=False)
        params = sum(p.numel() for p in result.model.student.parameters())
    out = {
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else device,
        "precision": precision,
        "image_size": size,
        "student_params_m": params / 1e6,
        "batch_size": batch_size,
        "queue_size": cfg.queue_size,
        "measured_steps": steps,
        "samples_per_s": result.samples_per_second,
        "step_ms": 1000 * result.seconds / steps,
        "data_wait_share": result.data_wait_seconds / result.seconds,
    }
    if device.startswith("cuda"):
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def main(
    batch_size: int = 256,
    steps: int = 40,
    warmup: int = 5,
    samples: int = 8192,
    precision: str = "bf16",
) -> dict:
    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device"}
    # CLIPConfig() defaults: the ViT-B/32 image tower and a 512-wide text tower, 512-d.
    return measure("cuda", {}, {}, 512, batch_size, steps, warmup, samples, precision)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--samples", type=int, default=8192)
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    args = parser.parse_args()
    r = main(args.batch_size, args.steps, args.warmup, args.samples, args.precision)
    if "skipped" in r:
        print("skipped:", r["skipped"])
    else:
        for k, v in r.items():
            print(f"{k:20s} {v:,.3f}" if isinstance(v, float) else f"{k:20s} {v}")
        print("saved", save("sat2cap_gpu", r))
