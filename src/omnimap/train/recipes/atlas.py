"""The built-in world atlas, from scratch on a CPU (the Sat2Cap recipe, small).

    omnimap train atlas --out runs/atlas

Data: places and local times sampled over the world outside a spatial hold-out, the
facts of the ground there and then (``omnimap.datasets.atlas``), described in words.
Teacher: MiniLM over the descriptions, through the embedding store (each distinct
sentence embedded once, ever); a description is a scene sentence and a moment
sentence (time, season, weather), and its target is the normalised sum of their
embeddings; a sample whose time input is dropped learns the scene sentence alone.
Climate normals and elevation are also inputs of the dynamic encoder. Student: a patch CNN over the Blue Marble patch + the
dynamic encoder. Samples with the same description or the same facts are not
negatives of each other. Optional losses on one clause alone (rain, warmth, season:
each sample's output against its own phrase among the batch's) make the student follow
what one clause of twelve says; each rank scores its own rows. Augmentation: a random shift of the patch by up to ``jitter``
pixels, per sample.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from omnimap.core.errors import InputError
from omnimap.core.fileio import write_text_atomic
from omnimap.datasets.atlas.dataset import AtlasSet, build_set
from omnimap.datasets.atlas.layers import GroundLayers
from omnimap.datasets.atlas.sampling import HoldOut, choose_holdout
from omnimap.models.checkpoint import load_checkpoint, read_config
from omnimap.models.dynamic import dynamic_config
from omnimap.models.embedder import Embedder
from omnimap.models.student import Student
from omnimap.sources.bmng import BlueMarbleNative
from omnimap.teachers.base import Teacher
from omnimap.teachers.registry import get_teacher
from omnimap.train.config import AtlasConfig
from omnimap.train.distributed import World, main_first
from omnimap.train.losses import queue_infonce
from omnimap.train.recipes.patches import PatchRecipe

log = logging.getLogger(__name__)

EXAMPLES_FILE, N_EXAMPLES = "examples.json", 40  # descriptions shown beside the model


class AtlasRecipe(PatchRecipe):
    config_type = AtlasConfig
    label_columns = 2  # (description id, facts id)

    def __init__(self, cfg: AtlasConfig, layers: GroundLayers | None = None):
        """``layers``: already loaded ground layers to reuse (they take seconds to read)."""
        super().__init__(cfg)
        self.layers = layers

    def prepare(self, world: World, device: torch.device, progress: bool) -> int:
        cfg = self.cfg
        layers = self.layers if self.layers is not None else GroundLayers()
        self.holdout: HoldOut = choose_holdout(layers, cfg.holdout_fraction, seed=cfg.seed)
        log.info("hold-out: %d blocks of %g deg", len(self.holdout.blocks), self.holdout.block_deg)
        self.data: AtlasSet = build_set(layers, cfg.samples, seed=cfg.seed, variants=cfg.phrasings,
                                        accept=lambda lon, lat: ~self.holdout.near(lon, lat))  # fmt: skip
        log.info("%d samples, %d distinct descriptions", len(self.data), len(self.data.texts))
        self.teacher: Teacher = get_teacher(cfg.teacher)
        vectors = main_first(world, lambda: self.data.target_vectors(self.teacher, progress))
        self.text_vectors = torch.from_numpy(vectors)
        # With the time input dropped, the target is the scene sentence alone: the model
        # then learns what a place is, not a blur of its hours and weathers.
        self.scene_vectors = torch.from_numpy(
            main_first(world, lambda: self.data.scene_vectors(self.teacher))
        )
        self.read_inputs(BlueMarbleNative(cfg.patch_size), self.data.lon, self.data.lat,
                         self.data.metadata(cfg.climate_inputs))  # fmt: skip
        self.text_index = torch.from_numpy(self.data.text_index.astype(np.int64))
        # The description id and the facts id: samples agreeing on either mean the same.
        _, fact_ids = np.unique(self.data.facts.matrix(), axis=0, return_inverse=True)
        self.label_table = torch.stack([self.text_index, torch.from_numpy(fact_ids.ravel())], dim=1)
        self.anchors = self._start_time_free() if cfg.anchor_weight > 0 else None
        self.clauses: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for kind in cfg.clause_loss_weights():
            vectors, codes = main_first(world, lambda k=kind: self.data.clause_vectors(self.teacher, k))
            self.clauses[kind] = (torch.from_numpy(vectors), torch.from_numpy(codes))
        return len(self.data)

    def _start_time_free(self) -> torch.Tensor:
        """(N, D) float16 time-free embeddings of the training samples by the init_from
        model (its own inputs; the centre of each patch, unshifted)."""
        start = Embedder(load_checkpoint(self.cfg.init_from))
        j, size = self.cfg.jitter, self.cfg.patch_size
        lon, lat = self.data.lon.astype(np.float64), self.data.lat.astype(np.float64)
        patches = self.patches[:, :, j : j + size, j : j + size].contiguous().numpy()
        vectors = start.samples(patches, start.metadata(lon, lat, None))
        log.info("time-free anchors of %s for %d samples", self.cfg.init_from, len(vectors))
        return torch.from_numpy(vectors.astype(np.float16))

    def dynamic(self) -> dict:
        return dynamic_config(hidden=self.cfg.dynamic_hidden, climate=self.cfg.climate_inputs)

    def architecture(self) -> dict:
        if self.cfg.init_from is None:
            return super().architecture()
        base = read_config(self.cfg.init_from)
        if base.get("teacher", {}).get("key") != self.teacher.key:
            raise InputError(
                f"init_from {self.cfg.init_from!r} was trained against another teacher "
                f"({base.get('teacher', {}).get('name')!r}, not {self.cfg.teacher!r}): its space differs"
            )
        # The starting model's overhead encoder (its input statistics included).
        return {"dim": self.teacher.dim, "overhead": base["overhead"], "dynamic": self.dynamic()}

    def init_student(self, student: Student) -> None:
        if self.cfg.init_from is None:
            return
        start = load_checkpoint(self.cfg.init_from).student
        student.overhead.load_state_dict(start.overhead.state_dict())
        try:
            student.dynamic.start_from(start.dynamic)
        except ValueError as exc:
            raise InputError(f"init_from {self.cfg.init_from!r}: {exc}") from None
        log.info("starting from %s", self.cfg.init_from)

    def frozen(self, student: Student) -> list[torch.nn.Module]:
        return [student.overhead] if self.cfg.freeze_overhead else []

    def labels(self, rows: np.ndarray) -> torch.Tensor:
        return self.label_table[rows]

    def queue_targets(self, rows: np.ndarray) -> torch.Tensor:
        return self.text_vectors[self.text_index[rows]]

    def load(self, rows: np.ndarray) -> dict:
        out = {"patches": self.patches[rows], "meta": self.meta[rows],
               "targets": self.queue_targets(rows),
               "time_free_targets": self.scene_vectors[self.text_index[rows]]}  # fmt: skip
        if self.anchors is not None:
            out["anchors"] = self.anchors[rows]
        texts = self.text_index[rows]
        for kind, (vectors, codes) in self.clauses.items():
            out[f"{kind}_clauses"], out[f"{kind}_codes"] = vectors[texts], codes[texts]
        return out

    def extra_loss(self, s: torch.Tensor, heads: dict, batch: dict,
                   device: torch.device) -> torch.Tensor | None:  # fmt: skip
        """The anchor term and the clause terms, where configured (None: none)."""
        drop = batch["dropouts"]
        if drop.meta:  # neither place nor time: nothing to anchor, no weather to know
            return None
        terms = [self._anchor_loss(s, batch, drop, device)]
        terms += [self._clause_loss(kind, w, s, batch, drop, device)
                  for kind, w in self.cfg.clause_loss_weights().items()]  # fmt: skip
        terms = [t for t in terms if t is not None]
        return sum(terms) if terms else None

    def _anchor_loss(self, s, batch, drop, device) -> torch.Tensor | None:
        """``anchor_weight`` x mean (1 - cos) to the start's time-free output, over the
        samples that are time-free here (time dropped; imagery and location kept)."""
        if self.anchors is None:
            return None
        rows = torch.from_numpy(drop.time & ~drop.overhead).to(device)
        if not bool(rows.any()):
            return None
        anchors = batch["anchors"].to(device, torch.float32)[rows]
        distance = 1.0 - torch.nn.functional.cosine_similarity(s[rows], anchors, dim=1)
        return self.cfg.anchor_weight * distance.mean()

    def _clause_loss(self, kind: str, weight: float, s, batch, drop, device) -> torch.Tensor | None:
        """``weight`` x the cross-entropy of each timed sample's output against its own
        ``kind`` clause among the batch's, at ``clause_loss_temperature``; clauses
        saying the same code are not negatives."""
        codes = batch[f"{kind}_codes"].to(device)
        rows = torch.from_numpy(~drop.time).to(device) & (codes >= 0)
        if int(rows.sum()) < 2:
            return None
        scale = torch.tensor(1.0 / self.cfg.clause_loss_temperature, device=device)
        loss = queue_infonce(s[rows], batch[f"{kind}_clauses"].to(device)[rows], codes[rows], scale)
        return weight * loss

    def time_free_targets(self, batch: dict, device: torch.device) -> torch.Tensor:
        return batch["time_free_targets"].to(device)

    def checkpoint_config(self) -> dict:
        """What ``omnimap evaluate atlas`` and the model card read besides the loop's."""
        return {
            "teacher": self.teacher.to_config(),
            "imagery": self.imagery.to_config(),
            "holdout": self.holdout.to_json(),
            "training": {"distinct_descriptions": len(self.data.texts),
                         "distinct_sentences": len(self.data.parts)},  # fmt: skip
        }

    def write_files(self, run_dir: Path) -> None:
        examples = [self.data.texts[i] for i in self.data.text_index[:N_EXAMPLES]]
        write_text_atomic(Path(run_dir) / EXAMPLES_FILE, json.dumps(examples, indent=1) + "\n")
