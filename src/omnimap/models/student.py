"""The student: s = normalize(overhead(patch) + dynamic(location, time)).

The overhead part does not depend on time, so maps at a new time reuse it and only
re-run the small dynamic MLP.

Optional heads (``omnimap.models.heads``; the geosound recipe's options): a source
embedding added to m, a variance head and a concept codebook. A config without them
builds exactly the student it always did.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from omnimap.models.dynamic import DynamicEncoder, dynamic_from_config
from omnimap.models.heads import Codebook, SourceEmbedding, VarianceHead
from omnimap.models.overhead import build_overhead


class Student(nn.Module):
    def __init__(
        self, overhead: nn.Module, dynamic: DynamicEncoder, source: SourceEmbedding | None = None,
        variance: VarianceHead | None = None, codebook: Codebook | None = None,
    ):  # fmt: skip
        super().__init__()
        self.overhead = overhead
        self.dynamic = dynamic
        # None is a plain attribute: no weights, so older checkpoints load strictly
        self.source, self.variance, self.codebook = source, variance, codebook

    @property
    def n_inputs(self) -> int:
        """The dynamic encoder's metadata columns; a source index may follow them."""
        return self.dynamic.net[0].in_features

    def encode_overhead(self, patches: torch.Tensor) -> torch.Tensor:
        return self.overhead(patches)

    def encode_dynamic(self, meta: torch.Tensor) -> torch.Tensor:
        if self.source is None:
            return self.dynamic(meta)
        n = self.n_inputs
        m = self.dynamic(meta[:, :n])
        # metadata without the source column (maps) is of an unknown source
        index = meta[:, n] if meta.shape[1] > n else meta.new_zeros(len(meta))
        return m + self.source(index).to(m.dtype)

    def log_variance(self, o: torch.Tensor | None, m: torch.Tensor | None) -> torch.Tensor:
        """(N, 1) or (N, D) log sigma^2 of the fused embedding (a probabilistic student)."""
        if self.variance is None:
            raise ValueError("this student has no variance head")
        total = o if m is None else (m if o is None else o + m)
        return self.variance(total)

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
    overhead, dynamic = build_overhead(config["overhead"], dim), dynamic_from_config(config, dim)
    heads = {}  # built after the encoders: their seeded initialisation is as before
    if "sources" in config:
        spec = config["sources"]
        heads["source"] = SourceEmbedding(dim, spec["names"], float(spec.get("dropout", 0.0)))
    if "variance" in config:
        spec = config["variance"]
        heads["variance"] = VarianceHead(dim, spec["dims"] == "diagonal", spec.get("init"))
    if "codebook" in config:
        spec = config["codebook"]
        heads["codebook"] = Codebook(int(spec["size"]), dim, float(spec["temperature"]))
    return Student(overhead, dynamic, **heads)
