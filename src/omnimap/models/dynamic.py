"""The dynamic (location + time) encoder of Sat2Cap: 12 sin/cos values -> R^D."""

from __future__ import annotations

import torch
from torch import nn


class DynamicEncoder(nn.Module):
    def __init__(self, dim: int, n_inputs: int = 12, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_inputs, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, meta: torch.Tensor) -> torch.Tensor:
        return self.net(meta)
