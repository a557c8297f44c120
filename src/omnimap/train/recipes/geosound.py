"""Sound maps from real recordings (``omnimap train geosound --config FILE``).

Data: a table of geotagged clips (``omnimap.datasets.geosound``: the GeoSound /
SoundingEarth layout) and the overhead patch of each place from an imagery source
(default: the Blue Marble the built-in models use). Teacher: CLAP (a hub name such as
laion/clap-htsat-unfused, or a local directory): each clip's audio embedding, computed
once through the embedding store; where a row has a caption, its CLAP text embedding
is mixed in (``caption_weight``), so overhead, audio and text are tied in CLAP's one
audio-text space. Student: the patch CNN + the dynamic encoder (hour and month as
inputs, zero when a clip's time is unknown). Samples are labelled by row.

``loss``: "mixed" (the default) is one InfoNCE against the mixed audio/caption target
with one temperature; "per_pair" is GeoCLAP's: one InfoNCE per modality pair,
overhead-audio on every clip and overhead-text on the clips with a caption, each with
its own learnable temperature and queue, summed (``caption_weight`` is then unused).
No audio-text pair: both sides are the frozen CLAP, so it would train only its own
temperature.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from omnimap.core.errors import InputError
from omnimap.datasets.geosound import clap_targets, clap_vectors, open_audio_pairs
from omnimap.sources.bmng import BlueMarbleNative
from omnimap.sources.config import source_from_config
from omnimap.teachers.registry import get_teacher
from omnimap.train.config import TrainConfig
from omnimap.train.distributed import World, main_first
from omnimap.train.recipes.patches import PatchTargetRecipe

LOSSES = ("mixed", "per_pair")
PAIRS = ("overhead|audio", "overhead|text")  # "per_pair": the student against each


@dataclass(kw_only=True)
class GeoSoundConfig(TrainConfig):
    recipe: ClassVar[str] = "geosound"
    paths: ClassVar[tuple[str, ...]] = ("pairs",)

    pairs: str = field(metadata={"help": "the audio pairs table (CSV or Parquet)"})
    name: str = "geosound"
    teacher: str = "laion/clap-htsat-unfused"
    imagery: dict | None = None  # an imagery source config; None: Blue Marble
    patch_size: int = 16
    jitter: int = 1
    caption_weight: float = 0.5  # of a row's caption vector against its audio vector ("mixed")
    loss: str = "mixed"  # or "per_pair": GeoCLAP's per-pair temperatures (module docstring)
    lr: float = 1e-3  # the student is trained from scratch
    queue_size: int = 1_024
    batch_size: int = 64

    def checks(self) -> list[tuple[bool, str]]:
        return [
            *super().checks(),
            (self.patch_size >= 4 and self.jitter >= 0, "patch_size must be >= 4, jitter >= 0"),
            (0.0 <= self.caption_weight <= 1.0, "caption_weight must be within 0..1"),
            (self.loss in LOSSES, f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}"),
        ]  # fmt: skip


class GeoSoundRecipe(PatchTargetRecipe):
    config_type = GeoSoundConfig

    def prepare(self, world: World, device: torch.device, progress: bool) -> int:
        cfg = self.cfg
        self.data = open_audio_pairs(cfg.pairs)
        if len(self.data) < cfg.batch_size:
            raise InputError(f"{len(self.data)} clips are fewer than one batch of {cfg.batch_size}")
        self.teacher = get_teacher(cfg.teacher, "clap")
        if cfg.loss == "per_pair":
            audio, text, has = main_first(world, lambda: clap_vectors(self.teacher, self.data, progress))
            self.sample_targets = torch.from_numpy(audio)
            self.pairs = {PAIRS[0]: (torch.from_numpy(audio), torch.ones(len(audio), dtype=torch.bool)),
                          PAIRS[1]: (torch.from_numpy(text), torch.from_numpy(has))}  # fmt: skip
        else:
            self.sample_targets = torch.from_numpy(
                main_first(
                    world, lambda: clap_targets(self.teacher, self.data, cfg.caption_weight, progress)
                )
            )
        imagery = source_from_config(cfg.imagery) if cfg.imagery else BlueMarbleNative(cfg.patch_size)
        self.read_inputs(imagery, self.data.lon, self.data.lat, self.data.metadata())
        return len(self.data)

    def target_pairs(self) -> tuple[str, ...]:
        return PAIRS if self.cfg.loss == "per_pair" else ()

    def pair_targets(self, rows: np.ndarray) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return {name: (vectors[rows], valid[rows]) for name, (vectors, valid) in self.pairs.items()}

    def load(self, rows: np.ndarray) -> dict:
        batch = super().load(rows)
        if self.cfg.loss == "per_pair":
            batch["pairs"] = self.pair_targets(rows)
        return batch

    def checkpoint_config(self) -> dict:
        return {"teacher": self.teacher.to_config(), "imagery": self.imagery.to_config(),
                "training": {"clips": len(self.data), "caption_weight": self.cfg.caption_weight,
                             "loss": self.cfg.loss,
                             "captions": sum(c is not None for c in self.data.caption)}}  # fmt: skip
