"""The typed training configuration: one schema for every recipe of the one loop.

:class:`TrainConfig` holds what the loop itself uses (optimizer, schedule, queue, loss,
input dropouts, run control); each recipe subclasses it with its data options and its
defaults (:class:`AtlasConfig`, :class:`Sat2CapConfig`). A JSON object sets any subset:
unknown keys, wrong types and values that would fail later are one-line errors, raised
before any data is read. The resolved config is written into the run directory, and a
resumed run must use the same one.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import ClassVar

from omnimap.core.errors import InputError
from omnimap.models.dynamic import HIDDEN
from omnimap.models.overhead import build_overhead

PRECISIONS = ("fp32", "bf16")
RAND_AUGMENT_BINS = 31  # torchvision's magnitude bins: magnitudes 0..30
ATLAS_CYCLES = 3  # the atlas's default T_0: a third of the steps after warm-up


@dataclass(kw_only=True)
class TrainConfig:
    """Fields every recipe shares; defaults are the Sat2Cap paper's (DESIGN.md section 5)."""

    recipe: ClassVar[str] = ""  # the recipe's name (omnimap.train.recipes.RECIPES)
    paths: ClassVar[tuple[str, ...]] = ()  # fields resolved against the config file's folder

    name: str
    teacher: str  # a registry name, hub name or local directory
    steps: int = 10_000
    batch_size: int = 128  # global: split across processes under torchrun
    queue_size: int = 9_600  # a multiple of batch_size
    lr: float = 5e-5
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    weight_decay: float = 0.2  # not on biases, gains and the temperature
    warmup_steps: int = 0  # linear warm-up to lr, then the cosine
    restart_period: int | None = None  # T_0 of the cosine with warm restarts; None: the recipe's
    restart_mult: int = 1  # T_mult: each cycle this many times the last
    min_lr: float = 0.0  # eta_min, the cosine's floor
    init_temperature: float = 0.07
    meta_dropout: float = 0.3  # per global batch: the dynamic embedding m is zeroed
    time_dropout: float = 0.0  # per sample: the 8 time inputs are zeroed (time unknown)
    overhead_dropout: float = 0.0  # per sample, in batches that keep m: o is zeroed
    precision: str = "fp32"  # "bf16": autocast
    device: str = "auto"  # "auto": cuda if available (the local rank's), else cpu
    seed: int = 0
    checkpoint_every: int = 1_000
    log_every: int = 10

    @classmethod
    def from_dict(cls, data: dict, base_dir: str | Path | None = None) -> TrainConfig:
        """Check keys and types, then ``validate``; relative ``paths`` fields are resolved
        against ``base_dir`` (the config file's folder)."""
        if not isinstance(data, dict):
            raise InputError("a training config must be a JSON object")
        hints = typing.get_type_hints(cls)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(
                f"unknown training option(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        required = [f for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [f for f in required if f.name not in data]
        if missing:
            needs = ", ".join(f"{f.name!r} ({f.metadata.get('help', f.name)})" for f in missing)
            raise InputError(f"the {cls.recipe} training config needs {needs}")
        values = {k: _coerce(k, v, hints[k]) for k, v in data.items()}
        for name in cls.paths:
            if base_dir is not None and not Path(values[name]).is_absolute():
                values[name] = str(Path(base_dir) / values[name])
        cfg = cls(**values)
        cfg.validate()
        return cfg

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read training config {path}: {exc}") from None
        return cls.from_dict(data, base_dir=path.resolve().parent)

    def to_json(self) -> dict:
        return asdict(self)

    def first_restart_period(self) -> int:
        """T_0: ``restart_period``, else one cosine over the steps after warm-up."""
        return self.restart_period or max(1, self.steps - self.warmup_steps)

    def checks(self) -> list[tuple[bool, str]]:
        """(condition, message) pairs; a recipe adds its own."""
        b = self.betas
        return [
            (self.steps >= 1 and self.batch_size >= 1, "steps and batch_size must be at least 1"),
            (self.queue_size >= 0 and self.queue_size % self.batch_size == 0,
             f"queue_size {self.queue_size} must be a multiple of the global batch_size {self.batch_size}"),
            (self.lr > 0 and self.eps > 0 and self.weight_decay >= 0, "lr and eps must be > 0, weight_decay >= 0"),
            (0.0 <= self.min_lr <= self.lr, f"min_lr must be within 0..lr ({self.lr}), got {self.min_lr}"),
            (0.0 <= b[0] < 1.0 and 0.0 <= b[1] < 1.0, f"betas must be within [0, 1), got {list(b)}"),
            (self.warmup_steps >= 0, "warmup_steps must be at least 0"),
            (self.restart_period is None or self.restart_period >= 1, "restart_period must be at least 1"),
            (self.restart_mult >= 1, "restart_mult must be at least 1"),
            (self.init_temperature > 0, "init_temperature must be positive"),
            *[(0.0 <= getattr(self, k) <= 1.0, f"{k} must be within 0..1, got {getattr(self, k)}")
              for k in ("meta_dropout", "time_dropout", "overhead_dropout")],
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"),
            (self.checkpoint_every >= 1 and self.log_every >= 1, "checkpoint_every and log_every must be at least 1"),
            (bool(self.name) and bool(self.teacher), "name and teacher must not be empty"),
        ]  # fmt: skip

    def validate(self) -> None:
        for ok, message in self.checks():
            if not ok:
                raise InputError(message)
        _check_device(self.device)


@dataclass(kw_only=True)
class AtlasConfig(TrainConfig):
    """The built-in world atlas: MiniLM over descriptions of the ground, a patch CNN over
    Blue Marble, trained from scratch on a CPU."""

    recipe: ClassVar[str] = "atlas"

    name: str = "atlas"
    teacher: str = "minilm"
    samples: int = 300_000
    steps: int = 9_000
    batch_size: int = 512
    queue_size: int = 8_192
    lr: float = 1e-3  # from scratch; the paper's 5e-5 is for fine-tuning CLIP
    warmup_steps: int = 200
    restart_mult: int = 2
    min_lr: float = 1e-5
    time_dropout: float = 0.3
    overhead_dropout: float = 0.1
    checkpoint_every: int = 500
    log_every: int = 50
    patch_size: int = 16  # Blue Marble pixels per overhead patch
    jitter: int = 1  # random shift of the patch, in pixels
    phrasings: int = 3  # wordings per fact set
    holdout_fraction: float = 0.12  # share of the land held out in whole blocks
    climate_inputs: bool = True  # climate normals and elevation as dynamic inputs
    # Fine-tuning: a model (directory or built-in name) of the same teacher to start
    # from; its dynamic encoder grows to this run's inputs and width with its function
    # kept (``DynamicEncoder.start_from``). None: from scratch.
    init_from: str | None = None
    freeze_overhead: bool = False  # keep the overhead encoder as it starts (with init_from)
    dynamic_hidden: int = HIDDEN  # the dynamic encoder's hidden width
    # With init_from: on samples whose time input is dropped, this weight times
    # 1 - cos(the time-free output, the starting model's time-free output), so the
    # fine-tuned map of what a place is stays where the start had it (0: off).
    anchor_weight: float = 0.0
    # Losses on one clause alone, each times its weight: the student's output against
    # each sample's rain (or snowfall), warmth or season phrase, the batch's phrases
    # of other codes its negatives. One clause of twelve in the description target is
    # too faint for the student to follow rain (candidates 8-10 in
    # docs/atlas-climate-candidate.md); a rain loss alone then pulls from warmth.
    rain_loss_weight: float = 0.0
    warmth_loss_weight: float = 0.0
    season_loss_weight: float = 0.0
    clause_loss_temperature: float = 0.05

    def clause_loss_weights(self) -> dict[str, float]:
        """The clause losses that are on, by clause kind."""
        weights = {"rain": self.rain_loss_weight, "warmth": self.warmth_loss_weight,
                   "season": self.season_loss_weight}  # fmt: skip
        return {kind: w for kind, w in weights.items() if w > 0}

    def first_restart_period(self) -> int:
        return self.restart_period or max(1, (self.steps - self.warmup_steps) // ATLAS_CYCLES)

    def checks(self) -> list[tuple[bool, str]]:
        return [
            *super().checks(),
            (self.samples >= self.batch_size, f"samples {self.samples} must be at least batch_size {self.batch_size}"),
            (self.samples >= self.queue_size,
             f"samples {self.samples} must be at least queue_size {self.queue_size} (the queue starts full "
             "of distinct samples): raise samples or lower queue_size"),
            (self.jitter >= 0 and self.phrasings >= 1, "jitter must be at least 0 and phrasings at least 1"),
            (0.0 <= self.holdout_fraction < 1.0, f"holdout_fraction must be within [0, 1), got {self.holdout_fraction}"),
            (self.dynamic_hidden >= 1, f"dynamic_hidden must be at least 1, got {self.dynamic_hidden}"),
            (self.init_from is not None or not self.freeze_overhead,
             "freeze_overhead needs init_from (a trained model to keep the overhead encoder of)"),
            (self.anchor_weight >= 0, f"anchor_weight must be at least 0, got {self.anchor_weight}"),
            (self.init_from is not None or self.anchor_weight == 0,
             "anchor_weight needs init_from (a trained model whose time-free output to keep)"),
            (min(self.rain_loss_weight, self.warmth_loss_weight, self.season_loss_weight) >= 0,
             "rain_loss_weight, warmth_loss_weight and season_loss_weight must be at least 0"),
            (self.clause_loss_temperature > 0,
             f"clause_loss_temperature must be above 0, got {self.clause_loss_temperature}"),
        ]  # fmt: skip

    def validate(self) -> None:
        super().validate()
        try:  # the encoder's own check of the patch size, before hours of data building
            build_overhead({"type": "patch_cnn", "patch_size": self.patch_size}, dim=1)
        except ValueError as exc:
            raise InputError(str(exc)) from None


@dataclass(kw_only=True)
class Sat2CapConfig(TrainConfig):
    """Sat2Cap on geotagged photos: CLIP's image tower embeds the photos, the student
    (CLIP's vision tower + the dynamic encoder) sees the overhead patch, place and time."""

    recipe: ClassVar[str] = "sat2cap"
    paths: ClassVar[tuple[str, ...]] = ("pairs",)

    pairs: str = field(metadata={"help": "the paired-sample table or shard folder to train on"})
    name: str = "sat2cap"
    teacher: str = "openai/clip-vit-base-patch32"
    imagery: dict | None = None  # an imagery source config; None: the one the pairs were built with
    patch_size: int | None = None  # source pixels per overhead patch; None: the source's own
    use_dynamic: bool = True  # False: the "no dynamic encoder" ablation
    crop_scale: tuple[float, float] = (0.08, 1.0)
    rand_augment_ops: int = 2
    rand_augment_magnitude: int = 9
    stats_samples: int = 2_000  # overhead patches for the normalisation statistics
    preload_mb: int = 2_048  # keep all overhead patches in memory if they fit in this
    teacher_cache: bool = True  # False: run the teacher on the photos at every step

    def checks(self) -> list[tuple[bool, str]]:
        return [
            *super().checks(),
            (0.0 < self.crop_scale[0] <= self.crop_scale[1] <= 1.0,
             f"crop_scale must be 0 < low <= high <= 1, got {list(self.crop_scale)}"),
            (self.rand_augment_ops >= 0, "rand_augment_ops must be at least 0"),
            (0 <= self.rand_augment_magnitude < RAND_AUGMENT_BINS,
             f"rand_augment_magnitude must be within 0..{RAND_AUGMENT_BINS - 1}"),
            (self.stats_samples >= 1 and self.preload_mb >= 0, "stats_samples must be >= 1, preload_mb >= 0"),
            (self.patch_size is None or self.patch_size >= 1, "patch_size must be at least 1"),
        ]  # fmt: skip


def _check_device(device: str) -> None:
    if device == "auto":
        return
    import torch

    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise InputError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}"
        ) from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} asked for, but CUDA is not available here")


def _coerce(name: str, value, hint):
    """``value`` checked against a field's type (JSON gives lists for tuples, ints for floats)."""
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in allowed:
            return None
        raise InputError(f"training option {name!r} must not be null")
    for t in allowed:
        origin = typing.get_origin(t)
        if origin is tuple and isinstance(value, list | tuple):
            inner = typing.get_args(t)
            if len(value) == len(inner) and all(
                _is(v, i) for v, i in zip(value, inner, strict=True)
            ):
                return tuple(
                    float(v) if i is float else v for v, i in zip(value, inner, strict=True)
                )
        elif origin is None and t is not type(None) and _is(value, t):
            return float(value) if t is float else value
    expected = " or ".join(_type_name(t) for t in allowed)
    raise InputError(f"training option {name!r} must be {expected}, got {json.dumps(value)}")


def _is(value, t) -> bool:
    if t is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if t is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, t)


def _type_name(t) -> str:
    if typing.get_origin(t) is tuple:
        return f"a list of {len(typing.get_args(t))} numbers"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "an object",
            type(None): "null"}.get(t, str(t))  # fmt: skip
