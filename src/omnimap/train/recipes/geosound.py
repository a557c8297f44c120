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

Opt-in options (docs/sound.md), each a head of the saved student:

- ``use_source`` (PSM): the table's ``source`` column is an input, a learned vector per
  source added to the dynamic embedding; a sample's source is "unknown" with
  probability ``source_dropout`` (default ``meta_dropout``), as it is on maps.
- ``probabilistic`` (PSM): a variance head gives log sigma^2 (``variance``: "scalar" or
  "diagonal") of a Gaussian around the unit embedding; the contrastive loss is the
  mean over ``samples`` reparameterised draws normalize(s + sigma * eps), plus
  ``kl_weight`` x the KL divergence of N(s, sigma^2) from N(s, 1/D) per dimension,
  which keeps sigma from collapsing to 0 or growing without bound.
- ``codebook`` K (Sat2Sound): K learnable concept vectors in the teacher space,
  started at K clips' targets; the student's embedding softly assigned over them
  (softmax of cosines / ``codebook_temperature``) must rebuild the clip's target
  (1 - cosine), and the batch's mean assignment is kept from collapsing onto a few
  concepts (log K - its entropy); both x ``codebook_weight``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from omnimap.core.errors import InputError
from omnimap.datasets.geosound import clap_targets, clap_vectors, open_audio_pairs
from omnimap.models.heads import prior_log_variance, source_key
from omnimap.models.student import Student
from omnimap.sources.bmng import BlueMarbleNative
from omnimap.sources.config import source_from_config
from omnimap.teachers.registry import get_teacher
from omnimap.train import batches
from omnimap.train.config import TrainConfig
from omnimap.train.distributed import World, main_first
from omnimap.train.recipes.patches import PatchTargetRecipe

LOSSES = ("mixed", "per_pair")
PAIRS = ("overhead|audio", "overhead|text")  # "per_pair": the student against each
VARIANCES = ("scalar", "diagonal")
MAX_SAMPLES = 64
MAX_CONCEPTS = 4_096
MAX_SOURCES = 64  # more distinct values are ids, not recording sources


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
    use_source: bool = field(default=False, metadata={"help": "the table's source column as an input (PSM)"})
    source_dropout: float | None = field(default=None, metadata={"help": "P(a sample's source is unknown); None: meta_dropout"})
    probabilistic: bool = field(default=False, metadata={"help": "a variance head and a sampled InfoNCE (PSM)"})
    variance: str = field(default="scalar", metadata={"help": "the variance head: scalar or diagonal"})
    samples: int = field(default=8, metadata={"help": "reparameterised draws per step (probabilistic)"})
    kl_weight: float = field(default=0.01, metadata={"help": "weight of the variance's KL term (probabilistic)"})
    codebook: int = field(default=0, metadata={"help": "K soundscape concepts (Sat2Sound); 0: none"})
    codebook_weight: float = field(default=0.5, metadata={"help": "weight of the codebook's losses"})
    codebook_temperature: float = field(default=0.1, metadata={"help": "softmax temperature of the assignments"})

    def checks(self) -> list[tuple[bool, str]]:
        return [
            *super().checks(),
            (self.patch_size >= 4 and self.jitter >= 0, "patch_size must be >= 4, jitter >= 0"),
            (0.0 <= self.caption_weight <= 1.0, "caption_weight must be within 0..1"),
            (self.loss in LOSSES, f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}"),
            (self.source_dropout is None or 0.0 <= self.source_dropout <= 1.0,
             f"source_dropout must be within 0..1 (or null: meta_dropout), got {self.source_dropout}"),
            (self.variance in VARIANCES, f"variance must be one of {', '.join(VARIANCES)}, got {self.variance!r}"),
            (1 <= self.samples <= MAX_SAMPLES, f"samples must be within 1..{MAX_SAMPLES}, got {self.samples}"),
            (self.kl_weight >= 0, f"kl_weight must be at least 0, got {self.kl_weight}"),
            (self.codebook == 0 or 2 <= self.codebook <= MAX_CONCEPTS,
             f"codebook must be 0 (none) or within 2..{MAX_CONCEPTS} concepts, got {self.codebook}"),
            (self.codebook_weight > 0 and self.codebook_temperature > 0,
             "codebook_weight and codebook_temperature must be positive"),
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
        if cfg.codebook > len(self.data):
            raise InputError(f"codebook of {cfg.codebook} concepts needs at least as many clips, got {len(self.data)}")
        meta = self.data.metadata()
        if cfg.use_source:
            self.source_names = known_sources(self.data.source)
            known = {n: i + 1 for i, n in enumerate(self.source_names)}  # 0: unknown
            index = np.array([known.get(source_key(x), 0) for x in self.data.source], np.float32)
            meta = np.concatenate([meta, index[:, None]], axis=1)  # after the encoder's inputs
        imagery = source_from_config(cfg.imagery) if cfg.imagery else BlueMarbleNative(cfg.patch_size)
        self.read_inputs(imagery, self.data.lon, self.data.lat, meta)
        return len(self.data)

    def architecture(self) -> dict:
        cfg, arch = self.cfg, super().architecture()
        if cfg.use_source:
            dropout = cfg.meta_dropout if cfg.source_dropout is None else cfg.source_dropout
            arch["sources"] = {"names": list(self.source_names), "dropout": dropout}
        if cfg.probabilistic:
            arch["variance"] = {"dims": cfg.variance}
        if cfg.codebook:
            arch["codebook"] = {"size": cfg.codebook, "temperature": cfg.codebook_temperature}
        return arch

    def init_student(self, student: Student) -> None:
        if student.codebook is not None:  # concepts start at seeded clips' targets
            rng = np.random.default_rng(batches.stream_seed(self.cfg.seed, batches.STATS))
            rows = np.sort(rng.choice(len(self.data), size=self.cfg.codebook, replace=False))
            with torch.no_grad():
                student.codebook.concepts.copy_(self.sample_targets[rows])

    def embedding_samples(self, s: torch.Tensor, heads: dict) -> list[torch.Tensor]:
        if "log_variance" not in heads:
            return [s]
        sigma = (0.5 * heads["log_variance"]).exp()
        # torch's RNG is seeded per step by the loop: a resumed run draws the same eps
        return [F.normalize(s + sigma * torch.randn_like(s), dim=-1) for _ in range(self.cfg.samples)]

    def extra_loss(self, s: torch.Tensor, heads: dict, batch: dict,
                   device: torch.device) -> torch.Tensor | None:  # fmt: skip
        cfg, terms = self.cfg, []
        if "log_variance" in heads:
            terms.append(cfg.kl_weight * variance_kl(heads["log_variance"], s.shape[1]))
        if "assign" in heads:
            target = batch["pairs"][PAIRS[0]][0].to(device) if cfg.loss == "per_pair" else self.targets(batch, device)
            rebuilt, usage = codebook_losses(heads["assign"], heads["reconstruction"], target)
            terms.append(cfg.codebook_weight * (rebuilt + usage))
        return sum(terms[1:], terms[0]) if terms else None

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


def known_sources(values: list[str]) -> list[str]:
    """The distinct sources of a table (trimmed, lower case), sorted."""
    names = sorted({source_key(v) for v in values} - {""})
    if not names:
        raise InputError("use_source needs a pairs table whose source column has values")
    if len(names) > MAX_SOURCES:
        raise InputError(f"the source column has {len(names)} distinct values; use_source takes at most {MAX_SOURCES}")
    return names


def variance_kl(log_variance: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean over rows and dimensions of KL(N(mu, sigma^2) || N(mu, 1/D)) per dimension:
    0.5 (r - 1 - log r), r = sigma^2 D; zero at r = 1, growing as sigma^2 -> 0 or oo."""
    log_r = log_variance - prior_log_variance(dim)
    return 0.5 * (log_r.exp() - 1.0 - log_r).mean()


def codebook_losses(assign: torch.Tensor, rebuilt: torch.Tensor,
                    target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """(mean 1 - cos(rebuilt, target), log K - entropy of the mean assignment)."""
    reconstruction = (1.0 - (rebuilt * target).sum(-1)).mean()
    mean = assign.mean(0)
    usage = math.log(assign.shape[1]) + (mean * mean.clamp_min(1e-12).log()).sum()
    return reconstruction, usage
