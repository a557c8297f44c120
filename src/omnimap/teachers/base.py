"""The teacher protocol: a frozen model that embeds ground observations.

A teacher has a ``name``, the ``modalities`` it embeds (``"text"``, ``"image"``,
``"audio"``, ``"species"``, ...), an embedding ``dim``, a ``licence``, and a ``key``: a
digest of everything that changes its vectors (weights, preprocessing, vocabulary), so
stored embeddings are never reused across teachers and never recomputed for the same
one. ``embed(modality, items)`` returns float32 unit vectors, one row per item:

- text: ``str``
- image: ``PIL.Image.Image`` or an (H, W, 3) uint8 array
- audio: ``omnimap.media.audio.Waveform`` (mono float32 samples and a rate)
- species: scientific names (``str``)

Teachers load their weights lazily, on the first ``embed`` (or ``key``/``dim``) call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from omnimap.core.errors import InputError

MODALITIES = ("text", "image", "audio", "species")


class Teacher(ABC):
    """Subclasses set ``kind``, ``modalities`` and ``licence`` and implement
    ``key``, ``dim`` and ``_embed``."""

    kind: str  # registry kind, e.g. "text", "clip", "birdnet", "clap"
    modalities: tuple[str, ...]
    licence: str

    def __init__(self, name: str):
        self.name = str(name)

    @property
    @abstractmethod
    def key(self) -> str:
        """Digest of the weights and anything else that changes the vectors."""

    @property
    @abstractmethod
    def dim(self) -> int: ...

    @abstractmethod
    def _embed(self, modality: str, items: Sequence, progress: bool) -> np.ndarray:
        """(len(items), dim) float32 unit vectors; ``modality`` is one of ``modalities``."""

    def embed(self, modality: str, items: Sequence, progress: bool = False) -> np.ndarray:
        if modality not in self.modalities:
            raise InputError(
                f"teacher {self.name!r} embeds {', '.join(self.modalities)}, not {modality}"
            )
        if not len(items):
            return np.empty((0, self.dim), dtype=np.float32)
        return self._embed(modality, items, progress)

    def modality_key(self, modality: str) -> str:
        """What identifies this teacher's vectors of one modality (cache keys)."""
        return f"{self.kind}|{modality}|{self.key}"

    def to_config(self) -> dict:
        """What a student's config records about its teacher."""
        return {"kind": self.kind, "name": self.name, "key": self.key, "dim": self.dim}
