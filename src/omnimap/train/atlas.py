"""Train the built-in world atlas from scratch on a CPU (Sat2Cap recipe, small).

    omnimap train atlas --out runs/atlas

Student: patch CNN over a Blue Marble patch + Sat2Cap dynamic encoder, fused by
addition then normalisation. Teacher: MiniLM over descriptions of the ground.
Loss: InfoNCE against [batch | queue] with a learnable temperature; samples with the
same description or the same facts are not negatives of each other.

Dropouts (so one model serves the ablations and the time-free map):
- metadata dropout (Sat2Cap): per batch, the whole dynamic embedding is zeroed;
- time dropout: per sample, the 8 time inputs are zeroed (time unknown);
- overhead dropout: per sample, the overhead embedding is zeroed (no imagery).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from omnimap.atlas.dataset import build_set
from omnimap.atlas.layers import GroundLayers
from omnimap.atlas.sampling import choose_holdout
from omnimap.encoders import get_text_encoder
from omnimap.errors import InputError
from omnimap.geo.timefeat import TIME_SLICE
from omnimap.models.checkpoint import LoadedModel, load_checkpoint, save_checkpoint
from omnimap.models.student import Student, build_student
from omnimap.sources.bmng import BlueMarbleNative
from omnimap.train.losses import LogitScale, TeacherQueue, queue_infonce

log = logging.getLogger(__name__)


@dataclass
class AtlasTrainConfig:
    name: str = "atlas"
    samples: int = 300_000
    steps: int = 9_000
    batch_size: int = 512
    queue_size: int = 8_192
    lr: float = 1e-3  # from scratch; the paper's 1e-5 is for fine-tuning CLIP
    weight_decay: float = 0.2
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    # CosineAnnealingWarmRestarts with T_mult=2; None: three cycles' worth that end
    # exactly at the last step, (steps - warm-up) / 3 for T_0.
    restart_period: int | None = None
    warmup_steps: int = 200
    init_temperature: float = 0.07
    meta_dropout: float = 0.3
    time_dropout: float = 0.3
    overhead_dropout: float = 0.1
    jitter: int = 1  # random shift of the patch, in pixels
    patch_size: int = 16
    phrasings: int = 3
    holdout_fraction: float = 0.12
    teacher: str = "minilm"
    seed: int = 0

    @classmethod
    def from_dict(cls, data: dict) -> AtlasTrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(
                f"unknown training option(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        out = cls(**data)
        out.betas = tuple(out.betas)
        return out

    def validate(self) -> None:
        if self.queue_size % self.batch_size:
            raise InputError(
                f"queue_size {self.queue_size} must be a multiple of batch_size {self.batch_size}"
            )
        if self.samples < self.batch_size or self.steps < 1:
            raise InputError("samples must be >= batch_size and steps >= 1")


def _architecture(cfg: AtlasTrainConfig, dim: int, mean, std) -> dict:
    return {
        "dim": dim,
        "overhead": {
            "type": "patch_cnn",
            "patch_size": cfg.patch_size,
            "mean": list(mean),
            "std": list(std),
        },
        "dynamic": {"inputs": 12, "hidden": 64},
    }


class _Schedule:
    """Linear warm-up, then cosine annealing with warm restarts (T_mult=2)."""

    def __init__(self, optimizer, cfg: AtlasTrainConfig):
        self.optimizer, self.cfg = optimizer, cfg
        period = cfg.restart_period or max(1, (cfg.steps - cfg.warmup_steps) // 3)
        self.cosine = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            optimizer, T_0=period, T_mult=2, eta_min=cfg.lr * 0.01
        )

    def step(self, step: int) -> None:
        if step < self.cfg.warmup_steps:
            for group in self.optimizer.param_groups:
                group["lr"] = self.cfg.lr * (step + 1) / self.cfg.warmup_steps
        else:
            self.cosine.step(step - self.cfg.warmup_steps)


def train_atlas(cfg: AtlasTrainConfig, out_dir: str | Path, progress: bool = True) -> LoadedModel:
    """Build the data, train, save the checkpoint in ``out_dir``; returns the model."""
    from tqdm.auto import tqdm

    cfg.validate()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    started = time.time()
    layers = GroundLayers()
    holdout = choose_holdout(layers, cfg.holdout_fraction, seed=cfg.seed)
    log.info("hold-out: %d blocks of %g deg", len(holdout.blocks), holdout.block_deg)

    data = build_set(
        layers,
        cfg.samples,
        seed=cfg.seed,
        accept=lambda lo, la: ~holdout.near(lo, la),
        variants=cfg.phrasings,
    )
    log.info("%d samples, %d distinct descriptions", len(data), len(data.texts))
    teacher = get_text_encoder(cfg.teacher)
    text_vectors = torch.from_numpy(teacher.embed(data.texts, progress=progress))

    imagery = BlueMarbleNative(cfg.patch_size)
    size = cfg.patch_size + 2 * cfg.jitter
    patches = torch.from_numpy(imagery.patches(data.lon, data.lat, size=size))
    centre = patches[
        :, :, cfg.jitter : cfg.jitter + cfg.patch_size, cfg.jitter : cfg.jitter + cfg.patch_size
    ]
    mean = (centre.float() / 255.0).mean(dim=(0, 2, 3)).tolist()
    std = (centre.float() / 255.0).std(dim=(0, 2, 3)).tolist()
    meta = torch.from_numpy(data.metadata())
    # Two label columns: the description id and the facts id. Samples agreeing on
    # either mean the same thing and must not be pushed apart.
    _, fact_ids = np.unique(data.facts.matrix(), axis=0, return_inverse=True)
    labels = torch.from_numpy(
        np.stack([data.text_index, fact_ids.ravel()], axis=1).astype(np.int64)
    )
    prep_seconds = time.time() - started

    arch = _architecture(cfg, teacher.dim, mean, std)
    student = build_student(arch)
    scale = LogitScale(cfg.init_temperature)
    params = list(student.parameters()) + list(scale.parameters())
    optimizer = torch.optim.AdamW(
        params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay
    )
    schedule = _Schedule(optimizer, cfg)
    queue = TeacherQueue(cfg.queue_size, teacher.dim, cfg.batch_size, label_columns=2)
    rng = np.random.default_rng(cfg.seed + 1)
    fill = torch.from_numpy(rng.choice(len(data), size=cfg.queue_size, replace=False))
    queue.fill(text_vectors[data.text_index[fill.numpy()]], labels[fill])

    history = []
    order, cursor = rng.permutation(len(data)), 0
    train_started = time.time()
    bar = tqdm(range(cfg.steps), desc="train", unit="step", disable=not progress)
    for step in bar:
        if cursor + cfg.batch_size > len(order):
            order, cursor = rng.permutation(len(data)), 0
        idx = torch.from_numpy(order[cursor : cursor + cfg.batch_size])
        cursor += cfg.batch_size
        loss = _step(
            student,
            scale,
            queue,
            cfg,
            rng,
            patches[idx],
            meta[idx],
            text_vectors[data.text_index[idx.numpy()]],
            labels[idx],
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step(step)
        if step % 50 == 0 or step == cfg.steps - 1:
            value, temp = loss.item(), 1.0 / scale().item()
            history.append({"step": step, "loss": round(value, 4), "temperature": round(temp, 4)})
            bar.set_postfix(loss=f"{value:.3f}", T=f"{temp:.3f}")
            if step % 500 == 0:
                log.info("step %d/%d: loss %.3f, temperature %.4f", step, cfg.steps, value, temp)
    train_seconds = time.time() - train_started

    config = {
        "name": cfg.name,
        **arch,
        "teacher": {"name": cfg.teacher, "key": teacher.key, "dim": teacher.dim},
        "imagery": imagery.to_config(),
        "temperature": 1.0 / scale().item(),
        "holdout": holdout.to_json(),
        "training": {
            **asdict(cfg),
            "distinct_descriptions": len(data.texts),
            "prep_seconds": round(prep_seconds, 1),
            "train_seconds": round(train_seconds, 1),
            "threads": torch.get_num_threads(),
            "loss_history": history,
        },
    }
    save_checkpoint(student, config, out_dir)
    Path(out_dir, "examples.json").write_text(
        json.dumps([data.texts[i] for i in data.text_index[:40]], indent=1) + "\n", encoding="utf-8"
    )
    return load_checkpoint(out_dir)


def _step(
    student: Student,
    scale: LogitScale,
    queue: TeacherQueue,
    cfg: AtlasTrainConfig,
    rng,
    patches,
    meta,
    targets,
    labels,
):
    n, j, p = len(patches), cfg.jitter, cfg.patch_size
    dy, dx = rng.integers(0, 2 * j + 1, size=2)
    x = patches[:, :, dy : dy + p, dx : dx + p]
    meta = meta.clone()
    meta[torch.from_numpy(rng.random(n) < cfg.time_dropout), TIME_SLICE] = 0.0
    o = student.encode_overhead(x)
    if rng.random() < cfg.meta_dropout:
        m = None  # Sat2Cap metadata dropout: this batch sees imagery only
    else:
        m = student.encode_dynamic(meta)
        keep = torch.from_numpy(rng.random(n) >= cfg.overhead_dropout).float().unsqueeze(1)
        o = o * keep
    s = student.fuse(o, m)
    q_vec, q_lab = queue.current()
    loss = queue_infonce(s, targets, labels, scale(), q_vec, q_lab)
    queue.push(targets, labels)
    if not math.isfinite(loss.item()):
        raise FloatingPointError(f"training diverged (loss {loss.item()})")
    return loss
