"""The dynamic (location + time) encoder of Sat2Cap: metadata values -> R^D, an MLP."""

from __future__ import annotations

import torch
from torch import nn

from omnimap.geo.climatefeat import N_CLIMATE
from omnimap.geo.timefeat import N_FEATURES

HIDDEN = 64  # Sat2Cap's hidden width


class DynamicEncoder(nn.Module):
    def __init__(self, dim: int, n_inputs: int = N_FEATURES, hidden: int = HIDDEN):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_inputs, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, meta: torch.Tensor) -> torch.Tensor:
        return self.net(meta)


def dynamic_config(hidden: int = HIDDEN, climate: bool = False) -> dict:
    """The ``dynamic`` part of a checkpoint config; ``climate``: the inputs end with
    the climate block of ``geo.climatefeat`` (older checkpoints have no such key)."""
    spec = {"inputs": N_FEATURES + (N_CLIMATE if climate else 0), "hidden": hidden}
    return {**spec, "climate": True} if climate else spec


def uses_climate(config: dict) -> bool:
    """Whether a checkpoint's dynamic encoder takes the climate inputs."""
    return bool(config.get("dynamic", {}).get("climate", False))


def dynamic_from_config(config: dict, dim: int) -> DynamicEncoder:
    spec = {**dynamic_config(), **config.get("dynamic", {})}
    return DynamicEncoder(dim, n_inputs=int(spec["inputs"]), hidden=int(spec["hidden"]))
