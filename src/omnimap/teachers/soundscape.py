"""The soundscape space: species, sounds and words about sounds in one 1792-d space.

A vector is three unit blocks, each scaled by its weight, then normalised as a whole:

    [ biophony (1024, BirdNET) | taxon text (384, MiniLM) | soundscape caption (384, MiniLM) ]

(the built-in text teacher is MiniLM; another one, e.g. a tiny model in tests, sets the
width of the two text blocks).

- A place and week (the training target): the biophony block is the occurrence-
  weighted mix of BirdNET's species vectors (the rows of its classifier), the taxon
  block the same mix of the MiniLM vectors of the species' names, the caption block
  the MiniLM vector of a sentence describing what one hears there then.
- A species (``species``): its BirdNET vector alone. A place's taxon block mixes the
  names of every bird there, so it moves with the whole mix rather than with one
  species; read with it, the maps of 3 of 20 northern migrants did not rise into
  summer, read without it 2 (seen species' AUC 0.902 and 0.901; docs/sound.md).
- A taxon in words (``taxon``): only the taxon block, so a genus, a name BirdNET has
  no class for or a description ("a small owl of dry forests") maps zero-shot, the
  LD-SDM idea.
- A sound (``audio``): BirdNET's pooled clip embedding in the biophony block.
- A text (``text``): the caption block, and the taxon block at half weight (a text
  may name animals).

A student that predicts the place-and-week vector thus answers all five kinds of query
through one cosine (TaxaBind's idea of binding every modality to one space). The
BirdNET parts are CC BY-NC-SA 4.0 (non-commercial), MiniLM Apache-2.0.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import cached_property

import numpy as np

from omnimap.teachers.base import Teacher
from omnimap.teachers.birdnet import DIM as BIOPHONY_DIM
from omnimap.teachers.birdnet import LICENCE as BIRDNET_LICENCE
from omnimap.teachers.birdnet import BirdNetTeacher, Species

TEXT_DIM = 384  # MiniLM, the built-in text teacher
DIM = BIOPHONY_DIM + 2 * TEXT_DIM
BIOPHONY = slice(0, BIOPHONY_DIM)
TAXON = slice(BIOPHONY_DIM, BIOPHONY_DIM + TEXT_DIM)
CAPTION = slice(BIOPHONY_DIM + TEXT_DIM, DIM)
TEXT_TAXON_WEIGHT = 0.5  # of a text query's taxon block, against its caption block
LAYOUT = "soundscape/v2"  # changes to the blocks or taxon_phrase change the key
# How a species query is composed; part of its cache key only (the space is the same).
SPECIES_QUERY = "biophony"
LICENCE = f"{BIRDNET_LICENCE} + MiniLM (Apache-2.0)"


def unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def block_slices(text_dim: int = TEXT_DIM) -> dict[str, slice]:
    """Where each block lies in a space whose text teacher is ``text_dim`` wide."""
    return {"biophony": slice(0, BIOPHONY_DIM),
            "taxon": slice(BIOPHONY_DIM, BIOPHONY_DIM + text_dim),
            "caption": slice(BIOPHONY_DIM + text_dim, BIOPHONY_DIM + 2 * text_dim)}  # fmt: skip


def compose(n: int, weights: dict[str, float] | None = None, text_dim: int = TEXT_DIM,
            **blocks: np.ndarray | None) -> np.ndarray:  # fmt: skip
    """(n, 1024 + 2 * text_dim) unit vectors from blocks given by name (``biophony``,
    ``taxon``, ``caption``): each block's rows are made unit and scaled by its weight
    (default 1), absent blocks are zero, then every row is made unit."""
    where = block_slices(text_dim)
    out = np.zeros((n, BIOPHONY_DIM + 2 * text_dim), dtype=np.float32)
    for name, rows in blocks.items():
        if rows is None:
            continue
        out[:, where[name]] = unit_rows(rows) * float((weights or {}).get(name, 1.0))
    return unit_rows(out)


def taxon_phrase(species: Species) -> str:
    """What the taxon block embeds of a species: its English and scientific names
    and its genus."""
    return f"{species.common} ({species.scientific}), genus {species.genus}"


class SoundscapeTeacher(Teacher):
    """BirdNET + a text teacher, as the blocks above (see the module docstring)."""

    kind = "soundscape"
    modalities = ("text", "species", "taxon", "audio")
    licence = LICENCE

    def __init__(self, name: str, birdnet: BirdNetTeacher, text: Teacher):
        super().__init__(name)
        self.birdnet = birdnet
        self.text = text

    @property
    def text_dim(self) -> int:
        return int(self.text.dim)

    @property
    def dim(self) -> int:
        return BIOPHONY_DIM + 2 * self.text_dim

    def compose(self, n: int, weights: dict[str, float] | None = None, **blocks) -> np.ndarray:
        """``compose`` in this teacher's space."""
        return compose(n, weights, self.text_dim, **blocks)

    @cached_property
    def key(self) -> str:
        parts = [LAYOUT, self.birdnet.key, self.text.modality_key("text")]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]

    @property
    def labels(self):
        return self.birdnet.labels

    @cached_property
    def species_matrix(self) -> np.ndarray:
        """(6522, 1024) BirdNET's species vectors, centred on their mean over the
        species classes, then unit. The raw rows share one large direction, so any mix
        of birds sat at a cosine near 0.45 with every species, and a migrant's arrival
        moved it by 0.02-0.06; centred, by 0.03-0.08 (docs/sound.md). A clip's logits
        change only by a constant under the shift, so audio queries stay as they are."""
        raw = self.birdnet.species_matrix
        labels = self.labels
        is_species = np.array([labels[i].is_species for i in range(len(labels))])
        return unit_rows(raw - raw[is_species].mean(axis=0))

    @cached_property
    def taxon_matrix(self) -> np.ndarray:
        """(6522, 384) the text teacher's vectors of every class's taxon phrase."""
        labels = self.labels
        phrases = [taxon_phrase(labels[i]) for i in range(len(labels))]
        return self.text.embed("text", phrases)

    def text_vectors(self, texts: Sequence[str]) -> np.ndarray:
        return self.text.embed("text", [str(t) for t in texts])

    def species_vectors(self, idx: Sequence[int] | np.ndarray) -> np.ndarray:
        """(len(idx), D) queries of the classes ``idx`` (see the module docstring)."""
        return self.compose(len(idx), biophony=self.species_matrix[np.asarray(idx, np.int64)])

    def modality_key(self, modality: str) -> str:
        key = super().modality_key(modality)
        return f"{key}|{SPECIES_QUERY}" if modality == "species" else key

    def _embed(self, modality: str, items: Sequence, progress: bool) -> np.ndarray:
        n = len(items)
        if modality == "species":
            return self.species_vectors(self.labels.indices(list(items)))
        if modality == "taxon":
            return self.compose(n, taxon=self.text_vectors(items))
        if modality == "audio":
            return self.compose(n, biophony=self.birdnet.embed("audio", items, progress))
        t = self.text_vectors(items)
        return self.compose(n, {"taxon": TEXT_TAXON_WEIGHT}, taxon=t, caption=t)
