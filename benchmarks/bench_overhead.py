"""Why the overhead encoder uses kernel == stride convolutions: cells/s on this CPU for
the shipped design vs strided 3x3 convolutions of similar size, in one run.

    python benchmarks/bench_overhead.py
"""

from __future__ import annotations

import torch
from torch import nn

from common import best_of, save
from omnimap.models.overhead import PatchCNN


def strided_3x3(dim: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, 2, 1), nn.GELU(), nn.Conv2d(32, 64, 3, 2, 1), nn.GELU(),
        nn.Conv2d(64, 128, 3, 2, 1), nn.GELU(), nn.Flatten(), nn.Linear(512, 512), nn.GELU(), nn.Linear(512, dim),
    )  # fmt: skip


def main() -> dict:
    torch.manual_seed(0)
    x = torch.randint(0, 255, (16384, 3, 16, 16), dtype=torch.uint8)
    xf = x.float() / 255.0
    shipped, baseline = PatchCNN(384).eval(), strided_3x3(384).eval()

    def run(model, data):
        with torch.inference_mode():
            for s in range(0, len(data), 4096):
                model(data[s : s + 4096])

    t_shipped = best_of(lambda: run(shipped, x), 3)
    t_base = best_of(lambda: run(baseline, xf), 3)
    return {
        "cells": len(x),
        "patch_cnn_cells_per_s": len(x) / t_shipped,
        "strided_3x3_cells_per_s": len(x) / t_base,
        "speedup": t_base / t_shipped,
    }


if __name__ == "__main__":
    r = main()
    for k, v in r.items():
        print(f"{k:28s} {v:,.1f}" if isinstance(v, float) else f"{k:28s} {v}")
    print("saved", save("overhead", r))
