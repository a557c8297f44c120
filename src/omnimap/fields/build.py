"""Building a field: plan its chunks, compute their overhead embeddings, write each once.

``engine="local"`` runs the chunks in this process (torch uses every core);
``engine="ray"`` hands them to Ray actors (see ray_engine). Either way only chunks
without a done record are computed, so a killed build resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter
from pathlib import Path

from omnimap.core.errors import InputError
from omnimap.core.progress import progress as bar_for
from omnimap.fields.quantize import check_dtype
from omnimap.fields.ray_engine import build_with_ray
from omnimap.fields.store import DEFAULT_CHUNK, Field, FieldSpec, build_chunk
from omnimap.geo.bbox import BBox
from omnimap.geo.grid import LatLonGrid
from omnimap.geo.place import resolve_place
from omnimap.models.checkpoint import load_checkpoint
from omnimap.models.embedder import Embedder

ENGINES = ("local", "ray")
MAX_CHUNK = 2048  # cells per side; a (2048, 2048, 384) float32 chunk is already 6 GB


@dataclasses.dataclass(frozen=True)
class BuildReport:
    path: Path
    chunks_total: int
    chunks_skipped: int  # found already built: a resumed build
    chunks_built: int
    cells_built: int
    seconds: float
    repaired: dict[str, int] = dataclasses.field(default_factory=dict)  # damaged chunks rebuilt, by kind

    @property
    def cells_per_s(self) -> float:
        return self.cells_built / self.seconds if self.seconds > 0 else 0.0


def build_field(
    out: str | os.PathLike, *, resolution: float, bbox: BBox | str | tuple | None = None,
    region: str | None = None, model: str = "atlas", dtype: str = "float16",
    engine: str = "local", workers: int | None = None, chunk: int = DEFAULT_CHUNK,
    progress: bool = True,
) -> BuildReport:  # fmt: skip
    """Build (or finish) the field of a region at ``resolution`` degrees into ``out``."""
    check_dtype(dtype)
    if engine not in ENGINES:
        raise InputError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if workers is not None and engine != "ray":
        raise InputError("--workers applies to --engine ray; the local engine uses torch's threads")
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    if not 1 <= chunk <= MAX_CHUNK:
        raise InputError(f"--chunk must be between 1 and {MAX_CHUNK} cells, got {chunk}")
    box, _ = resolve_place(bbox, region)
    # No cell limit: a build streams chunk by chunk, so its size is bounded by disk.
    grid = LatLonGrid.from_bbox(box, resolution, check_size=False)
    loaded = load_checkpoint(model)
    embedder = Embedder(loaded)
    spec = FieldSpec(
        model={"name": loaded.name, "key": loaded.key, "source": loaded.source,
               "weights_digest": loaded.config["weights_digest"], "dim": embedder.dim},
        imagery=embedder.imagery.key, grid=grid, dtype=dtype, chunk=chunk,
    )  # fmt: skip
    field = Field.create(out, spec)
    with field.build_lock():
        # A re-run repairs: recorded chunks whose files were damaged lose their record.
        recorded = len(field.done())
        with bar_for(recorded, "checking built chunks", "chunk", show=progress and recorded > 0) as bar:
            damaged = field.verify_built(lambda _: bar.update())
        repaired = dict(Counter(damaged.values()))
        done = field.done()
        all_ids = field.chunk_ids()
        pending = [cid for cid in all_ids if cid not in done]
        todo = sum(field.subgrid(*field.chunk_bounds(cid)).size for cid in pending)
        built = []  # cells per finished chunk, as the engine reports them

        def finished(cells: int) -> None:
            built.append(cells)
            bar.update(cells)

        start = time.perf_counter()
        with bar_for(grid.size, f"field ({engine})", initial=grid.size - todo,
                     unit_scale=True, show=progress) as bar:  # fmt: skip
            if engine == "local":
                for cid in pending:
                    finished(build_chunk(embedder, field, cid))
            elif pending:
                build_with_ray(field.path, str(loaded.path), pending, workers, finished)
        seconds = time.perf_counter() - start
    return BuildReport(field.path, len(all_ids), len(all_ids) - len(pending), len(built),
                       sum(built), seconds, repaired)  # fmt: skip
