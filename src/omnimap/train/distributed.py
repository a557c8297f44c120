"""Data-parallel training under torchrun: process group, device, gathers.

Each process holds ``batch_size / world`` samples of the global batch. Teacher keys
are all-gathered so every rank scores its students against the whole global batch
(plus the queue, which every rank updates with the same gathered keys), exactly as
one process would with the global batch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from omnimap.core.errors import InputError

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, preference: str) -> torch.device:
        if preference != "auto":
            return torch.device(preference)
        if torch.cuda.is_available():
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")


def join(preference: str = "auto") -> World:
    """The current process group; started from torchrun's environment if needed."""
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return World()
        use_nccl = preference in ("auto", "cuda") and torch.cuda.is_available()
        dist.init_process_group(backend="nccl" if use_nccl else "gloo")
    world = World(
        dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    )
    if world.device(preference).type == "cuda":
        torch.cuda.set_device(world.device(preference))
    return world


def local_rows(world: World, global_batch: int) -> slice:
    """This rank's slice of the global batch."""
    if global_batch % world.size:
        raise InputError(
            f"batch_size {global_batch} must be divisible by the {world.size} processes"
        )
    per = global_batch // world.size
    return slice(world.rank * per, (world.rank + 1) * per)


def gather_rows(x: torch.Tensor, world: World) -> torch.Tensor:
    """Concatenate every rank's equally sized ``x`` in rank order (no gradient)."""
    if world.size == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world.size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def mean_over_ranks(value: torch.Tensor, world: World) -> float:
    if world.size == 1:
        return float(value.detach())
    v = value.detach().clone().float()
    dist.all_reduce(v)
    return float(v) / world.size


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()


def main_first(world: World, compute: Callable[[], T]) -> T:
    """``compute()`` on rank 0, then on the others: rank 0 fills a shared store (teacher
    embeddings) that the others then only read."""
    if world.is_main:
        value = compute()
    barrier(world)
    if not world.is_main:
        value = compute()
    return value
