"""The hooks shared by recipes whose every sample is one overhead patch, its
location/time inputs and one teacher target (the soundscape and geosound recipes)."""

from __future__ import annotations

import numpy as np
import torch

from omnimap.models.dynamic import dynamic_config
from omnimap.train.batches import patch_cnn_overhead
from omnimap.train.loop import Recipe


class PatchTargetRecipe(Recipe):
    """``prepare`` sets ``patches`` (N, C, H, W) uint8, ``meta`` (N, F) and
    ``sample_targets`` (N, D) tensors and ``teacher``; each sample is its own label
    (no two samples count as the same)."""

    patches: torch.Tensor
    meta: torch.Tensor
    sample_targets: torch.Tensor  # not ``targets``: that is the loop's per-step hook

    def architecture(self) -> dict:
        overhead = patch_cnn_overhead(self.patches, self.cfg.patch_size, self.cfg.jitter)
        return {"dim": self.teacher.dim, "overhead": overhead, "dynamic": dynamic_config()}

    def labels(self, rows: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(rows, dtype=np.int64))

    def queue_targets(self, rows: np.ndarray) -> torch.Tensor:
        return self.sample_targets[rows]

    def load(self, rows: np.ndarray) -> dict:
        return {"patches": self.patches[rows], "meta": self.meta[rows],
                "targets": self.sample_targets[rows]}  # fmt: skip
