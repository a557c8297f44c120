"""The one training loop: a student distilled from a frozen teacher, for any recipe.

Student: s = normalize(o + m), o = overhead(patch), m = dynamic(location, time).
Loss: InfoNCE of each student embedding against [global batch of teacher embeddings |
queue of earlier ones], with a learnable temperature; rows whose labels agree mean
the same thing and are not negatives. A recipe with ``target_pairs`` (GeoCLAP) has one
such loss per teacher modality, each with its own temperature and queue, summed. A
recipe may average the loss over samples of the student embedding
(``embedding_samples``), add a term of its own (``extra_loss``) and keep parts of the
student fixed (``frozen``). A :class:`Recipe` brings the data, the teacher's
targets, the architecture and the augmentation; everything else is here:

- input dropouts, drawn per global batch (m) or per sample (time inputs, o), applied
  by multiplying by 0 so every parameter is in every graph (DDP requires it);
- one learning-rate schedule, a pure function of the step (``omnimap.train.schedule``);
- DDP under torchrun: each rank holds a slice of the global batch, the teacher keys
  are all-gathered, and every rank pushes the same keys into its queue, so N
  processes compute the loss one process would;
- exact resume: the run directory holds ``train_config.json`` (the resolved config; a
  different one is refused), ``train_state.safetensors`` (weights, optimizer, queue,
  loss history: no pickles, written atomically) and the model itself
  (``model.safetensors`` + ``config.json``). No RNG state is stored: every random
  choice of step s is drawn from generators seeded by (seed, stream, s);
- the next batch is loaded in a background thread while the current one trains.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from abc import ABC, abstractmethod
from contextlib import closing, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from omnimap.core.errors import InputError
from omnimap.core.fileio import write_json_atomic
from omnimap.geo.climatefeat import time_columns
from omnimap.geo.timefeat import N_FEATURES
from omnimap.models.checkpoint import LoadedModel, load_checkpoint, save_checkpoint
from omnimap.models.student import Student, build_student
from omnimap.train import batches
from omnimap.train.config import TrainConfig
from omnimap.train.distributed import World, barrier, gather_rows, join, local_rows, mean_over_ranks
from omnimap.train.losses import (
    LogitScale,
    PairScales,
    PairTargets,
    TeacherQueue,
    paired_queue_infonce,
    queue_infonce,
)  # fmt: skip
from omnimap.train.schedule import lr_scheduler
from omnimap.train.state import load_train_state, read_train_info, save_train_state

log = logging.getLogger(__name__)

CONFIG_FILE, STATE_FILE = "train_config.json", "train_state.safetensors"
HISTORY_DECIMALS = 4


class Recipe(ABC):
    """One way to train a student: a config type, data and teacher targets, hooks.

    The loop calls ``prepare`` once on every rank; for a fresh run ``architecture`` and
    ``init_student``, and ``queue_targets`` to pre-fill the queue; per step ``load`` (in
    the prefetch thread, for this rank's rows), ``augment`` and ``targets``; at each
    checkpoint ``checkpoint_config`` and ``write_files`` (rank 0)."""

    config_type: ClassVar[type[TrainConfig]]
    label_columns: ClassVar[int] = 1  # columns of ``labels``

    def __init__(self, cfg: TrainConfig):
        if not isinstance(cfg, self.config_type):
            raise TypeError(f"{type(self).__name__} needs a {self.config_type.__name__}")
        self.cfg = cfg

    @property
    def name(self) -> str:
        return self.config_type.recipe

    @abstractmethod
    def prepare(self, world: World, device: torch.device, progress: bool) -> int:
        """Open the data and the teacher's targets; returns the number of training rows."""

    @abstractmethod
    def architecture(self) -> dict:
        """A fresh run's architecture (``build_student``'s config); a resumed run keeps its own."""

    def init_student(self, student: Student) -> None:
        """A fresh run's starting weights beyond torch's seeded initialisation."""
        return None  # by default, torch's initialisation is the start

    def row_group(self) -> int:
        """Rows that always share a batch: consecutive groups of this many (1: none)."""
        return 1

    def frozen(self, student: Student) -> list[nn.Module]:
        """Parts of the student that do not train (fresh or resumed run alike)."""
        return []

    @abstractmethod
    def labels(self, rows: np.ndarray) -> torch.Tensor:
        """(len(rows),) or (len(rows), label_columns) long ids: rows agreeing on any
        column are not negatives of each other."""

    @abstractmethod
    def queue_targets(self, rows: np.ndarray) -> torch.Tensor:
        """(len(rows), dim) teacher embeddings of ``rows`` (to pre-fill the queue)."""

    @abstractmethod
    def load(self, rows: np.ndarray) -> dict:
        """This rank's rows of a batch: "patches" and "meta" (CPU tensors), and whatever
        ``targets`` needs. Runs in the prefetch thread."""

    @abstractmethod
    def augment(
        self, gen: torch.Generator, patches: torch.Tensor, batch_size: int, mine: slice
    ) -> torch.Tensor:
        """The student's input images for this rank's ``patches``: random parameters are
        drawn from ``gen`` for the whole global batch of ``batch_size``, then sliced."""

    def targets(self, batch: dict, device: torch.device) -> torch.Tensor:
        """(rows, dim) teacher embeddings of this rank's rows, on ``device``."""
        return batch["targets"].to(device)

    def time_free_targets(self, batch: dict, device: torch.device) -> torch.Tensor | None:
        """(rows, dim) targets for rows whose time input is dropped, where the teacher's
        text depends on the time (what is known without it); None: ``targets``."""
        return None

    def target_pairs(self) -> tuple[str, ...]:
        """GeoCLAP's per-pair temperatures: the teacher modalities (e.g. "audio",
        "text") the student is contrasted with, one pair each, each pair with its own
        learnable temperature and queue; the loss is their sum. Such a recipe's ``load``
        puts ``pair_targets`` of its rows in the batch as "pairs" (``targets`` and
        ``queue_targets`` are then unused). () (the default): one target, one
        temperature."""
        return ()

    def pair_targets(self, rows: np.ndarray) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per name of ``target_pairs``: (len(rows), dim) teacher vectors and (len(rows),)
        bool, the rows that have that modality."""
        raise NotImplementedError(f"{type(self).__name__} has no target pairs")

    def embedding_samples(self, s: torch.Tensor, heads: dict) -> list[torch.Tensor]:
        """The student embeddings the contrastive loss is averaged over: [s] (the
        default), or e.g. samples of a probabilistic embedding (``heads``: the student's
        optional head outputs, "log_variance", "assign", "reconstruction")."""
        return [s]

    def extra_loss(self, s: torch.Tensor, heads: dict, batch: dict,
                   device: torch.device) -> torch.Tensor | None:  # fmt: skip
        """A term added to the step's loss (this rank's rows; e.g. a regulariser of a
        student head; ``batch["dropouts"]``: their input dropouts); None (the default):
        nothing."""
        return None

    def dropout_rates(self) -> tuple[float, float, float]:
        """(metadata, time, overhead) dropout probabilities."""
        return self.cfg.meta_dropout, self.cfg.time_dropout, self.cfg.overhead_dropout

    @abstractmethod
    def checkpoint_config(self) -> dict:
        """The model config's "teacher" and "imagery", and any keys of the recipe's own;
        a "training" entry is merged into the loop's."""

    def write_files(self, run_dir: Path) -> None:
        """Files of the recipe's own beside the model (rank 0, at each checkpoint)."""
        return None  # by default, none


@dataclass
class RunResult:
    model: LoadedModel
    losses: list[float]  # one per step from step 0 (a resumed run includes earlier steps)
    history: list[dict]  # every log_every steps and the last: step, loss, temperature(s)
    temperature: float  # the learnt one (with target pairs: the first pair's), at the last step
    seconds: float  # this invocation's training time (checkpoint writes excluded)
    samples_per_second: float
    data_wait_seconds: float  # of ``seconds``, spent waiting for the next batch
    is_main: bool = True  # rank 0 (the process that writes and reports)
    temperatures: dict[str, float] | None = None  # per target pair (None: one temperature)


class _Trainable(nn.Module):
    """Student + temperature as one module, so DDP averages the gradients of both."""

    def __init__(self, student: Student, scale: LogitScale | PairScales):
        super().__init__()
        self.student, self.scale = student, scale

    def forward(self, images: torch.Tensor, meta: torch.Tensor, keep_meta: float,
                keep_overhead: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | dict, dict]:  # fmt: skip
        # Dropouts multiply by 0 rather than skip: every parameter stays in the graph, as
        # DDP requires; their gradients are then exactly zero.
        o = self.student.encode_overhead(images).float() * keep_overhead
        m = self.student.encode_dynamic(meta).float() * keep_meta
        s = self.student.fuse(o, m)
        heads = {}  # the optional heads run here, inside DDP's forward
        if self.student.variance is not None:
            heads["log_variance"] = self.student.log_variance(o, m).float()
        if self.student.codebook is not None:
            heads["assign"] = self.student.codebook.assign(s)
            heads["reconstruction"] = self.student.codebook.reconstruct(heads["assign"])
        return s, self.scale(), heads


@dataclass
class _Parts:
    """Everything that trains, and everything a checkpoint holds."""

    student: Student
    module: _Trainable
    optimizer: torch.optim.AdamW
    scheduler: torch.optim.lr_scheduler.LambdaLR
    queue: TeacherQueue | dict[str, TeacherQueue]  # one per target pair, if any
    info: dict  # JSON: architecture, losses, history, prep_seconds, train_seconds

    @property
    def losses(self) -> list[float]:
        return self.info["losses"]

    def temperatures(self) -> dict[str, float] | None:
        """Per target pair (None: one temperature)."""
        scale = self.module.scale
        if not isinstance(scale, PairScales):
            return None
        return {n: 1.0 / float(v.detach()) for n, v in scale().items()}

    def temperature(self) -> float:
        """The one temperature, or the first pair's."""
        many = self.temperatures()
        return next(iter(many.values())) if many else 1.0 / float(self.module.scale().detach())


def _check_run_dir(run_dir: Path, recipe: Recipe, world: World) -> None:
    """A run directory belongs to one recipe and config: resuming another would mix runs."""
    path = run_dir / CONFIG_FILE
    wanted = json.loads(json.dumps({"recipe": recipe.name, **recipe.cfg.to_json()}))
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("recipe") != recipe.name:
            raise InputError(
                f"{run_dir} holds a {saved.get('recipe')} run, not {recipe.name}; use a new --out"
            )
        # An option added since the run began (absent from its file) at its default is
        # the behaviour the run had: e.g. geosound's ``loss`` "mixed".
        defaults = json.loads(json.dumps({f.name: f.default for f in dataclasses.fields(recipe.cfg)
                                          if f.default is not dataclasses.MISSING}, default=list))  # fmt: skip
        changed = sorted(k for k in saved.keys() | wanted.keys()
                         if saved.get(k, defaults.get(k)) != wanted.get(k))  # fmt: skip
        if changed:
            raise InputError(
                f"{run_dir} holds a run with another config (differs in: {', '.join(changed)}); use a new --out"
            )
    elif world.is_main:
        write_json_atomic(path, wanted)


def _build(recipe: Recipe, run_dir: Path, n: int, device: torch.device) -> _Parts:
    """A fresh run's parts, or a saved run's parts restored exactly."""
    cfg, state_path = recipe.cfg, run_dir / STATE_FILE
    resuming = state_path.is_file()
    torch.manual_seed(cfg.seed)
    # A resumed run keeps its architecture and statistics; they are never recomputed.
    arch = read_train_info(state_path)["architecture"] if resuming else recipe.architecture()
    student = build_student(arch)
    if not resuming:
        recipe.init_student(student)
    for part in recipe.frozen(student):
        part.requires_grad_(False)
    pairs = recipe.target_pairs()
    scale = PairScales(pairs, cfg.init_temperature) if pairs else LogitScale(cfg.init_temperature)
    module = _Trainable(student, scale).to(device)
    # No weight decay on gains, biases and the temperature (CLIP practice): decaying the
    # log-temperature would pull it towards 1 for no reason.
    trained = [p for p in module.parameters() if p.requires_grad]
    groups = [{"params": [p for p in trained if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in trained if p.ndim < 2], "weight_decay": 0.0}]  # fmt: skip
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
    def new_queue():
        return TeacherQueue(cfg.queue_size, int(arch["dim"]), cfg.batch_size, recipe.label_columns)

    queue = {name: new_queue() for name in pairs} if pairs else new_queue()
    if resuming:
        info = load_train_state(state_path, student, module.scale, optimizer, queue)
        scheduler = lr_scheduler(optimizer, cfg, start=len(info["losses"]))
    else:
        info = {"architecture": arch, "losses": [], "history": [], "prep_seconds": 0.0,
                "train_seconds": 0.0}  # fmt: skip
        scheduler = lr_scheduler(optimizer, cfg, start=0)
        # Pre-filled from a seeded sample of the training set: no cold start.
        rng = np.random.default_rng(batches.stream_seed(cfg.seed, batches.QUEUE_FILL))
        fill = np.sort(rng.choice(n, size=min(cfg.queue_size, n), replace=False))
        if pairs:
            labels = recipe.labels(fill)
            for name, (vectors, valid) in recipe.pair_targets(fill).items():
                queue[name].fill(vectors[valid], labels[valid])
        else:
            queue.fill(recipe.queue_targets(fill), recipe.labels(fill))
    queue = {k: q.to(device) for k, q in queue.items()} if pairs else queue.to(device)
    return _Parts(student, module, optimizer, scheduler, queue, info)


def train(
    recipe: Recipe, run_dir: str | Path, progress: bool = True, stop_after: int | None = None
) -> RunResult:
    """Train (or resume) ``recipe`` in ``run_dir``. ``stop_after`` ends once that many
    steps are done, checkpointed, as if the run had been killed there."""
    from tqdm.auto import tqdm

    cfg = recipe.cfg
    world = join(cfg.device)
    device = world.device(cfg.device)
    mine = local_rows(world, cfg.batch_size)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _check_run_dir(run_dir, recipe, world)
    barrier(world)
    prep_started = time.perf_counter()
    n = recipe.prepare(world, device, progress=progress and world.is_main)
    if n < cfg.batch_size:
        raise InputError(f"{n} training samples are fewer than one batch of {cfg.batch_size}")
    parts = _build(recipe, run_dir, n, device)
    if not parts.losses:  # a resumed run keeps the cost of its first preparation
        parts.info["prep_seconds"] = time.perf_counter() - prep_started
    trainer: nn.Module = parts.module
    if world.size > 1:
        trainer = nn.parallel.DistributedDataParallel(
            parts.module, device_ids=[device] if device.type == "cuda" else None
        )
    autocast = (
        (lambda: torch.autocast(device.type, dtype=torch.bfloat16))
        if cfg.precision == "bf16"
        else nullcontext
    )
    rates = recipe.dropout_rates()
    n_inputs = int(parts.info["architecture"].get("dynamic", {}).get("inputs", N_FEATURES))
    time_cols = torch.tensor(time_columns(n_inputs), device=device)

    def load(step: int) -> dict:
        rows = batches.batch_rows(cfg.seed, step, n, cfg.batch_size, recipe.row_group())
        return {"rows": rows, "labels": recipe.labels(rows), **recipe.load(rows[mine])}

    def step_once(step: int, batch: dict) -> tuple[float, float]:
        """One optimizer step; (global mean loss, temperature)."""
        size = len(batch["rows"])
        drop = batches.dropouts(cfg.seed, step, size, *rates)[mine]
        gen = batches.step_generator(cfg.seed, step, batches.AUGMENT)
        images = recipe.augment(gen, batch["patches"].to(device), size, mine)
        meta = batch["meta"].to(device).clone()
        dropped = torch.from_numpy(drop.time).to(device)
        meta[dropped.nonzero()[:, 0].unsqueeze(1), time_cols] = 0.0
        keep_overhead = torch.from_numpy(~drop.overhead).to(device, torch.float32).unsqueeze(1)
        torch.manual_seed(batches.stream_seed(cfg.seed, batches.TORCH, step))  # model dropout
        with autocast():
            s, scale, heads = trainer(images, meta, 0.0 if drop.meta else 1.0, keep_overhead)
        labels = batch["labels"].to(device)
        others = torch.ones(size, dtype=torch.bool, device=device)
        others[mine] = False
        views = recipe.embedding_samples(s.float(), heads)
        if isinstance(scale, dict):
            losses = [_pair_loss(v, batch["pairs"], labels, scale, others, mine, parts.queue,
                                 world, device) for v in views]  # fmt: skip
            loss, pushes = _mean([x[0] for x in losses]), losses[0][1]
        else:
            own = recipe.targets(batch, device)
            if drop.time.any():
                free = recipe.time_free_targets(batch, device)
                if free is not None:
                    own = torch.where(dropped.unsqueeze(1), free, own)
            keys = gather_rows(own, world)
            q_vec, q_lab = parts.queue.current()
            # [own keys | other ranks' keys | queue]: one process's logits for the global
            # batch with the columns permuted, which cross-entropy does not see.
            negatives, negative_labels = torch.cat([keys[others], q_vec]), torch.cat([labels[others], q_lab])
            loss = _mean([queue_infonce(v, own, labels[mine], scale.float(), negatives, negative_labels)
                          for v in views])  # fmt: skip
            pushes = [(parts.queue, keys, labels)]
        extra = recipe.extra_loss(s.float(), heads, {**batch, "dropouts": drop}, device)
        if extra is not None:
            loss = loss + extra
        parts.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        parts.optimizer.step()
        parts.scheduler.step()
        for queue, keys, key_labels in pushes:
            queue.push(keys, key_labels)
        return mean_over_ranks(loss, world), parts.temperature()

    start = len(parts.losses)
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    trained_before = parts.info["train_seconds"]
    parts.module.train()
    bar = tqdm(total=end, initial=start, desc=f"train {recipe.name}", unit="step",
               disable=not (progress and world.is_main))  # fmt: skip
    started, waited, saving = time.perf_counter(), 0.0, 0.0
    with closing(batches.prefetch(load, range(start, end))) as stream:
        for _ in range(start, end):
            t = time.perf_counter()
            step, batch = next(stream)
            waited += time.perf_counter() - t  # the device idles while the loader catches up
            loss, temperature = step_once(step, batch)
            if not np.isfinite(loss):
                raise InputError(f"training diverged at step {step} (loss {loss}); lower lr")
            parts.losses.append(loss)
            done = step + 1
            bar.update(1)
            if step % cfg.log_every == 0 or done == cfg.steps:
                entry = {"step": step, "loss": round(loss, HISTORY_DECIMALS),
                         "temperature": round(temperature, HISTORY_DECIMALS)}  # fmt: skip
                if (many := parts.temperatures()) is not None:
                    entry["temperatures"] = {k: round(v, HISTORY_DECIMALS) for k, v in many.items()}
                parts.info["history"].append(entry)
                bar.set_postfix(loss=f"{loss:.3f}", T=f"{temperature:.4f}")
                log.info(
                    "step %d/%d loss %.4f temperature %.4f", done, cfg.steps, loss, temperature
                )
            if done % cfg.checkpoint_every == 0 or done == end:
                t = time.perf_counter()
                parts.info["train_seconds"] = trained_before + t - started - saving
                if world.is_main:
                    _checkpoint(run_dir, recipe, parts, n)
                barrier(world)
                saving += time.perf_counter() - t
    bar.close()
    seconds = time.perf_counter() - started - saving
    if world.is_main and not (run_dir / "config.json").is_file():  # nothing was left to run
        _checkpoint(run_dir, recipe, parts, n)
    barrier(world)
    rate = (end - start) * cfg.batch_size / seconds if end > start else 0.0
    return RunResult(load_checkpoint(run_dir), list(parts.losses), list(parts.info["history"]),
                     parts.temperature(), seconds, rate, waited, world.is_main,
                     parts.temperatures())  # fmt: skip


def _mean(losses: list[torch.Tensor]) -> torch.Tensor:
    """The mean of the losses; one is returned as it is (bit for bit)."""
    return losses[0] if len(losses) == 1 else torch.stack(losses).mean()


def _pair_loss(s: torch.Tensor, pairs: dict, labels: torch.Tensor, scales: dict[str, torch.Tensor],
               others: torch.Tensor, mine: slice, queues: dict[str, TeacherQueue], world: World,
               device: torch.device) -> tuple[torch.Tensor, list]:  # fmt: skip
    """The sum of the target pairs' losses for this rank's rows, and what each queue
    takes afterwards (every rank pushes the same: the global batch's valid rows)."""
    targets, pushes = {}, []
    for name, (own, valid) in pairs.items():
        own, valid = own.to(device), valid.to(device)
        keys = gather_rows(own, world)
        every = gather_rows(valid.to(torch.uint8), world).bool()  # gloo gathers no bools
        q_vec, q_lab = queues[name].current()
        negatives = others & every
        weight = float(valid.sum()) * world.size / max(float(every.sum()), 1.0)
        targets[name] = PairTargets(own, labels[mine], valid, torch.cat([keys[negatives], q_vec]),
                                    torch.cat([labels[negatives], q_lab]), weight)  # fmt: skip
        pushes.append((queues[name], keys[every], labels[every]))
    loss, _ = paired_queue_infonce(s, targets, {k: v.float() for k, v in scales.items()})
    return loss, pushes


def _checkpoint(run_dir: Path, recipe: Recipe, parts: _Parts, n: int) -> None:
    """The training state (to resume), then the model (to use)."""
    cfg, info = recipe.cfg, parts.info
    save_train_state(run_dir / STATE_FILE, parts.student, parts.module.scale, parts.optimizer,
                     parts.queue, info)  # fmt: skip
    own = recipe.checkpoint_config()
    losses = info["losses"]
    training = {
        **cfg.to_json(), "recipe": recipe.name, "samples": n, "step": len(losses),
        "loss_first": losses[0] if losses else None,
        "loss_last": float(np.mean(losses[-cfg.log_every :])) if losses else None,
        "loss_history": info["history"], "prep_seconds": round(info["prep_seconds"], 1),
        "train_seconds": round(info["train_seconds"], 1), "threads": torch.get_num_threads(),
        **own.pop("training", {}),
    }  # fmt: skip
    config = {"name": cfg.name, **info["architecture"], **own, "temperature": parts.temperature(),
              "training": training}  # fmt: skip
    if (many := parts.temperatures()) is not None:
        config["temperatures"] = many
    save_checkpoint(parts.student, config, run_dir)
    recipe.write_files(run_dir)
