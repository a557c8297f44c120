"""Which samples, augmentations and dropouts step ``s`` uses: pure functions of (seed, s).

Nothing here keeps state between steps, so a run resumed at any step, or spread over
any number of processes, draws exactly what an uninterrupted single process would.
A background thread reads the next step's overhead patches while the current one
trains (imagery reads are I/O and release the GIL).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from queue import Full, Queue

import numpy as np
import torch

# Independent random streams of one step (changing one rate never shifts another's draws).
ORDER, AUGMENT, DROPOUT, QUEUE_FILL, STATS, TORCH, TIME_DROPOUT, OVERHEAD_DROPOUT = range(8)
STATS_CHUNK = 256  # patches per read when measuring the normalisation statistics


def stream_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed for the stream (seed, *keys)."""
    return int(
        np.random.SeedSequence([seed, *keys]).generate_state(2, np.uint64)[0] >> np.uint64(1)
    )


def batch_rows(seed: int, step: int, n_samples: int, batch_size: int, group: int = 1) -> np.ndarray:
    """The global batch of ``step``: epochs are seeded permutations, the last partial
    batch of an epoch is dropped (every batch is full, so the queue stays aligned).
    ``group`` > 1: rows come in consecutive groups of that many (e.g. one place at
    several weeks) that always share a batch, so each is a negative of the others."""
    if batch_size % group:
        raise ValueError(f"batch_size {batch_size} is not a multiple of the row group {group}")
    per_batch = batch_size // group
    epoch, k = divmod(step, (n_samples // group) // per_batch)
    groups = _epoch_order(seed, epoch, n_samples // group)[k * per_batch : (k + 1) * per_batch]
    return (groups[:, None] * group + np.arange(group)).ravel()


@lru_cache(maxsize=2)  # the current epoch's, and the next one's near a boundary
def _epoch_order(seed: int, epoch: int, n_samples: int) -> np.ndarray:
    order = np.random.default_rng(stream_seed(seed, ORDER, epoch)).permutation(n_samples)
    order.flags.writeable = False
    return order


def metadata_dropped(seed: int, step: int, p: float) -> bool:
    """Sat2Cap's metadata dropout, decided once per (global) batch."""
    return bool(np.random.default_rng(stream_seed(seed, DROPOUT, step)).random() < p)


@dataclass(frozen=True)
class Dropouts:
    """The input dropouts of one global batch."""

    meta: bool  # the whole batch's dynamic embedding m is zeroed (Sat2Cap)
    time: np.ndarray  # (n,) bool: the sample's 8 time inputs are zeroed (time unknown)
    overhead: np.ndarray  # (n,) bool: the sample's overhead embedding o is zeroed

    def __getitem__(self, rows: slice) -> Dropouts:
        return Dropouts(self.meta, self.time[rows], self.overhead[rows])


def dropouts(seed: int, step: int, n: int, meta: float, time: float, overhead: float) -> Dropouts:
    """Drawn for the global batch of ``n``; o is only dropped in batches that keep m, so
    no sample ever loses both halves of its embedding."""
    dropped_meta = metadata_dropped(seed, step, meta)
    return Dropouts(
        dropped_meta,
        _per_sample(seed, step, TIME_DROPOUT, n, time),
        _per_sample(seed, step, OVERHEAD_DROPOUT, n, overhead) & (not dropped_meta),
    )


def _per_sample(seed: int, step: int, stream: int, n: int, p: float) -> np.ndarray:
    return np.random.default_rng(stream_seed(seed, stream, step)).random(n) < p


def step_generator(seed: int, step: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(stream_seed(seed, stream, step))


def channel_statistics(chunks: Iterable[np.ndarray]) -> tuple[list[float], list[float]]:
    """Per-channel mean and std over uint8 (N, C, H, W) chunks, in [0, 1] units (float64
    sums: no full-size float copy of the patches)."""
    total = total_sq = 0.0
    count = 0
    for chunk in chunks:
        x = chunk.astype(np.float64) / 255.0
        total = total + x.sum(axis=(0, 2, 3))
        total_sq = total_sq + (x * x).sum(axis=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    return mean.tolist(), np.sqrt(np.maximum(total_sq / count - mean * mean, 1e-12)).tolist()


def patch_cnn_overhead(patches: torch.Tensor, patch_size: int, jitter: int) -> dict:
    """The patch-CNN overhead encoder's config, normalised by the channel statistics of
    the training patches' centres (the jitter margin left out)."""
    j, p = jitter, patch_size
    centres = (patches[s : s + STATS_CHUNK, :, j : j + p, j : j + p].numpy()
               for s in range(0, len(patches), STATS_CHUNK))  # fmt: skip
    mean, std = channel_statistics(centres)
    return {"type": "patch_cnn", "patch_size": p, "mean": mean, "std": std}


def prefetch(
    load: Callable[[int], object], steps: range, depth: int = 2
) -> Iterator[tuple[int, object]]:
    """(step, load(step)) for each step, loading up to ``depth`` steps ahead in one
    background thread (one reader: imagery datasets are not safe to share across threads)."""
    buffer: Queue = Queue(maxsize=depth)
    stop = threading.Event()

    def worker() -> None:
        for step in steps:
            try:
                item = (step, load(step), None)
            except BaseException as exc:  # re-raised in the consumer
                item = (step, None, exc)
            while not stop.is_set():
                try:
                    buffer.put(item, timeout=0.1)
                    break
                except Full:  # the consumer is busy: wait, unless it has gone
                    continue
            if stop.is_set() or item[2] is not None:
                return

    thread = threading.Thread(target=worker, name="train-prefetch", daemon=True)
    thread.start()
    try:
        for _ in steps:
            step, value, error = buffer.get()
            if error is not None:
                raise error
            yield step, value
    finally:
        stop.set()
        thread.join(timeout=5)
