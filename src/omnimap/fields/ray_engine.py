"""The Ray engine: actors that each load the model once, then build whole chunks.

Every pending chunk is submitted exactly once to an ActorPool; the actor that gets it
computes it and writes it straight into the field (values, then done record), so the
driver only counts, and chunks finished before a failure stay recorded for a resume.
The field directory must be visible to every node (one machine, or a shared file
system). ``ray.init()`` joins the cluster named by RAY_ADDRESS, else starts a local one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from omnimap.core.errors import DataError, InputError, OmnimapError
from omnimap.fields.store import ChunkId, Field, build_chunk
from omnimap.models.checkpoint import load_checkpoint
from omnimap.models.embedder import Embedder


class ChunkWorker:
    """The state of one actor: the open field and the model, loaded once.

    Ray sets OMP_NUM_THREADS to the actor's CPUs, so torch in an actor uses one thread
    and actors do not fight over cores."""

    def __init__(self, field_path: str, model_dir: str):
        # Ray reports an error raised here only as text; raised from build() it keeps
        # its type, so the driver can show a user error as one line.
        self.error: OmnimapError | None = None
        try:
            self.field = Field.open(field_path, writable=True)
            model = load_checkpoint(model_dir)
            if model.config["weights_digest"] != self.field.spec.model["weights_digest"]:
                raise DataError(f"the model at {model_dir} is not the one field {field_path} uses")
            self.embedder = Embedder(model)
        except OmnimapError as exc:
            self.error = exc

    def build(self, cid: ChunkId) -> int:
        if self.error is not None:
            raise self.error
        return build_chunk(self.embedder, self.field, cid)


def build_with_ray(
    field_path: Path, model_dir: str, pending: list[ChunkId], workers: int | None,
    on_done: Callable[[int], object],
) -> None:  # fmt: skip
    """Build ``pending`` chunks on ``workers`` actors (default: one per CPU of the cluster)."""
    try:
        import ray
        from ray.util import ActorPool
    except ModuleNotFoundError:
        raise DataError("--engine ray needs Ray: pip install 'omnimap[ray]'") from None

    started = not ray.is_initialized()
    if started:
        ray.init(include_dashboard=False, logging_level=logging.WARNING)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 0))
        workers = workers or cpus
        if not 1 <= workers <= cpus:
            raise InputError(f"--workers {workers} needs as many CPUs, but Ray has {cpus}")
        actor = ray.remote(num_cpus=1)(ChunkWorker)
        actors = [
            actor.remote(str(field_path), model_dir) for _ in range(min(workers, len(pending)))
        ]
        try:
            pool = ActorPool(actors)
            for cells in pool.map_unordered(lambda a, cid: a.build.remote(cid), pending):
                on_done(cells)
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, OmnimapError):
                raise exc.cause from None
            raise
        finally:
            for a in actors:  # free their CPUs for whatever runs next on this cluster
                ray.kill(a)
    finally:
        if started:
            ray.shutdown()
