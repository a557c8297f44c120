"""Sat2Cap on paired samples (``omnimap train sat2cap --config FILE``).

Student: CLIP's vision tower initialised from the frozen teacher + the dynamic encoder.
Targets: the teacher's embeddings of the ground photos, computed once and stored beside
the data (``CrossViewData.teacher_vectors``), or computed at every step from the photos
(``teacher_cache: false``). Samples are labelled by row: only a sample's own photo is
its positive. Augmentation: RandomResizedCrop + RandAugment, parameters drawn for the
global batch from the step's generator.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from omnimap.core.errors import InputError
from omnimap.datasets.crossview import CrossViewData, open_pairs
from omnimap.models.dynamic import dynamic_config
from omnimap.models.student import Student
from omnimap.teachers.clip import CLIPTeacher
from omnimap.teachers.registry import get_teacher
from omnimap.train import batches
from omnimap.train.augment import OverheadAugment
from omnimap.train.config import Sat2CapConfig
from omnimap.train.distributed import World, main_first
from omnimap.train.loop import Recipe


def architecture(teacher: CLIPTeacher, mean, std) -> dict:
    """A student whose overhead encoder is the teacher's vision tower (and projection)."""
    overhead = {"type": "clip_vision", "vision_config": teacher.vision_config,
                "mean": list(mean), "std": list(std)}  # fmt: skip
    return {"dim": teacher.dim, "overhead": overhead, "dynamic": dynamic_config()}


class Sat2CapRecipe(Recipe):
    config_type = Sat2CapConfig

    def __init__(self, cfg: Sat2CapConfig, data: CrossViewData | None = None):
        """``data``: already opened samples to train on instead of ``cfg.pairs``."""
        super().__init__(cfg)
        self.data = data

    def prepare(self, world: World, device: torch.device, progress: bool) -> int:
        cfg = self.cfg
        if self.data is None:
            self.data = open_pairs(cfg.pairs, imagery=cfg.imagery)
        data = self.data
        if len(data) < cfg.batch_size:
            raise InputError(
                f"{len(data)} paired samples are fewer than one batch of {cfg.batch_size}"
            )
        self.teacher: CLIPTeacher = get_teacher(cfg.teacher, "clip", cached=False)
        self.stored: torch.Tensor | None = None
        if cfg.teacher_cache:  # computed once and stored with the data; the other ranks read it
            self.stored = torch.from_numpy(
                main_first(world, lambda: data.teacher_vectors(self.teacher, progress=progress))
            )
        else:
            self.teacher.to(device)
        self.size = int(cfg.patch_size or data.patch_size)
        data.preload(self.size, cfg.preload_mb * 2**20, progress=progress)
        image_size = int(self.teacher.model.config.vision_config.image_size)
        self.augmenter = OverheadAugment(image_size, scale=cfg.crop_scale, num_ops=cfg.rand_augment_ops,
                                         magnitude=cfg.rand_augment_magnitude)  # fmt: skip
        return len(data)

    def architecture(self) -> dict:
        return architecture(self.teacher, *self._overhead_statistics())

    def _overhead_statistics(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of a seeded sample of training patches."""
        data, cfg = self.data, self.cfg
        rng = np.random.default_rng(batches.stream_seed(cfg.seed, batches.STATS))
        rows = np.sort(rng.choice(len(data), size=min(cfg.stats_samples, len(data)), replace=False))
        return batches.channel_statistics(
            data.patches(rows[s : s + batches.STATS_CHUNK], self.size)
            for s in range(0, len(rows), batches.STATS_CHUNK)
        )

    def init_student(self, student: Student) -> None:
        student.overhead.init_from_teacher(self.teacher.vision_state())
        if not self.cfg.use_dynamic:  # the ablation: m == 0 in the saved model, as in training
            nn.init.zeros_(student.dynamic.net[-1].weight)
            nn.init.zeros_(student.dynamic.net[-1].bias)

    def dropout_rates(self) -> tuple[float, float, float]:
        meta, time, overhead = super().dropout_rates()
        # Without the dynamic encoder m is dropped in every batch: its gradients are zero,
        # so its zeroed last layer stays zero.
        return (meta if self.cfg.use_dynamic else 1.0), time, overhead

    def labels(self, rows: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(rows, dtype=np.int64))

    def queue_targets(self, rows: np.ndarray) -> torch.Tensor:
        if self.stored is not None:
            return self.stored[rows]
        return torch.from_numpy(self.teacher.embed("image", self.data.photos(rows)))

    def load(self, rows: np.ndarray) -> dict:
        batch = {"patches": torch.from_numpy(self.data.patches(rows, self.size)),
                 "meta": torch.from_numpy(self.data.meta[rows])}  # fmt: skip
        if self.stored is not None:
            batch["targets"] = self.stored[rows]
        else:
            batch["photos"] = self.data.photo_pixels(self.teacher, rows)
        return batch

    def targets(self, batch: dict, device: torch.device) -> torch.Tensor:
        if "photos" in batch:
            return self.teacher.embed_pixels(batch["photos"])
        return super().targets(batch, device)

    def augment(self, gen: torch.Generator, patches: torch.Tensor, batch_size: int,
                mine: slice) -> torch.Tensor:  # fmt: skip
        return self.augmenter(patches, self.augmenter.sample(gen, batch_size, self.size)[mine])

    def checkpoint_config(self) -> dict:
        return {"teacher": self.teacher.to_config(), "imagery": self.data.imagery}
