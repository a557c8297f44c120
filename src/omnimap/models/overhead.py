"""Overhead encoders: uint8 patches (N, C, P, P) -> unnormalised embeddings (N, D),
behind a registry of types that a checkpoint config names (``overhead.type``)."""

from __future__ import annotations

import math

import torch
from torch import nn

from omnimap.models.clip_vision import CLIPVisionOverhead


class PatchCNN(nn.Module):
    """A small CNN of non-overlapping convolutions (kernel = stride), cheap on CPUs.

    Kernel == stride layers are plain matrix products: 2.4x the cells/s of strided
    3x3 convolutions of similar size on a 2-core CPU (benchmarks/bench_overhead.py).
    Besides the conv features the head sees the raw centre ("fovea") pixels: the
    description is about the cell at the centre, the rest of the patch is context.
    Inputs are normalised inside with the training set's per-channel statistics.
    """

    def __init__(
        self, dim: int, patch_size: int = 16, kernels: tuple[int, ...] = (4, 2), channels: tuple[int, ...] = (48, 96),
        hidden: int = 512, fovea: int = 4, in_channels: int = 3, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
    ):  # fmt: skip
        super().__init__()
        if len(kernels) != len(channels) or patch_size % math.prod(kernels) != 0:
            raise ValueError(
                f"patch_size {patch_size} must be divisible by the product of kernels {kernels}"
            )
        self.patch_size, self.fovea = patch_size, fovea
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        layers: list[nn.Module] = []
        prev = in_channels
        for k, ch in zip(kernels, channels, strict=True):
            layers += [nn.Conv2d(prev, ch, k, stride=k), nn.GELU()]
            prev = ch
        self.convs = nn.Sequential(*layers)
        side = patch_size // math.prod(kernels)
        n_in = prev * side * side + in_channels * fovea * fovea
        self.head = nn.Sequential(nn.Linear(n_in, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        x = (patches.float() / 255.0 - self.mean) / self.std
        lo = (self.patch_size - self.fovea) // 2
        centre = x[:, :, lo : lo + self.fovea, lo : lo + self.fovea].flatten(1)
        return self.head(torch.cat([self.convs(x).flatten(1), centre], dim=1))


OVERHEAD_TYPES: dict[str, type[nn.Module]] = {
    "patch_cnn": PatchCNN,
    "clip_vision": CLIPVisionOverhead,
}


def build_overhead(spec: dict, dim: int) -> nn.Module:
    """The overhead encoder a config describes (``{"type": ..., **its options}``)."""
    options = dict(spec)
    kind = options.pop("type")
    if kind not in OVERHEAD_TYPES:
        raise ValueError(f"unknown overhead encoder type {kind!r}; known: {sorted(OVERHEAD_TYPES)}")
    return OVERHEAD_TYPES[kind](dim=dim, **options)
