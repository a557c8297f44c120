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
