"""The typed training configuration of ``omnimap train --config FILE``.

Defaults are the Sat2Cap recipe (DESIGN.md section 5). A JSON file sets any subset;
unknown keys and wrongly typed values are one-line errors. The resolved config is
written into the run directory, and a resumed run must use the same one.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from omnimap.errors import InputError

PRECISIONS = ("fp32", "bf16")


@dataclass
class TrainConfig:
    pairs: str  # a pairs table (.parquet) or a shard folder (omnimap.pairs)
    teacher: str = "openai/clip-vit-base-patch32"  # hub name or local directory
    imagery: dict | None = None  # an imagery source config; None: the one the pairs were built with
    name: str = "sat2cap"
    patch_size: int | None = None  # source pixels per overhead patch; None: the source's own
    steps: int = 10_000
    batch_size: int = 128  # global: split across processes under torchrun
    queue_size: int = 9_600  # a multiple of batch_size
    lr: float = 5e-5
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    weight_decay: float = 0.2
    restart_period: int | None = None  # T_0 of CosineAnnealingWarmRestarts; None: steps
    restart_mult: int = 1
    min_lr: float = 0.0
    init_temperature: float = 0.07
    meta_dropout: float = 0.3  # per batch: the dynamic embedding is zeroed
    use_dynamic: bool = True  # False: the "no dynamic encoder" ablation
    crop_scale: tuple[float, float] = (0.08, 1.0)
    rand_augment_ops: int = 2
    rand_augment_magnitude: int = 9
    stats_samples: int = 2_000  # overhead patches for the normalisation statistics
    preload_mb: int = 2_048  # keep all overhead patches in memory if they fit in this
    teacher_cache: bool = True  # False: run the teacher on the photos at every step
    precision: str = "fp32"  # "bf16": autocast on CUDA
    device: str = "auto"  # "auto": cuda if available (the local rank's), else cpu
    seed: int = 0
    checkpoint_every: int = 1_000
    log_every: int = 10

    @classmethod
    def from_dict(cls, data: dict, base_dir: str | Path | None = None) -> TrainConfig:
        """Validate keys and types; ``pairs`` is resolved against ``base_dir``."""
        if not isinstance(data, dict):
            raise InputError("a training config must be a JSON object")
        hints = typing.get_type_hints(cls)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(
                f"unknown training option(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        if "pairs" not in data:
            raise InputError(
                "the training config needs 'pairs': the paired-sample table to train on"
            )
        values = {k: _coerce(k, v, hints[k]) for k, v in data.items()}
        if base_dir is not None and not Path(values["pairs"]).is_absolute():
            values["pairs"] = str(Path(base_dir) / values["pairs"])
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

    def validate(self) -> None:
        checks = [
            (self.steps >= 1 and self.batch_size >= 1, "steps and batch_size must be at least 1"),
            (self.queue_size >= 0 and self.queue_size % self.batch_size == 0,
             f"queue_size {self.queue_size} must be a multiple of the global batch_size {self.batch_size}"),
            (self.lr > 0 and self.eps > 0 and self.weight_decay >= 0, "lr and eps must be > 0, weight_decay >= 0"),
            (0.0 <= self.meta_dropout <= 1.0, f"meta_dropout must be within 0..1, got {self.meta_dropout}"),
            (0.0 < self.crop_scale[0] <= self.crop_scale[1] <= 1.0, f"crop_scale must be 0 < low <= high <= 1, got {self.crop_scale}"),
            (0 <= self.rand_augment_magnitude < 31, "rand_augment_magnitude must be within 0..30"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"),
            (self.init_temperature > 0, "init_temperature must be positive"),
            (self.restart_period is None or self.restart_period >= 1, "restart_period must be at least 1"),
            (self.restart_mult >= 1, "restart_mult must be at least 1"),
            (self.checkpoint_every >= 1 and self.log_every >= 1, "checkpoint_every and log_every must be at least 1"),
            (self.stats_samples >= 1 and self.preload_mb >= 0, "stats_samples must be >= 1, preload_mb >= 0"),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise InputError(message)


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
