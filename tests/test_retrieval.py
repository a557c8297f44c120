"""Retrieval metrics: 1-based ranks, R@k with <=, the right matrix orientation."""

import numpy as np
import pytest

from omnimap.eval.retrieval import both_directions, ranks, retrieval_metrics


def test_identity_gives_perfect_scores():
    import omnimap.eval

    m = omnimap.eval.retrieval_metrics(np.eye(5), ks=(1, 5, 10))  # the documented entry point
    assert m == {"R@1": 1.0, "R@5": 1.0, "R@10": 1.0, "median_rank": 1.0}


def test_ranks_are_one_based_and_r_at_k_inclusive():
    # query 0: match best (rank 1); query 1: one item higher (rank 2); query 2: rank 3
    sim = np.array([[0.9, 0.1, 0.2], [0.5, 0.4, 0.1], [0.3, 0.8, 0.1]])
    assert ranks(sim).tolist() == [1, 2, 3]
    m = retrieval_metrics(sim, ks=(1, 2, 3))
    assert m["R@1"] == pytest.approx(1 / 3) and m["R@2"] == pytest.approx(2 / 3) and m["R@3"] == 1.0
    assert m["median_rank"] == 2.0


def test_median_rank_uses_queries_of_this_matrix_not_its_transpose():
    # Row-wise ranks are [2, 2, 1]; column-wise (the transposed bug) [1, 1, 3].
    sim = np.array([[0.9, 0.0, 0.95], [0.0, 0.9, 0.95], [0.0, 0.0, 0.1]])
    assert ranks(sim).tolist() == [2, 2, 1]
    assert ranks(sim.T).tolist() == [1, 1, 3]
    both = both_directions(np.eye(3), sim.T)  # a @ b.T = sim
    assert both["forward"]["median_rank"] == 2.0 and both["backward"]["median_rank"] == 1.0


def test_identical_descriptions_count_as_matches():
    sim = np.array([[0.2, 0.9, 0.1], [0.9, 0.2, 0.1], [0.1, 0.2, 0.3]])
    assert ranks(sim).tolist() == [2, 2, 1]
    assert ranks(sim, labels=np.array([4, 4, 5])).tolist() == [1, 1, 1]


def test_random_scores_give_chance_level():
    rng = np.random.default_rng(0)
    m = retrieval_metrics(rng.standard_normal((2000, 2000)))
    assert 0.003 < m["R@10"] < 0.01
    assert 800 < m["median_rank"] < 1200


def test_rejects_non_square():
    with pytest.raises(ValueError):
        ranks(np.zeros((2, 3)))
