"""Sound maps from real recordings (``omnimap train geosound --config FILE``).

Data: a table of geotagged clips (``omnimap.datasets.geosound``: the GeoSound /
SoundingEarth layout) and the overhead patch of each place from an imagery source
(default: the Blue Marble the built-in models use). Teacher: CLAP (a hub name such as
laion/clap-htsat-unfused, or a local directory): each clip's audio embedding, computed
once through the embedding store; where a row has a caption, its CLAP text embedding
is mixed in (``caption_weight``), so overhead, audio and text are tied in CLAP's one
audio-text space. Student: the patch CNN + the dynamic encoder (hour and month as
inputs, zero when a clip's time is unknown). Samples are labelled by row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from omnimap.core.errors import InputError
from omnimap.datasets.geosound import clap_targets, open_audio_pairs
from omnimap.sources.bmng import BlueMarbleNative
from omnimap.sources.config import source_from_config
from omnimap.teachers.registry import get_teacher
from omnimap.train.config import TrainConfig
from omnimap.train.distributed import World, main_first
from omnimap.train.recipes.patches import PatchTargetRecipe


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
    caption_weight: float = 0.5  # of a row's caption vector against its audio vector
    lr: float = 1e-3  # the student is trained from scratch
    queue_size: int = 1_024
    batch_size: int = 64

    def checks(self) -> list[tuple[bool, str]]:
        return [
            *super().checks(),
            (self.patch_size >= 4 and self.jitter >= 0, "patch_size must be >= 4, jitter >= 0"),
            (0.0 <= self.caption_weight <= 1.0, "caption_weight must be within 0..1"),
        ]  # fmt: skip


class GeoSoundRecipe(PatchTargetRecipe):
    config_type = GeoSoundConfig

    def prepare(self, world: World, device: torch.device, progress: bool) -> int:
        cfg = self.cfg
        self.data = open_audio_pairs(cfg.pairs)
        if len(self.data) < cfg.batch_size:
            raise InputError(f"{len(self.data)} clips are fewer than one batch of {cfg.batch_size}")
        self.teacher = get_teacher(cfg.teacher, "clap")
        self.sample_targets = torch.from_numpy(
            main_first(
                world, lambda: clap_targets(self.teacher, self.data, cfg.caption_weight, progress)
            )
        )
        imagery = source_from_config(cfg.imagery) if cfg.imagery else BlueMarbleNative(cfg.patch_size)
        self.read_inputs(imagery, self.data.lon, self.data.lat, self.data.metadata())
        return len(self.data)

    def checkpoint_config(self) -> dict:
        return {"teacher": self.teacher.to_config(), "imagery": self.imagery.to_config(),
                "training": {"clips": len(self.data), "caption_weight": self.cfg.caption_weight,
                             "captions": sum(c is not None for c in self.data.caption)}}  # fmt: skip
