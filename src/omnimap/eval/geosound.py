"""``omnimap evaluate geosound``: a sound-map student on held-out geotagged clips.

Retrieval both ways between the student's embedding of each clip's place and time and
the teacher's (CLAP) embedding of the clip (mixed with its caption as in training), as
GeoCLAP reports it: R@10, R@100 and median rank, 1-based; beside it the ablation with
the time inputs zeroed (time unknown). Anchor: GeoCLAP's image->sound R@100 on
SoundingEarth rises from 0.256 to 0.450 with its full model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from omnimap.datasets.geosound import clap_targets, open_audio_pairs
from omnimap.eval.retrieval import both_directions
from omnimap.geo.timefeat import TIME_SLICE
from omnimap.models.checkpoint import load_checkpoint
from omnimap.models.embedder import Embedder, unit
from omnimap.teachers.registry import teacher_from_config

KS = (10, 100)


def evaluate_geosound(
    model: str | Path, pairs: str | Path, caption_weight: float | None = None
) -> dict:
    loaded = load_checkpoint(model)
    data = open_audio_pairs(pairs)
    teacher = teacher_from_config(loaded.config["teacher"])
    weight = (
        caption_weight
        if caption_weight is not None
        else float(loaded.config.get("training", {}).get("caption_weight", 0.5))
    )
    targets = clap_targets(teacher, data, weight, progress=False)
    embedder = Embedder(loaded)
    patches = embedder.imagery.patches(data.lon, data.lat)
    meta = data.metadata()
    student = loaded.student
    if student.source is not None:  # PSM: each clip's recording source, as in training
        index = np.array(student.source.indices(data.source), np.float32)
        meta = np.concatenate([meta, index[:, None]], axis=1)
    no_time = meta.copy()
    no_time[:, TIME_SLICE] = 0.0
    rows = {}
    for name, m in (("full", meta), ("no_time", no_time)):
        both = both_directions(embedder.samples(patches, m), targets, ks=KS)
        rows[name] = {"overhead_to_sound": both["forward"], "sound_to_overhead": both["backward"]}
    out = {"clips": len(data), "teacher": loaded.config["teacher"]["name"], "modes": rows}
    if student.variance is not None:  # PSM: how sure the model is, and whether it knows when
        out["uncertainty"] = _uncertainty(embedder, student, patches, meta, targets)
    if student.codebook is not None:  # Sat2Sound: what each concept sounds like, in words
        out["concepts"] = concept_captions(student.codebook, teacher, data.caption)
    return out


CONCEPT_CAPTIONS = 3  # nearest distinct captions shown per concept


def concept_captions(codebook, teacher, captions: list[str], k: int = CONCEPT_CAPTIONS) -> list[dict]:
    """Each concept's ``k`` nearest distinct captions of a table (cosine in the teacher's
    space), so a codebook can be read; [] when the table has no captions."""
    texts = sorted({c for c in captions if c})
    if not texts:
        return []
    vectors = unit(np.asarray(teacher.embed("text", texts), np.float32))
    with torch.inference_mode():
        concepts = codebook.unit_concepts().numpy()
    sims = concepts @ vectors.T
    out = []
    for c, row in enumerate(sims):
        best = np.argsort(-row)[:k]
        out.append({"concept": c, "captions": [texts[i] for i in best],
                    "similarity": [round(float(row[i]), 4) for i in best]})  # fmt: skip
    return out


@torch.inference_mode()
def _uncertainty(embedder: Embedder, student, patches: np.ndarray, meta: np.ndarray,
                 targets: np.ndarray) -> dict:  # fmt: skip
    """Mean predicted variance, and the Spearman of each clip's variance with its
    error (1 - cosine to its own target): positive when high variance flags a miss."""
    o, m = embedder.sample_parts(patches, meta)
    log_var = student.log_variance(torch.from_numpy(o), torch.from_numpy(m)).numpy()
    variance = np.exp(log_var).mean(axis=1)
    error = 1.0 - np.sum(unit(o + m) * targets, axis=1)
    rho = float(spearmanr(variance, error).statistic) if len(variance) > 2 else float("nan")
    return {"mean_variance": float(variance.mean()), "variance_vs_error_spearman": rho}


def format_table(metrics: dict) -> str:
    lines = [
        f"{metrics['clips']} clips; R@10 / R@100 / median rank (overhead->sound | sound->overhead)"
    ]
    for mode, r in metrics["modes"].items():
        f, b = r["overhead_to_sound"], r["sound_to_overhead"]
        lines.append(f"  {mode:8s} {f['R@10']:.3f} / {f['R@100']:.3f} / {f['median_rank']:.0f} | "
                     f"{b['R@10']:.3f} / {b['R@100']:.3f} / {b['median_rank']:.0f}")  # fmt: skip
    if "uncertainty" in metrics:
        u = metrics["uncertainty"]
        lines.append(f"  variance: mean {u['mean_variance']:.4g}, "
                     f"Spearman with the error {u['variance_vs_error_spearman']:.3f}")  # fmt: skip
    for c in metrics.get("concepts", []):
        lines.append(f"  concept {c['concept']}: " + " | ".join(c["captions"]))
    return "\n".join(lines)
