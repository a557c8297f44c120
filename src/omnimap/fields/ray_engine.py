"""The Ray engine: actors that each load the model once, then build whole chunks.

Every pending chunk is submitted exactly once to an ActorPool; the actor that gets it
computes it and writes it straight into the field (values, then done record), so the
driver only counts, and chunks finished before a failure stay recorded for a resume.
The field directory must be visible to every node (one machine, or a shared file
system). ``ray.init()`` joins the cluster named by RAY_ADDRESS, else starts a local one.

:func:`start_ray` does that before anything is written, so a build whose Ray is missing
or does not start leaves no field behind; the number of actors is the CPUs Ray sees,
and a larger ``--workers`` is capped to them (with a warning) rather than failing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from omnimap.core.errors import DataError, OmnimapError
from omnimap.fields.store import ChunkId, Field, build_chunk
from omnimap.models.checkpoint import load_checkpoint
from omnimap.models.embedder import Embedder

log = logging.getLogger(__name__)
RAY_EXTRA = "pip install 'omnimap[ray]'"


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


def _import_ray():
    """Ray, imported on use (it is an optional extra and takes seconds to import)."""
    if not os.environ.get("RAY_ADDRESS"):
        # A local cluster: say which authentication it uses (Ray's default, a token),
        # so Ray does not warn that it chose one. A cluster we join keeps its own.
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    try:
        import ray
    except ImportError:
        raise DataError(f"--engine ray needs Ray, which is not installed: {RAY_EXTRA}") from None
    return ray


def start_ray(workers: int | None = None) -> int:
    """Start (or join) Ray's cluster; the number of actors to use: ``workers``, at most
    the CPUs Ray sees (default: all of them). DataError when Ray is missing or its
    cluster does not start."""
    ray = _import_ray()
    if not ray.is_initialized():
        try:
            ray.init(include_dashboard=False, logging_level=logging.WARNING)
        except Exception as exc:  # noqa: BLE001 - Ray raises many kinds; each is one line here
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise DataError(f"Ray's cluster did not start: {first}") from None
    return actors_for(workers, int(ray.cluster_resources().get("CPU", 0)))


def actors_for(workers: int | None, cpus: int) -> int:
    """``workers`` capped at ``cpus`` (default: ``cpus``)."""
    if cpus < 1:
        raise DataError("Ray's cluster has no CPUs to run actors on")
    if workers is None:
        return cpus
    if workers > cpus:
        log.warning("--workers %d: Ray sees %d CPUs, so %d actors run", workers, cpus, cpus)
        return cpus
    return workers


def stop_ray() -> None:
    """Shut down the Ray that :func:`start_ray` started or joined, if any."""
    ray = _import_ray()
    if ray.is_initialized():
        ray.shutdown()


def build_with_ray(
    field_path: Path, model_dir: str, pending: list[ChunkId], workers: int | None,
    on_done: Callable[[int], object],
) -> None:  # fmt: skip
    """Build ``pending`` chunks on ``workers`` actors (default: one per CPU of the
    cluster; more are capped to its CPUs)."""
    ray = _import_ray()
    from ray.util import ActorPool  # with Ray, on use

    started = not ray.is_initialized()
    workers = start_ray(workers)
    try:
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
