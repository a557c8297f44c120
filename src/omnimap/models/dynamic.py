"""The dynamic (location + time) encoder of Sat2Cap: metadata values -> R^D, an MLP."""

from __future__ import annotations

import torch
from torch import nn

from omnimap.geo.timefeat import N_FEATURES

HIDDEN = 64  # Sat2Cap's hidden width


class DynamicEncoder(nn.Module):
    def __init__(self, dim: int, n_inputs: int = N_FEATURES, hidden: int = HIDDEN):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_inputs, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, meta: torch.Tensor) -> torch.Tensor:
        return self.net(meta)


def dynamic_config(n_inputs: int = N_FEATURES, hidden: int = HIDDEN) -> dict:
    """The ``dynamic`` part of a checkpoint config."""
    return {"inputs": n_inputs, "hidden": hidden}


def dynamic_from_config(config: dict, dim: int) -> DynamicEncoder:
    spec = {**dynamic_config(), **config.get("dynamic", {})}
    return DynamicEncoder(dim, n_inputs=int(spec["inputs"]), hidden=int(spec["hidden"]))
