"""Optional student heads of the geosound recipe's options (PSM, Sat2Sound).

- :class:`SourceEmbedding`: a learned vector per recording source (freesound, aporee,
  iNaturalist...) added to the dynamic embedding; index 0 is "unknown" (maps, and a
  share of training samples, so that maps without a source still work).
- :class:`VarianceHead`: PSM's probabilistic embedding: a log-variance, one number or
  one per dimension, of a Gaussian around the student's unit embedding.
- :class:`Codebook`: Sat2Sound's K learnable soundscape concepts in the teacher space;
  the student's embedding as a soft assignment over them.

A student without them (every built-in model) has none of their weights, so checkpoints
saved before they existed load unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

UNKNOWN = "unknown"  # index 0 of a SourceEmbedding
HIDDEN = 64


def source_key(name: str | None) -> str:
    """How a source name is matched: trimmed, lower case."""
    return (name or "").strip().lower()


class SourceEmbedding(nn.Module):
    def __init__(self, dim: int, names: list[str] | tuple[str, ...], dropout: float = 0.0):
        super().__init__()
        self.names = tuple(names)
        self.dropout = float(dropout)
        self.table = nn.Embedding(len(self.names) + 1, dim)
        nn.init.zeros_(self.table.weight)  # a source adds nothing until it is learnt

    def indices(self, names: list[str | None]) -> list[int]:
        """0 (unknown) for a name not among ``names``."""
        known = {n: i + 1 for i, n in enumerate(self.names)}
        return [known.get(source_key(n), 0) for n in names]

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        idx = index.round().long().clamp(0, len(self.names))
        if self.training and self.dropout > 0:  # the loop seeds torch's RNG per step
            idx = idx.masked_fill(torch.rand(len(idx), device=idx.device) < self.dropout, 0)
        return self.table(idx)


class VarianceHead(nn.Module):
    """log sigma^2 (N, 1) or (N, D) from the unnormalised o + m; starts constant at
    ``init`` (the last layer is zero but for its bias)."""

    def __init__(self, dim: int, diagonal: bool = False, init: float | None = None):
        super().__init__()
        self.diagonal = diagonal
        self.net = nn.Sequential(nn.Linear(dim, HIDDEN), nn.GELU(), nn.Linear(HIDDEN, dim if diagonal else 1))
        nn.init.zeros_(self.net[2].weight)
        nn.init.constant_(self.net[2].bias, prior_log_variance(dim) + math.log(0.01) if init is None else init)

    def forward(self, total: torch.Tensor) -> torch.Tensor:
        return self.net(total)


def prior_log_variance(dim: int) -> float:
    """log(1/D): noise of this per-dimension variance is as long as the unit mean."""
    return -math.log(dim)


class Codebook(nn.Module):
    def __init__(self, size: int, dim: int, temperature: float = 0.1):
        super().__init__()
        self.temperature = float(temperature)
        self.concepts = nn.Parameter(torch.randn(size, dim) / math.sqrt(dim))

    def unit_concepts(self) -> torch.Tensor:
        return F.normalize(self.concepts, dim=-1)

    def assign(self, s: torch.Tensor) -> torch.Tensor:
        """(N, K) soft assignments (rows sum to 1) of (N, D) unit embeddings."""
        return torch.softmax(s @ self.unit_concepts().T / self.temperature, dim=-1)

    def reconstruct(self, weights: torch.Tensor) -> torch.Tensor:
        """(N, D) unit vectors: the assignments' mix of the concepts."""
        return F.normalize(weights @ self.unit_concepts(), dim=-1)
