"""Run every benchmark and print its ratios (``make bench``)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import save  # noqa: E402

for name in ("bench_overhead", "bench_maps", "bench_memory", "bench_fields", "bench_tiles"):
    print(f"== {name}")
    result = importlib.import_module(name).main()
    for k, v in result.items():
        print(f"  {k:32s} {v:.4f}" if isinstance(v, float) else f"  {k:32s} {v}")
    print("  saved", save(name.removeprefix("bench_"), result))
