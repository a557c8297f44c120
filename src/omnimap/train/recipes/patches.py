"""What the recipes over overhead patches share (the atlas, soundscape and geosound):
reading every sample's patch with a jitter margin, the random-shift augmentation and the
patch-CNN architecture; and, for recipes with one teacher vector per sample, the
label, queue and batch hooks."""

from __future__ import annotations

import numpy as np
import torch

from omnimap.models.dynamic import dynamic_config
from omnimap.sources.base import PatchSource
from omnimap.train.augment import PatchJitter
from omnimap.train.batches import patch_cnn_overhead
from omnimap.train.loop import Recipe


class PatchRecipe(Recipe):
    """``prepare`` calls :meth:`read_inputs` and sets ``teacher``."""

    patches: torch.Tensor  # (N, C, H, W) uint8, the jitter margin included
    meta: torch.Tensor  # (N, F) location/time inputs

    def read_inputs(self, imagery: PatchSource, lon: np.ndarray, lat: np.ndarray,
                    meta: np.ndarray) -> None:  # fmt: skip
        cfg = self.cfg
        self.imagery = imagery
        self.jitter = PatchJitter(cfg.patch_size, cfg.jitter)
        self.patches = torch.from_numpy(imagery.patches(lon, lat, size=cfg.patch_size + 2 * cfg.jitter))
        self.meta = torch.from_numpy(meta)

    def dynamic(self) -> dict:
        """The dynamic encoder's config for a fresh run."""
        return dynamic_config()

    def architecture(self) -> dict:
        overhead = patch_cnn_overhead(self.patches, self.cfg.patch_size, self.cfg.jitter)
        return {"dim": self.teacher.dim, "overhead": overhead, "dynamic": self.dynamic()}

    def augment(self, gen: torch.Generator, patches: torch.Tensor, batch_size: int,
                mine: slice) -> torch.Tensor:  # fmt: skip
        return self.jitter(patches, self.jitter.sample(gen, batch_size)[mine])


class PatchTargetRecipe(PatchRecipe):
    """``prepare`` also sets ``sample_targets`` (N, D); each sample is its own label
    (no two samples count as the same)."""

    sample_targets: torch.Tensor  # not ``targets``: that is the loop's per-step hook

    def labels(self, rows: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(rows, dtype=np.int64))

    def queue_targets(self, rows: np.ndarray) -> torch.Tensor:
        return self.sample_targets[rows]

    def load(self, rows: np.ndarray) -> dict:
        return {"patches": self.patches[rows], "meta": self.meta[rows],
                "targets": self.sample_targets[rows]}  # fmt: skip
