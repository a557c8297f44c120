"""The built-in soundscape model, from scratch on a CPU (``omnimap train soundscape``).

Data: places (as the atlas samples them, outside its spatial hold-out) with a BirdNET
week (some weeks held out) and a local hour. Targets: the soundscape space
(``omnimap.teachers.soundscape``): the occurrence-weighted biophony and taxon mixes of
BirdNET's meta model there and then, without the held-out species, and the MiniLM
vector of a caption composed from the facts (``omnimap.datasets.soundscape``).
Student: the atlas's patch CNN over Blue Marble + the dynamic encoder, 1792-d out.
Samples are labelled by row (each place and week has its own target).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from omnimap.datasets.atlas.layers import GroundLayers
from omnimap.datasets.atlas.sampling import HoldOut, choose_holdout
from omnimap.datasets.soundscape import (
    PRESENT,
    WEEKS,
    SoundscapeSet,
    biophony_mix,
    build_soundscape_set,
    sample_places_and_times,
)
from omnimap.models.dynamic import HIDDEN
from omnimap.sources.bmng import BlueMarbleNative
from omnimap.teachers.birdnet import BirdNetMeta
from omnimap.teachers.registry import get_teacher
from omnimap.teachers.soundscape import SoundscapeTeacher
from omnimap.train.config import AtlasConfig
from omnimap.train.distributed import World, main_first
from omnimap.train.recipes.patches import PatchTargetRecipe

log = logging.getLogger(__name__)

DESCRIPTION = "species, sounds and words about sounds by place, week, hour (CC BY-NC-SA 4.0)"
PROBE_POINTS = 2_000  # samples whose occurrences choose the held-out species


@dataclass(kw_only=True)
class SoundscapeConfig(AtlasConfig):
    """The atlas's options, with the soundscape space as the teacher."""

    recipe: ClassVar[str] = "soundscape"

    name: str = "soundscape"
    teacher: str = "soundscape"
    samples: int = 30_000
    steps: int = 1_200
    batch_size: int = 256
    queue_size: int = 4_096
    warmup_steps: int = 100
    checkpoint_every: int = 250
    log_every: int = 25
    holdout_weeks: tuple[int, int, int, int] = (6, 18, 30, 42)  # one per season, never trained on
    holdout_species: int = 200  # species left out of every target (zero-shot from text)
    seasonal_gain: float = 2.0  # weight of a species' arrival above its yearly mean (biophony_mix)
    # Each place at this many weeks across the year, kept in one batch: the same place in
    # another season is a negative, so the student must read the date (1: one week each).
    # 2 alone left the seasons check at 16/20; with the centred species vectors, 17/20.
    weeks_per_place: int = 2

    def checks(self) -> list[tuple[bool, str]]:
        return [
            *super().checks(),
            (all(1 <= w <= WEEKS for w in self.holdout_weeks), "holdout_weeks must be within 1..48"),
            (0 <= self.holdout_species <= 2_000, "holdout_species must be within 0..2000"),
            (self.seasonal_gain >= 0, f"seasonal_gain must be at least 0, got {self.seasonal_gain}"),
            (1 <= self.weeks_per_place <= 4 and self.batch_size % self.weeks_per_place == 0,
             f"weeks_per_place must be within 1..4 and divide batch_size, got {self.weeks_per_place}"),
            # The atlas's fine-tuning options are not wired into this recipe: refused, not ignored.
            (self.init_from is None and not self.freeze_overhead and self.dynamic_hidden == HIDDEN,
             "init_from, freeze_overhead and dynamic_hidden are atlas options; the soundscape recipe trains from scratch"),
        ]  # fmt: skip


def choose_held_species(probs: np.ndarray, is_species: np.ndarray, n: int,
                        seed: int) -> np.ndarray:  # fmt: skip
    """Class indices of ``n`` species to hold out, among those present (p >= 0.1) at
    1-30% of the probe points, so each can be scored; seeded."""
    share = (probs >= PRESENT).mean(axis=0)
    pool = np.flatnonzero(is_species & (share >= 0.01) & (share <= 0.3))
    rng = np.random.default_rng([seed, 11])
    return np.sort(rng.choice(pool, size=min(n, len(pool)), replace=False))


class SoundscapeRecipe(PatchTargetRecipe):
    config_type = SoundscapeConfig

    def __init__(self, cfg: SoundscapeConfig, layers: GroundLayers | None = None,
                 meta: BirdNetMeta | None = None):  # fmt: skip
        super().__init__(cfg)
        self.layers, self.meta_model = layers, meta

    def prepare(self, world: World, device: torch.device, progress: bool) -> int:
        cfg = self.cfg
        layers = self.layers if self.layers is not None else GroundLayers()
        meta = self.meta_model if self.meta_model is not None else BirdNetMeta()
        self.teacher: SoundscapeTeacher = get_teacher(cfg.teacher, "soundscape", cached=False)
        self.holdout: HoldOut = choose_holdout(layers, cfg.holdout_fraction, seed=cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        weeks = np.setdiff1d(np.arange(1, WEEKS + 1), cfg.holdout_weeks)
        points = sample_places_and_times(layers, cfg.samples, rng, weeks=weeks,
                                         accept=lambda lon, lat: ~self.holdout.near(lon, lat),
                                         weeks_per_place=cfg.weeks_per_place)  # fmt: skip
        labels = self.teacher.labels
        is_species = np.array([labels[i].is_species for i in range(len(labels))])
        probe = slice(0, min(PROBE_POINTS, cfg.samples))
        probs = meta.occurrence(points["lon"][probe], points["lat"][probe], points["week"][probe])
        self.held_species = choose_held_species(probs, is_species, cfg.holdout_species, cfg.seed)
        keep = is_species.copy()
        keep[self.held_species] = False
        log.info("%d samples; %d species held out", cfg.samples, len(self.held_species))
        bio, tax, rich = biophony_mix(meta, points["lon"], points["lat"], points["week"],
                                      self.teacher.species_matrix, self.teacher.taxon_matrix, keep,
                                      seasonal_gain=cfg.seasonal_gain)  # fmt: skip
        self.data: SoundscapeSet = build_soundscape_set(layers, points, rich, cfg.phrasings, rng)
        log.info("%d distinct captions", len(self.data.texts))
        captions = main_first(world, lambda: self.teacher.text_vectors(self.data.texts))
        self.sample_targets = torch.from_numpy(
            self.teacher.compose(
                len(bio), biophony=bio, taxon=tax, caption=captions[self.data.caption_index]
            )
        )
        self.read_inputs(BlueMarbleNative(cfg.patch_size), self.data.lon, self.data.lat,
                         self.data.metadata())  # fmt: skip
        return len(self.data)

    def row_group(self) -> int:
        return self.cfg.weeks_per_place

    def checkpoint_config(self) -> dict:
        """What ``omnimap evaluate soundscape`` and the model card read besides the loop's."""
        labels = self.teacher.labels
        return {
            "description": DESCRIPTION,
            "teacher": self.teacher.to_config(),
            "imagery": self.imagery.to_config(),
            "holdout": self.holdout.to_json(),
            "holdout_weeks": list(self.cfg.holdout_weeks),
            "holdout_species": [labels[int(i)].scientific for i in self.held_species],
            "licence": self.teacher.licence,
            "training": {
                "distinct_captions": len(self.data.texts),
                "pseudo_truth": "BirdNET V2.4 meta model (occurrence)",
            },  # fmt: skip
        }
