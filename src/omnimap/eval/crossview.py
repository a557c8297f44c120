"""``omnimap evaluate retrieval``: cross-view retrieval on a gallery, both directions.

Overhead -> ground: each student embedding (overhead patch + place + time) is a
query against the teacher embeddings of all gallery photos; ground -> overhead the
other way round. R@1/5/10 and median rank come from ``omnimap.eval.retrieval``
(1-based ranks, R@k counts rank <= k, median over the queries of each direction).

Rows: the model; the same model without metadata at test time (overhead only); plain
CLIP (the teacher's image tower on the overhead patch vs on the photo, the Sat2Cap
baseline); and any ablation runs given (e.g. trained without the dynamic encoder, or
without metadata dropout).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from omnimap.core.errors import DataError, InputError
from omnimap.datasets.crossview import CrossViewData, open_pairs
from omnimap.eval.retrieval import retrieval_metrics
from omnimap.maps.scoring import cosine_scores
from omnimap.models.checkpoint import LoadedModel, load_checkpoint
from omnimap.models.embedder import Embedder, unit
from omnimap.teachers.clip import CLIPTeacher
from omnimap.teachers.registry import get_teacher

KS = (1, 5, 10)


def _model(model: str | Path | LoadedModel) -> LoadedModel:
    return model if isinstance(model, LoadedModel) else load_checkpoint(model)


def clip_teacher_of(model: LoadedModel) -> CLIPTeacher:
    """The CLIP teacher a student was trained against, checked by its weight digest."""
    spec = model.config.get("teacher", {})
    if spec.get("kind") != "clip":
        raise InputError(f"model {model.name!r} was not trained with a CLIP teacher")
    teacher = get_teacher(str(spec["name"]), "clip", cached=False)
    if spec.get("image_key") and teacher.modality_key("image") != spec["image_key"]:
        raise DataError(
            f"teacher {spec['name']!r} has changed since model {model.name!r} was trained"
        )
    return teacher


def student_parts(model: LoadedModel, patches: np.ndarray, meta: np.ndarray):
    """Unnormalised overhead (o) and dynamic (m) embeddings of samples."""
    return Embedder(model).sample_parts(patches, meta)


def _row(name: str, overhead: np.ndarray, ground: np.ndarray) -> dict:
    sim = cosine_scores(unit(overhead), unit(ground))  # (ground, overhead)
    return {"name": name, "overhead_to_ground": retrieval_metrics(sim.T, KS),
            "ground_to_overhead": retrieval_metrics(sim, KS)}  # fmt: skip


def gallery_rows(n: int, size: int, seed: int) -> np.ndarray:
    """``size`` rows out of ``n`` (all if fewer), seeded, in table order."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def evaluate_retrieval(
    model: str | Path | LoadedModel, pairs: str | Path | CrossViewData, gallery: int = 10_000,
    ablations: dict[str, str | Path] | None = None, baseline: bool = True, seed: int = 0, progress: bool = False,
) -> dict:  # fmt: skip
    """Metrics for the model, its no-metadata variant, the CLIP baseline and ablations."""
    if gallery < 2:
        raise InputError("the gallery needs at least 2 samples")
    main = _model(model)
    teacher = clip_teacher_of(main)
    data = pairs if isinstance(pairs, CrossViewData) else open_pairs(pairs)
    data = data.subset(gallery_rows(len(data), gallery, seed))
    if len(data) < 2:
        raise InputError("the gallery needs at least 2 samples")
    ground = data.teacher_vectors(teacher, progress=progress)
    patches = data.patches(np.arange(len(data)))
    o, m = student_parts(main, patches, data.meta)
    rows = [
        _row(main.name, o + m, ground),
        _row(f"{main.name}, no metadata at test time", o, ground),
    ]
    if baseline:
        rows.append(
            _row(
                "CLIP (teacher on the overhead image)",
                teacher.embed_patches(patches, progress=progress),
                ground,
            )
        )
    for name, path in (ablations or {}).items():
        run = _model(path)
        if clip_teacher_of(run).modality_key("image") != teacher.modality_key("image"):
            raise InputError(
                f"ablation {name!r} was trained with another teacher than {main.name!r}"
            )
        o_a, m_a = student_parts(run, patches, data.meta)
        uses_dynamic = run.config.get("training", {}).get("use_dynamic", True)
        rows.append(_row(name, o_a + m_a if uses_dynamic else o_a, ground))
    return {"model": main.name, "model_path": str(main.path), "gallery": len(data), "rows": rows}


def format_table(result: dict) -> str:
    """A plain-text table of the rows (R@k as percentages)."""
    head = [
        "",
        *(f"o->g R@{k} %" for k in KS),
        "o->g MR",
        *(f"g->o R@{k} %" for k in KS),
        "g->o MR",
    ]
    lines = [f"gallery of {result['gallery']:,} (o = overhead + place + time, g = ground photo)"]
    cells = []
    for row in result["rows"]:
        values = []
        for d in ("overhead_to_ground", "ground_to_overhead"):
            values += [f"{100 * row[d][f'R@{k}']:.1f}" for k in KS] + [f"{row[d]['median_rank']:g}"]
        cells.append([row["name"], *values])
    widths = [max(len(str(c[i])) for c in [head, *cells]) for i in range(len(head))]
    for r in [head, *cells]:
        lines.append(
            "  ".join(
                str(c).ljust(w) if i == 0 else str(c).rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    return "\n".join(lines)
