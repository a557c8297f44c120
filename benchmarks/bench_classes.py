"""Class-set map target, measured in one run against a baseline from the same run.

A 40-class map (the transient attributes) of Europe at 0.1 deg, after the cache is
warm, vs a single-prompt map of the same grid and time: <= 3x. Both go prompt text ->
final array through the API (the class map includes the softmax); rounds interleaved
so both see the same machine.

    python benchmarks/bench_classes.py
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

from common import save


def main(rounds: int = 7) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["OMNIMAP_CACHE_DIR"] = tmp
        from omnimap import api

        place = {"region": "Europe", "resolution": 0.1, "when": "2024-07-15T15:00"}
        warm = api.class_map("transient", **place)  # fills the cell and class caches
        api.zero_shot_map("sand dunes", **place)
        classes, single = [], []
        for _ in range(rounds):
            t = time.perf_counter()
            api.class_map("transient", **place)
            classes.append(time.perf_counter() - t)
            t = time.perf_counter()
            api.zero_shot_map("sand dunes", **place)
            single.append(time.perf_counter() - t)
    c, s = statistics.median(classes), statistics.median(single)
    g = warm.grid
    return {
        "grid": f"Europe at 0.1 deg, {g.size:,} cells; 40 classes",
        "class_map_median_s": c,
        "single_prompt_median_s": s,
        "class_over_single": c / s,
        "target_class_over_single": "<= 3",
    }


if __name__ == "__main__":
    r = main()
    for k, v in r.items():
        print(f"{k:28s} {v:.4f}" if isinstance(v, float) else f"{k:28s} {v}")
    print("saved", save("classes", r))
