"""Peak memory of a whole-world map at 0.1 deg (6.5M cells), in a fresh process.

Baseline: the bytes its cell embeddings would take if held at once (float32).
Target: peak resident memory under 4 GB.

    python benchmarks/bench_memory.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

from common import save

CHILD = r"""
import json, resource, sys, time
from omnimap.api import zero_shot_map
t = time.perf_counter()
r = zero_shot_map("sand dunes", resolution=0.1, when="2024-07-01T12:00")
r.write(sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - t, "cells": r.grid.size,
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def main() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = {"OMNIMAP_CACHE_DIR": tmp, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
        import os

        out = subprocess.run([sys.executable, "-c", CHILD, f"{tmp}/world.tif"], env={**os.environ, **env},
                             capture_output=True, text=True, check=True)  # fmt: skip
    child = json.loads(out.stdout.strip().splitlines()[-1])
    naive = child["cells"] * 384 * 4
    return {
        "grid": "world at 0.1 deg",
        "cells": child["cells"],
        "seconds": child["seconds"],
        "peak_rss_gb": child["peak_rss_bytes"] / 1e9,
        "all_embeddings_at_once_gb": naive / 1e9,
        "peak_over_all_at_once": child["peak_rss_bytes"] / naive,
        "target_peak_rss_gb": "< 4",
    }


if __name__ == "__main__":
    r = main()
    for k, v in r.items():
        print(f"{k:28s} {v:.3f}" if isinstance(v, float) else f"{k:28s} {v}")
    print("saved", save("memory", r))
