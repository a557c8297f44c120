"""Contrastive losses for cross-view distillation.

- ``queue_infonce``: student -> teacher cross-entropy over the batch's teacher
  embeddings plus a FIFO queue of earlier ones (Sat2Cap). Entries whose label equals
  the anchor's (an identical description) are masked out: they are not negatives.
- ``symmetric_infonce``: CLIP's two-way loss between two embedding sets.
- ``multi_pair_infonce``: GeoCLAP-style, one symmetric loss per modality pair, each
  with its own temperature (for encoders that all train).
- ``paired_queue_infonce`` with ``PairScales``: GeoCLAP's per-pair temperatures for a
  student distilled from frozen teacher modalities (overhead-audio, overhead-text): the
  sum of one ``queue_infonce`` per pair, each with its own learnable temperature, its
  own negatives and only the rows that have that modality (a clip without a caption
  has no text).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

MAX_LOGIT_SCALE = math.log(100.0)


class LogitScale(nn.Module):
    """Learnable inverse temperature, stored as a log, clamped at 100 (CLIP)."""

    def __init__(self, init_temperature: float = 0.07):
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))

    def forward(self) -> torch.Tensor:
        return self.log_scale.clamp(max=MAX_LOGIT_SCALE).exp()


class PairScales(nn.Module):
    """One learnable inverse temperature per pair name (e.g. "overhead|audio")."""

    def __init__(self, names: tuple[str, ...] | list[str], init_temperature: float = 0.07):
        super().__init__()
        if not names or len(set(names)) != len(names):
            raise ValueError(f"pair names must be distinct and at least one, got {names!r}")
        self.names = tuple(names)
        # ModuleDict keys may not hold "."; "|" is fine
        self.scales = nn.ModuleDict({n: LogitScale(init_temperature) for n in self.names})

    def forward(self) -> dict[str, torch.Tensor]:
        return {n: self.scales[n]() for n in self.names}


@dataclass
class PairTargets:
    """One pair's side of the loss: the teacher rows of this batch and their negatives.

    own: (B, D) teacher vectors, row i the positive of student row i; labels: (B,) or
    (B, L) ids as in ``queue_infonce``; valid: (B,) bool, the rows that have this
    modality (None: all); keys, key_labels: further negatives (other ranks' valid rows,
    a queue) or None; weight: multiplies the pair's mean over its valid rows (under DDP,
    valid rows on this rank x ranks / valid rows in the global batch, so that the mean
    over ranks is the global batch's mean)."""

    own: torch.Tensor
    labels: torch.Tensor
    valid: torch.Tensor | None = None
    keys: torch.Tensor | None = None
    key_labels: torch.Tensor | None = None
    weight: float | torch.Tensor = 1.0


def paired_queue_infonce(student: torch.Tensor, pairs: dict[str, PairTargets],
                         scales: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # fmt: skip
    """(sum over pairs of weight x queue_infonce(student rows with the modality, their
    teacher rows, scale of that pair, further negatives), each pair's unweighted loss).

    A pair without a valid row in the batch adds 0 x its scale: its temperature stays in
    the graph (DDP wants every parameter) and gets a zero gradient."""
    total = student.new_zeros(())
    each: dict[str, torch.Tensor] = {}
    for name, p in pairs.items():
        rows = p.valid if p.valid is not None else torch.ones(len(p.own), dtype=torch.bool,
                                                               device=p.own.device)  # fmt: skip
        if not bool(rows.any()):
            total = total + 0.0 * scales[name]
            continue
        loss = queue_infonce(student[rows], p.own[rows], p.labels[rows], scales[name],
                             p.keys, p.key_labels)  # fmt: skip
        each[name] = loss.detach()
        total = total + p.weight * loss
    return total, each


def queue_infonce(
    student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, scale: torch.Tensor,
    queue: torch.Tensor | None = None, queue_labels: torch.Tensor | None = None,
) -> torch.Tensor:  # fmt: skip
    """Mean cross-entropy of each student row against [batch teachers | queue].

    student, teacher: (B, D) unit vectors, row i of each is a positive pair.
    labels: (B,) or (B, L) ids; two rows agreeing on any column mean the same thing
    (e.g. an identical description) and are not negatives of each other.
    queue, queue_labels: (Q, D) and (Q,) / (Q, L) earlier teacher embeddings (or None).
    """
    keys, key_labels = teacher, labels
    if queue is not None and len(queue):
        keys = torch.cat([teacher, queue], dim=0)
        key_labels = torch.cat([labels, queue_labels], dim=0)
    logits = scale * student @ keys.T  # (B, B+Q)
    same = _same_meaning(labels, key_labels)
    own = torch.zeros_like(same)
    own[:, : len(labels)] = torch.eye(len(labels), dtype=torch.bool, device=same.device)
    logits = logits.masked_fill(same & ~own, float("-inf"))
    target = torch.arange(len(labels), device=logits.device)
    return F.cross_entropy(logits, target)


def _same_meaning(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(len(a), len(b)) bool: rows agreeing on any label column."""
    a2, b2 = (a.unsqueeze(1) if a.dim() == 1 else a), (b.unsqueeze(1) if b.dim() == 1 else b)
    return (a2[:, None, :] == b2[None, :, :]).any(dim=-1)


def symmetric_infonce(
    a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """CLIP loss: mean of a->b and b->a cross-entropy; equal labels are not negatives."""
    logits = scale * a @ b.T
    if labels is not None:
        same = _same_meaning(labels, labels)
        eye = torch.eye(len(labels), dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(same & ~eye, float("-inf"))
    target = torch.arange(len(a), device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def multi_pair_infonce(
    embeddings: dict[str, torch.Tensor], scales: dict[str, torch.Tensor]
) -> torch.Tensor:
    """Sum of symmetric losses over every pair of modalities; ``scales`` is keyed
    by "a|b" with a < b alphabetically."""
    names = sorted(embeddings)
    total = embeddings[names[0]].new_zeros(())
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            total = total + symmetric_infonce(embeddings[a], embeddings[b], scales[f"{a}|{b}"])
    return total


class TeacherQueue:
    """FIFO of teacher embeddings and their labels; size a multiple of the batch."""

    def __init__(self, size: int, dim: int, batch_size: int, label_columns: int = 1):
        if size % batch_size != 0:
            raise ValueError(
                f"queue size {size} must be a multiple of the global batch size {batch_size}"
            )
        self.vectors = torch.zeros(size, dim)
        shape = (size,) if label_columns == 1 else (size, label_columns)
        self.labels = torch.full(shape, -1, dtype=torch.long)
        self.ptr = 0
        self.filled = 0

    def fill(self, vectors: torch.Tensor, labels: torch.Tensor) -> None:
        """Pre-fill from a random sample of the training set (no cold start)."""
        n = min(len(vectors), len(self.vectors))
        self.vectors[:n] = vectors[:n]
        self.labels[:n] = labels[:n]
        self.filled = n
        self.ptr = n % len(self.vectors) if len(self.vectors) else 0

    def to(self, device: torch.device | str) -> TeacherQueue:
        """Move to the training device (the queue joins every step's logits)."""
        self.vectors, self.labels = self.vectors.to(device), self.labels.to(device)
        return self

    def push(self, vectors: torch.Tensor, labels: torch.Tensor) -> None:
        n = len(vectors)
        if not len(self.vectors):  # queue_size 0: in-batch negatives only
            return
        idx = (self.ptr + torch.arange(n, device=self.vectors.device)) % len(self.vectors)
        self.vectors[idx] = vectors.detach()
        self.labels[idx] = labels
        self.ptr = int((self.ptr + n) % len(self.vectors))
        self.filled = min(len(self.vectors), self.filled + n)

    def current(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.vectors[: self.filled], self.labels[: self.filled]

    def state_dict(self) -> dict:
        return {
            "vectors": self.vectors,
            "labels": self.labels,
            "ptr": torch.tensor(self.ptr),
            "filled": torch.tensor(self.filled),
        }

    def load_state_dict(self, state: dict) -> None:
        self.vectors.copy_(state["vectors"])
        self.labels.copy_(state["labels"])
        self.ptr, self.filled = int(state["ptr"]), int(state["filled"])
