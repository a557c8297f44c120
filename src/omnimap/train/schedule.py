"""The learning-rate schedule of every recipe, a pure function of the step: linear
warm-up, then cosine annealing with warm restarts (T_0, T_mult, eta_min as
``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts``).

Being a function of the step alone, it needs no state in a checkpoint: a resumed run
rebuilds its ``LambdaLR`` at the step it resumes from.
"""

from __future__ import annotations

import math

import torch

from omnimap.train.config import TrainConfig


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """The learning rate of (0-based) ``step``, as a fraction of ``cfg.lr``."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    t, period = step - cfg.warmup_steps, cfg.first_restart_period()
    if cfg.restart_mult == 1:
        t %= period
    else:  # cycles T_0, T_0 * T_mult, ...: a logarithmic number of them
        while t >= period:
            t -= period
            period *= cfg.restart_mult
    floor = cfg.min_lr / cfg.lr
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t / period))


def lr_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, start: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule positioned at ``start`` (the optimizer's groups hold ``initial_lr``
    once a scheduler has been made for them, as a restored optimizer's do)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(cfg, step), last_epoch=start - 1
    )
