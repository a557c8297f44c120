"""The student: s = normalize(overhead(patch) + dynamic(location, time)).

The overhead part does not depend on time, so maps at a new time reuse it and only
re-run the small dynamic MLP.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from omnimap.models.dynamic import DynamicEncoder, dynamic_from_config
from omnimap.models.overhead import build_overhead


class Student(nn.Module):
    def __init__(self, overhead: nn.Module, dynamic: DynamicEncoder):
        super().__init__()
        self.overhead = overhead
        self.dynamic = dynamic

    def encode_overhead(self, patches: torch.Tensor) -> torch.Tensor:
        return self.overhead(patches)

    def encode_dynamic(self, meta: torch.Tensor) -> torch.Tensor:
        return self.dynamic(meta)

    @staticmethod
    def fuse(o: torch.Tensor | None, m: torch.Tensor | None) -> torch.Tensor:
        """normalize(o + m); either part may be absent (an ablation or dropout)."""
        if o is None and m is None:
            raise ValueError("fuse needs at least one of the overhead and dynamic embeddings")
        total = o if m is None else (m if o is None else o + m)
        return F.normalize(total, dim=-1)

    def forward(self, patches: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.encode_overhead(patches), self.encode_dynamic(meta))


def build_student(config: dict) -> Student:
    """A student from the architecture part of a checkpoint config."""
    dim = int(config["dim"])
    return Student(build_overhead(config["overhead"], dim), dynamic_from_config(config, dim))
