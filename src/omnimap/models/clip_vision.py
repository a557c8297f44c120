"""CLIP's vision tower (+ projection) as the student's overhead encoder.

Registered as ``"clip_vision"`` in ``omnimap.models.overhead.OVERHEAD_TYPES``: the
architecture comes from the JSON config alone (``vision_config``), the weights only
from safetensors. Inputs are uint8 patches (N, 3, P, P) as imagery sources return
them, or float images in [0, 1] (augmented training batches); they are resized to
the tower's image size and normalised with the training set's statistics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CLIPVisionOverhead(nn.Module):
    def __init__(self, dim: int, vision_config: dict, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)):
        super().__init__()
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        config = CLIPVisionConfig(**{**vision_config, "projection_dim": dim})
        self.image_size = int(config.image_size)
        self.tower = CLIPVisionModelWithProjection(config)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def init_from_teacher(self, vision_state: dict[str, torch.Tensor]) -> None:
        """Start from the teacher's vision tower and projection (Sat2Cap)."""
        self.tower.load_state_dict(vision_state, strict=True)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        x = patches.float() / 255.0 if patches.dtype == torch.uint8 else patches.float()
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              antialias=True, align_corners=False)  # fmt: skip
        x = (x - self.mean) / self.std
        return self.tower(pixel_values=x.to(self.tower.dtype)).image_embeds.float()
