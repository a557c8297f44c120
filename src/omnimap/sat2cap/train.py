"""Train a Sat2Cap student on paired samples (``omnimap train --config FILE``).

Student: CLIP's vision tower initialised from the frozen teacher + the dynamic
encoder, s = normalize(o + m). Loss: InfoNCE of each student embedding against
[global batch of teacher embeddings | queue], learnable temperature from 0.07.
Per batch, with probability ``meta_dropout``, m is zeroed. Under torchrun every rank
holds a slice of the global batch and the teacher keys are all-gathered.

The run directory holds ``train_config.json`` (the resolved config), ``train_state.
safetensors`` (everything needed to resume exactly) and the model itself
(``model.safetensors`` + ``config.json``), loadable with ``load_checkpoint``. Running
the same config on the same directory again resumes from the last checkpoint.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import closing, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from omnimap.errors import InputError
from omnimap.fileio import write_json_atomic
from omnimap.models.checkpoint import LoadedModel, load_checkpoint, save_checkpoint
from omnimap.models.student import Student, build_student
from omnimap.sat2cap import batches
from omnimap.sat2cap.augment import OverheadAugment
from omnimap.sat2cap.config import TrainConfig
from omnimap.sat2cap.data import CrossViewData, open_pairs
from omnimap.sat2cap.distributed import (
    World,
    barrier,
    gather_rows,
    join,
    local_rows,
    mean_over_ranks,
)
from omnimap.sat2cap.state import load_train_state, read_train_info, save_train_state
from omnimap.sat2cap.teacher import CLIPTeacher, get_teacher
from omnimap.train.losses import LogitScale, TeacherQueue, queue_infonce

log = logging.getLogger(__name__)

CONFIG_FILE, STATE_FILE = "train_config.json", "train_state.safetensors"


@dataclass
class RunResult:
    model: LoadedModel
    losses: list[float]  # one per step from step 0 (a resumed run includes earlier steps)
    seconds: float  # this invocation's training time (checkpoint writes excluded)
    samples_per_second: float
    data_wait_seconds: float  # of ``seconds``, spent waiting for the next batch
    is_main: bool = True  # rank 0 (the process that writes and reports)


class _Trainable(nn.Module):
    """Student + temperature as one module, so DDP averages the gradients of both."""

    def __init__(self, student: Student, scale: LogitScale):
        super().__init__()
        self.student, self.scale = student, scale

    def forward(self, images: torch.Tensor, meta: torch.Tensor, keep_meta: float):
        o = self.student.encode_overhead(images)
        # Multiplying by 0 rather than skipping keeps every parameter in the graph, as
        # DDP requires; their gradients are then exactly zero.
        m = self.student.encode_dynamic(meta).float() * keep_meta
        return self.student.fuse(o, m), self.scale()


@dataclass
class _Parts:
    """Everything that trains, and everything a checkpoint holds."""

    arch: dict
    student: Student
    module: _Trainable
    optimizer: torch.optim.AdamW
    scheduler: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts
    queue: TeacherQueue
    losses: list[float]


def architecture(teacher: CLIPTeacher, mean, std) -> dict:
    overhead = {
        "type": "clip_vision",
        "vision_config": teacher.vision_config,
        "mean": list(mean),
        "std": list(std),
    }
    return {"dim": teacher.dim, "overhead": overhead, "dynamic": {"inputs": 12, "hidden": 64}}


def overhead_statistics(
    data: CrossViewData, cfg: TrainConfig, size: int
) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of training patches (a seeded sample), in [0, 1] units."""
    rng = np.random.default_rng(batches.stream_seed(cfg.seed, batches.STATS))
    rows = np.sort(rng.choice(len(data), size=min(cfg.stats_samples, len(data)), replace=False))
    total, total_sq, count = np.zeros(3), np.zeros(3), 0
    for s in range(0, len(rows), 256):
        x = data.patches(rows[s : s + 256], size).astype(np.float64) / 255.0
        total += x.sum(axis=(0, 2, 3))
        total_sq += (x * x).sum(axis=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    return mean.tolist(), np.sqrt(np.maximum(total_sq / count - mean * mean, 1e-12)).tolist()


def _check_run_dir(run_dir: Path, cfg: TrainConfig, world: World) -> None:
    """A run directory belongs to one config: resuming with another would mix runs."""
    path = run_dir / CONFIG_FILE
    wanted = json.loads(json.dumps(cfg.to_json()))  # tuples as lists, as read back
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(k for k in saved.keys() | wanted.keys() if saved.get(k) != wanted.get(k))
        if changed:
            raise InputError(
                f"{run_dir} holds a run with another config (differs in: {', '.join(changed)}); use a new --out"
            )
    elif world.is_main:
        write_json_atomic(path, wanted)


def _build(
    cfg: TrainConfig,
    run_dir: Path,
    teacher: CLIPTeacher,
    data: CrossViewData,
    targets: torch.Tensor | None,
    size: int,
    device: torch.device,
) -> _Parts:
    """A fresh run's parts, or a saved run's parts restored exactly."""
    state_path = run_dir / STATE_FILE
    resuming = state_path.is_file()
    torch.manual_seed(cfg.seed)
    # A resumed run keeps its architecture and statistics; they are never recomputed.
    arch = (
        read_train_info(state_path)["architecture"]
        if resuming
        else architecture(teacher, *overhead_statistics(data, cfg, size))
    )
    student = build_student(arch)
    if not resuming:
        student.overhead.init_from_teacher(teacher.vision_state())
        if not cfg.use_dynamic:  # the ablation: m == 0 always (zero weights get zero gradients)
            nn.init.zeros_(student.dynamic.net[-1].weight)
            nn.init.zeros_(student.dynamic.net[-1].bias)
    module = _Trainable(student, LogitScale(cfg.init_temperature)).to(device)
    # No weight decay on gains, biases and the temperature (CLIP practice): decaying the
    # log-temperature would pull it towards 1 for no reason.
    groups = [{"params": [p for p in module.parameters() if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in module.parameters() if p.ndim < 2], "weight_decay": 0.0}]  # fmt: skip
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=cfg.restart_period or cfg.steps, T_mult=cfg.restart_mult, eta_min=cfg.min_lr
    )
    queue = TeacherQueue(cfg.queue_size, teacher.dim, cfg.batch_size)
    losses: list[float] = []
    if resuming:
        info = load_train_state(state_path, student, module.scale, optimizer, scheduler, queue)
        losses = list(info["losses"])
    else:  # pre-filled from a seeded sample of the training set: no cold start
        rng = np.random.default_rng(batches.stream_seed(cfg.seed, batches.QUEUE_FILL))
        fill = np.sort(rng.choice(len(data), size=min(cfg.queue_size, len(data)), replace=False))
        vectors = (
            targets[fill]
            if targets is not None
            else torch.from_numpy(teacher.embed_images(data.photos(fill)))
        )
        queue.fill(vectors, torch.from_numpy(fill))
    # The queue lives on the training device: it joins every step's logits.
    queue.vectors, queue.labels = queue.vectors.to(device), queue.labels.to(device)
    return _Parts(arch, student, module, optimizer, scheduler, queue, losses)


def train(
    cfg: TrainConfig, run_dir: str | Path, progress: bool = True, stop_after: int | None = None,
    data: CrossViewData | None = None,
) -> RunResult:  # fmt: skip
    """Train (or resume) in ``run_dir``. ``stop_after`` ends once that many steps are
    done, checkpointed, as if the run had been killed there. ``data`` replaces the
    samples named by ``cfg.pairs`` (already opened)."""
    from tqdm.auto import tqdm

    world = join(cfg.device)
    device = world.device(cfg.device)
    mine = local_rows(world, cfg.batch_size)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _check_run_dir(run_dir, cfg, world)
    barrier(world)
    data = data if data is not None else open_pairs(cfg.pairs, imagery=cfg.imagery)
    if len(data) < cfg.batch_size:
        raise InputError(f"{len(data)} paired samples are fewer than one batch of {cfg.batch_size}")
    teacher = get_teacher(cfg.teacher)
    targets = None
    if cfg.teacher_cache:
        if world.is_main:  # computed once and stored with the data; the others read it
            data.teacher_vectors(teacher, progress=progress)
        barrier(world)
        targets = torch.from_numpy(data.teacher_vectors(teacher))
    else:
        teacher.to(device)
    size = int(cfg.patch_size or data.patch_size)
    data.preload(size, cfg.preload_mb * 2**20, progress=progress and world.is_main)
    parts = _build(cfg, run_dir, teacher, data, targets, size, device)
    trainer = parts.module
    if world.size > 1:
        trainer = nn.parallel.DistributedDataParallel(
            parts.module, device_ids=[device] if device.type == "cuda" else None
        )
    augment = OverheadAugment(int(parts.student.overhead.image_size), scale=cfg.crop_scale,
                              num_ops=cfg.rand_augment_ops, magnitude=cfg.rand_augment_magnitude)  # fmt: skip

    def load(step: int) -> dict:
        rows = batches.batch_rows(cfg.seed, step, len(data), cfg.batch_size)
        batch = {"rows": rows, "patches": torch.from_numpy(data.patches(rows[mine], size)),
                 "meta": torch.from_numpy(data.meta[rows[mine]])}  # fmt: skip
        if targets is None:
            batch["photos"] = data.photo_pixels(teacher, rows[mine])
        return batch

    def step_once(step: int, batch: dict) -> tuple[float, float]:
        """One optimizer step; (global mean loss, temperature)."""
        rows = torch.from_numpy(batch["rows"])
        params = augment.sample(
            batches.step_generator(cfg.seed, step, batches.AUGMENT), len(rows), size
        )
        images = augment(batch["patches"].to(device), params[mine])
        keep = 0.0 if batches.metadata_dropped(cfg.seed, step, cfg.meta_dropout) else 1.0
        torch.manual_seed(batches.stream_seed(cfg.seed, batches.TORCH, step))  # any dropout in CLIP
        with (
            torch.autocast(device.type, dtype=torch.bfloat16)
            if cfg.precision == "bf16"
            else nullcontext()
        ):
            s, scale = trainer(images, batch["meta"].to(device), keep)
        own = (
            targets[rows[mine]].to(device)
            if targets is not None
            else teacher.embed_pixels(batch["photos"])
        )
        keys, labels = gather_rows(own, world), rows.to(device)
        others = torch.ones(len(rows), dtype=torch.bool, device=device)
        others[mine] = False
        q_vec, q_lab = parts.queue.current()
        # [own keys | other ranks' keys | queue]: one process's logits for the global
        # batch with the columns permuted, which cross-entropy does not see.
        loss = queue_infonce(s.float(), own, labels[mine], scale.float(),
                             torch.cat([keys[others], q_vec]), torch.cat([labels[others], q_lab]))  # fmt: skip
        parts.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        parts.optimizer.step()
        parts.scheduler.step()
        parts.queue.push(keys, labels)
        return mean_over_ranks(loss, world), 1.0 / float(scale.detach())

    start = len(parts.losses)
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    parts.module.train()
    bar = tqdm(
        total=end,
        initial=start,
        desc="train",
        unit="step",
        disable=not (progress and world.is_main),
    )
    started, waited, saving = time.perf_counter(), 0.0, 0.0
    with closing(batches.prefetch(load, range(start, end))) as stream:
        for _ in range(start, end):
            t = time.perf_counter()
            step, batch = next(stream)
            waited += time.perf_counter() - t  # the device idles while the loader catches up
            loss, temperature = step_once(step, batch)
            if not np.isfinite(loss):
                raise FloatingPointError(f"training diverged at step {step} (loss {loss})")
            parts.losses.append(loss)
            done = step + 1
            bar.update(1)
            if done % cfg.log_every == 0:
                bar.set_postfix(loss=f"{loss:.3f}", T=f"{temperature:.4f}")
                log.info("step %d loss %.4f temperature %.4f", done, loss, temperature)
            if done % cfg.checkpoint_every == 0 or done == end:
                t = time.perf_counter()
                if world.is_main:
                    _checkpoint(run_dir, cfg, parts, teacher, data)
                barrier(world)
                saving += time.perf_counter() - t
    bar.close()
    seconds = time.perf_counter() - started - saving
    if world.is_main and not (run_dir / "config.json").is_file():  # nothing was left to run
        _checkpoint(run_dir, cfg, parts, teacher, data)
    barrier(world)
    rate = (end - start) * cfg.batch_size / seconds if end > start else 0.0
    return RunResult(
        load_checkpoint(run_dir), list(parts.losses), seconds, rate, waited, world.is_main
    )


def _checkpoint(
    run_dir: Path, cfg: TrainConfig, parts: _Parts, teacher: CLIPTeacher, data: CrossViewData
) -> None:
    """The training state (to resume), then the model (to use)."""
    losses = parts.losses
    info = {"step": len(losses), "losses": losses, "architecture": parts.arch}
    save_train_state(run_dir / STATE_FILE, parts.student, parts.module.scale, parts.optimizer, parts.scheduler,
                     parts.queue, info)  # fmt: skip
    config = {
        "name": cfg.name,
        **parts.arch,
        "teacher": teacher.to_config(),
        "imagery": data.imagery,
        "temperature": 1.0 / float(parts.module.scale().detach()),
        "training": {**cfg.to_json(), "step": len(losses), "samples": len(data),
                     "loss_first": losses[0] if losses else None,
                     "loss_last": float(np.mean(losses[-cfg.log_every :])) if losses else None},
    }  # fmt: skip
    save_checkpoint(parts.student, config, run_dir)
