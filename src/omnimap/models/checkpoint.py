"""Checkpoints: ``model.safetensors`` + ``config.json`` that fully describes the model.

Loading never unpickles: weights come from safetensors, everything else from JSON.
The config records a digest of the weights file, checked on load, so a corrupt or
swapped file is reported instead of silently producing wrong maps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from omnimap.core.digest import file_digest
from omnimap.core.errors import DataError
from omnimap.core.fileio import atomic_path, write_json_atomic
from omnimap.models.student import Student, build_student

FORMAT = "omnimap.student/1"
WEIGHTS, CONFIG = "model.safetensors", "config.json"
BUILTIN_DIR = Path(__file__).resolve().parent.parent / "weights"


@dataclass
class LoadedModel:
    student: Student
    config: dict
    path: Path

    @property
    def name(self) -> str:
        return str(self.config.get("name", self.path.name))

    @property
    def key(self) -> str:
        """Identifies the exact weights (for cache keys)."""
        return f"{self.name}-{self.config['weights_digest'][:16]}"

    @property
    def source(self) -> str:
        """How to load this model again: a built-in's name (valid in any install), else
        its absolute directory."""
        if self.path.resolve().parent == BUILTIN_DIR.resolve():
            return self.path.name
        return str(self.path.resolve())


def save_checkpoint(student: Student, config: dict, out_dir: str | Path) -> Path:
    """Write weights then config (the config names the weights' digest)."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in student.state_dict().items()}
    with atomic_path(out_dir / WEIGHTS) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
    config = {**config, "format": FORMAT, "weights_digest": file_digest(out_dir / WEIGHTS)}
    write_json_atomic(out_dir / CONFIG, config)
    return out_dir


def resolve_model_dir(name_or_path: str | Path) -> Path:
    """A built-in model name (e.g. "atlas") or a directory holding a checkpoint."""
    candidate = Path(name_or_path)
    if candidate.is_dir():
        return candidate
    builtin = BUILTIN_DIR / str(name_or_path)
    if builtin.is_dir():
        return builtin
    known = builtin_models()
    raise DataError(
        f"model {str(name_or_path)!r} is neither a directory nor a built-in model (built-in: {', '.join(known) or 'none'})"
    )


def builtin_models() -> list[str]:
    return (
        sorted(p.name for p in BUILTIN_DIR.iterdir() if (p / CONFIG).is_file())
        if BUILTIN_DIR.is_dir()
        else []
    )


def read_config(name_or_path: str | Path) -> dict:
    """A model's config without loading its weights."""
    path = resolve_model_dir(name_or_path) / CONFIG
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"corrupt model config {path}: {exc}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise DataError(f"{path} is not an omnimap model config (format {FORMAT!r} expected)")
    return config


def load_checkpoint(name_or_path: str | Path = "atlas") -> LoadedModel:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = resolve_model_dir(name_or_path)
    cfg_path, w_path = path / CONFIG, path / WEIGHTS
    if not cfg_path.is_file() or not w_path.is_file():
        raise DataError(f"{path} is not a model: it needs {CONFIG} and {WEIGHTS}")
    config = read_config(path)
    if file_digest(w_path) != config.get("weights_digest"):
        raise DataError(f"weights file {w_path} does not match its config (corrupt or replaced)")
    try:
        student = build_student(config)
        state = load_file(str(w_path))
        student.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, ValueError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot load model weights {w_path}: {first}") from None
    student.eval()
    for p in student.parameters():
        p.requires_grad_(False)
    return LoadedModel(student=student, config=config, path=path)
