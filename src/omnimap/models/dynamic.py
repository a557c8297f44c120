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

    @torch.no_grad()
    def start_from(self, smaller: DynamicEncoder) -> None:
        """Take a trained encoder's weights, keeping its function: its inputs must be the
        first of ours and its hidden units the first of ours; our extra inputs start
        with zero weight and our extra hidden units with zero output weight (they still
        learn: their input weights keep their random start)."""
        first, last = smaller.net[0], smaller.net[2]
        n_in, hidden = first.in_features, first.out_features
        mine_first, mine_last = self.net[0], self.net[2]
        if n_in > mine_first.in_features or hidden > mine_first.out_features \
                or last.out_features != mine_last.out_features:  # fmt: skip
            raise ValueError(
                f"cannot start a {mine_first.in_features}->{mine_first.out_features}->"
                f"{mine_last.out_features} encoder from a {n_in}->{hidden}->{last.out_features} one"
            )
        mine_first.weight[:hidden, n_in:] = 0.0
        mine_first.weight[:hidden, :n_in] = first.weight
        mine_first.bias[:hidden] = first.bias
        mine_last.weight[:, hidden:] = 0.0
        mine_last.weight[:, :hidden] = last.weight
        mine_last.bias.copy_(last.bias)


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
