"""Class-set evaluation measures on made-up scores (the real ones run in evaluate atlas)."""

import numpy as np
import pytest

from omnimap.eval.classes import GROUPS, IGBP_GROUP, accuracy_and_macro_f1, transient_day_night
from omnimap.maps.classes import BUILTIN_SETS


def test_groups_cover_every_igbp_class():
    assert len(IGBP_GROUP) == 17 and set(IGBP_GROUP.tolist()) == set(range(len(GROUPS)))
    assert GROUPS[IGBP_GROUP[13]] == "urban" and GROUPS[IGBP_GROUP[14]] == "cropland"


def test_accuracy_and_macro_f1():
    truth = np.array([0, 0, 1, 1, 2, 2])
    assert accuracy_and_macro_f1(truth, truth, 3) == {"accuracy": 1.0, "macro_f1": 1.0}
    pred = np.array([0, 0, 0, 0, 0, 0])  # majority-style: F1 only for class 0
    m = accuracy_and_macro_f1(pred, truth, 3)
    assert m["accuracy"] == pytest.approx(1 / 3)
    assert m["macro_f1"] == pytest.approx((2 * (1 / 3) * 1 / (1 / 3 + 1)) / 3)


def test_transient_shares_count_only_real_nights_and_days():
    names = list(BUILTIN_SETS["transient"])
    lat = np.array([0.0, 45.0, 80.0])  # 80N has the midnight sun in June: not counted

    def score_at(when):
        s = np.zeros((len(names), 3))
        top = ("night", "dark") if when.endswith("00:00") else ("daylight", "bright")
        s[names.index(top[0])] = 2.0
        s[names.index(top[1])] = 1.0
        s[names.index("fog"), 1] = 5.0  # cell 1: fog outranks both
        return s

    out = transient_day_night(score_at, np.zeros(3), lat)
    assert out["cells"] == 2
    assert out["night_share"] == pytest.approx(0.5) and out["day_share"] == pytest.approx(0.5)
    assert out["night_top1_share"] == pytest.approx(0.5)
    # Cell 1's fog outranks the pairs at both hours, but each pair is still likelier
    # at its own hour there: the rise counts it, the top-2 share does not.
    assert out["night_rises_share"] == pytest.approx(1.0)
    assert out["day_rises_share"] == pytest.approx(1.0)


def test_transient_rise_compares_probabilities_not_cosines():
    names = list(BUILTIN_SETS["transient"])
    lat = np.array([0.0])

    def score_at(when):
        s = np.zeros((len(names), 1))
        if when.endswith("12:00"):  # every class up by the same amount: no class changes
            s += 0.3
            s[names.index("daylight")] += 0.1  # only daylight gains at noon
        return s

    out = transient_day_night(score_at, np.zeros(1), lat, temperature=0.05)
    assert out["day_rises_share"] == 0.0  # bright's cosine rose, its probability fell
    assert out["night_rises_share"] == 1.0  # daylight took probability from night and dark


def test_card_renders_climate_tropics_and_class_sections():
    import json
    from pathlib import Path

    from omnimap.eval.card import render_card

    config = json.loads((Path(__file__).parent / "data" / "atlas-v1" / "config.json").read_text())
    config["training"] = {**config["training"], "steps": 7000, "step": 2000}
    config["dynamic"] = {"inputs": 17, "hidden": 64, "climate": True}
    modes = {"full": {d: {"R@1": 0.1, "R@5": 0.2, "R@10": 0.3, "median_rank": 9}
                      for d in ("overhead_to_ground", "ground_to_overhead")}}  # fmt: skip
    month = {"heat_vs_temperature": 0.7, "rain_vs_precipitation": 0.55}
    climate = {"cells": 100, "resolution": 0.5, "heat_prompt": "h", "rain_prompt": "r",
               "january": month, "july": month, "july_minus_january": 0.8}  # fmt: skip
    tropics = [{"prompt": "p", "when": "w", "ratio": 1.1, "row_mean_ratio": 1.4, "ok": True}]
    metrics = {
        "retrieval": {"samples": 10, "distinct_descriptions": 5, "modes": modes}, "holdout_blocks": 3, "time": [],
        "land_cover": {"cells": 5, "no_time": {"prompts": {}, "mean_auc": 0.5}, "imagery_only": {"prompts": {}, "mean_auc": 0.5}},
        "climate": climate, "tropics": tropics,
        "baseline": {"model": "atlas-v1", "climate": {**climate, "july_minus_january": 0.6},
                     "tropics": [{**tropics[0], "ratio": 3.0}]},
        "classes": {"igbp": {"cells": 9, "resolution": 0.1, "groups": list(GROUPS),
                             "methods": {"map": {"accuracy": 0.61, "macro_f1": 0.42}}},
                    "transient": {"cells": 7, "midnight": "m", "noon": "n", "night_share": 0.97,
                                  "day_share": 0.96, "night_top1_share": 0.99, "day_top1_share": 0.98,
                                  "night_rises_share": 0.93, "day_rises_share": 0.91}},
    }  # fmt: skip
    card = render_card(config, metrics)
    assert "| (July - January) heat map vs temperature change | 0.800 | 0.600 |" in card
    assert "| p | w | 1.10 | 1.40 | 3.00 |" in card
    assert "more likely at midnight than at noon on 0.930 of the cells" in card
    assert "| map | 0.610 | 0.420 |" in card and "0.970" in card
    assert "checkpoint written at step 2,000" in card and "5 climate values" in card
