"""Everything a resumed run needs, in one safetensors file (no pickles).

Tensors: the student's weights, the logit scale (or one per target pair), the teacher
queue (or one per target pair) and the optimizer's per-parameter state. Everything else (optimizer hyper-parameters, queue pointers, step,
loss history) is JSON in the file's metadata. One file written atomically, so a crash
leaves the previous state whole.

Neither random-generator nor scheduler state is stored: every random choice of step
``s`` (batch rows, augmentation, dropouts) is drawn from generators seeded by
(seed, stream, s), and the learning rate is a pure function of ``s``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from omnimap.core.errors import DataError
from omnimap.core.fileio import atomic_path
from omnimap.train.losses import LogitScale, PairScales, TeacherQueue

FORMAT = "omnimap.train_state/2"


def _queues(queue: TeacherQueue | dict[str, TeacherQueue]) -> dict[str, TeacherQueue]:
    """Tensor-name prefix -> queue: "queue." for the one queue (the layout of every run
    before target pairs), "queue.NAME." per target pair."""
    if isinstance(queue, TeacherQueue):
        return {"queue.": queue}
    return {f"queue.{name}.": q for name, q in queue.items()}


def save_train_state(
    path: str | Path, student: nn.Module, scale: LogitScale | PairScales,
    optimizer: torch.optim.Optimizer, queue: TeacherQueue | dict[str, TeacherQueue], info: dict,
) -> None:  # fmt: skip
    """``info`` (step, loss history, ...) must be JSON; it comes back from ``load_train_state``."""
    from safetensors.torch import save_file

    tensors = {f"student.{k}": v for k, v in student.state_dict().items()}
    # "scale.log_scale" for one temperature; "scale.scales.PAIR.log_scale" per pair
    tensors.update({f"scale.{k}": v.detach() for k, v in scale.state_dict().items()})
    pointers = {}
    for prefix, q in _queues(queue).items():
        tensors[prefix + "vectors"], tensors[prefix + "labels"] = q.vectors, q.labels
        pointers[prefix] = {"ptr": q.ptr, "filled": q.filled}
    opt = optimizer.state_dict()
    scalars: dict[str, dict] = {}
    for idx, entries in opt["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{name}"] = value
            else:
                scalars.setdefault(str(idx), {})[name] = value
    meta = {
        "info": info,
        "param_groups": opt["param_groups"],
        "optim_scalars": scalars,
        "queue": pointers["queue."] if isinstance(queue, TeacherQueue) else pointers,
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "state": json.dumps(meta)})


def read_train_info(path: str | Path) -> dict:
    """The ``info`` of a saved state, without loading any tensor."""
    return _read(path, tensors=False)[0]["info"]


def _read(path: str | Path, tensors: bool) -> tuple[dict, dict[str, torch.Tensor]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            if meta.get("format") != FORMAT:
                raise DataError(f"{path} is not an omnimap training state ({FORMAT!r} expected)")
            values = {k: fh.get_tensor(k) for k in fh.keys()} if tensors else {}
        return json.loads(meta["state"]), values
    except (SafetensorError, OSError, ValueError, KeyError) as exc:
        raise DataError(f"cannot read training state {path}: {exc}") from None


def load_train_state(
    path: str | Path, student: nn.Module, scale: LogitScale | PairScales,
    optimizer: torch.optim.Optimizer, queue: TeacherQueue | dict[str, TeacherQueue],
) -> dict:  # fmt: skip
    """Restore everything in place; returns the ``info`` that was saved."""
    state, tensors = _read(path, tensors=True)
    student.load_state_dict(
        {k[8:]: v for k, v in tensors.items() if k.startswith("student.")}, strict=True
    )
    try:  # strict: a state with other temperatures (one vs per pair) is refused
        scale.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("scale.")})
    except RuntimeError:
        raise DataError(f"{path} holds other temperatures than this recipe learns") from None
    single = isinstance(queue, TeacherQueue)
    for prefix, q in _queues(queue).items():
        where = state["queue"] if single else state["queue"].get(prefix)
        if where is None or prefix + "vectors" not in tensors:
            raise DataError(f"{path} has no {prefix.rstrip('.')} queue")
        q.load_state_dict({"vectors": tensors[prefix + "vectors"], "labels": tensors[prefix + "labels"],
                           "ptr": where["ptr"], "filled": where["filled"]})  # fmt: skip
    per_param: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            per_param.setdefault(int(idx), {})[name] = value
    for idx, entries in state["optim_scalars"].items():
        per_param.setdefault(int(idx), {}).update(entries)
    groups = [
        {**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in state["param_groups"]
    ]
    optimizer.load_state_dict({"state": per_param, "param_groups": groups})
    return state["info"]
