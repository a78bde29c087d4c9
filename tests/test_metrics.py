"""The competition metric against a hand-computed case and scikit-learn; event-level metrics."""
from __future__ import annotations

import numpy as np
import pytest

from deploy.events import Event
from deploy.metrics import (average_precision, competition_map, episodes, event_metrics, pool_event_metrics,
                            roc_auc)


def test_ap_hand_computed():
    # sorted scores 0.9(+) 0.8(-) 0.7(+) 0.6(-): P@R=.5 is 1, P@R=1 is 2/3 -> AP = .5*1 + .5*2/3
    assert average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.6]) == pytest.approx(0.5 + 1 / 3)
    # a tie between a positive and a negative counts as one threshold: P = 1/2 at R = 1
    assert average_precision([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
    assert np.isnan(average_precision([0, 0], [0.1, 0.2]))


def test_roc_auc_hand_computed():
    # pairs (+, -): (.9, .8) right, (.9, .6) right, (.7, .8) wrong, (.7, .6) right -> 3 of 4
    assert roc_auc([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.6]) == 0.75
    assert roc_auc([1, 0], [0.5, 0.5]) == 0.5                 # a tie counts one half
    assert roc_auc([0, 1, 1], [0.2, 0.2, 0.9]) == 0.75        # one pair tied, one right
    assert np.isnan(roc_auc([0, 0], [0.1, 0.2])) and np.isnan(roc_auc([1, 1], [0.1, 0.2]))


@pytest.mark.parametrize("ours, theirs, seed, cases, top, shift", [
    (average_precision, "average_precision_score", 0, 30, 2000, (0, 1)),
    (roc_auc, "roc_auc_score", 2, 40, 5000, (-0.5, 1)),
])
def test_ranking_metrics_match_scikit_learn_on_random_cases(ours, theirs, seed, cases, top, shift):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    for _ in range(cases):
        n = int(rng.integers(5, top))
        y = rng.random(n) < rng.uniform(0.01, 0.6)
        y[0], y[-1] = True, False
        s = np.round(rng.random(n) + y * rng.uniform(*shift), int(rng.integers(0, 4)))  # ties, some all tied
        assert ours(y, s) == pytest.approx(getattr(sklearn_metrics, theirs)(y, s), abs=1e-12)


def test_competition_map_masks_and_pools():
    rng = np.random.default_rng(1)
    lab = (rng.random((400, 3)) < 0.2).astype(float)
    score = rng.random((400, 3))
    mask = rng.random(400) < 0.7
    res = competition_map(lab, score, mask)
    assert res["Turn"] == pytest.approx(average_precision(lab[mask, 1], score[mask, 1]))
    assert res["mean"] == pytest.approx(np.mean([res[c] for c in ("StartHesitation", "Turn", "Walking")]))
    pooled = competition_map([lab[:200], lab[200:]], [score[:200], score[200:]], [mask[:200], mask[200:]])
    assert pooled == res


def test_event_metrics():
    rate = 10.0
    lab = np.zeros((36000, 3))        # one hour
    lab[100:150, 1] = 1               # 10-15 s
    lab[1000:1020, 2] = 1             # 100-102 s: missed
    events = [Event("Turn", 10.5, 14.0, 11.0, 0.9), Event("Walking", 500.0, 503.0, 500.5, 0.8)]
    m = event_metrics(lab, events, rate)
    assert m["episodes_true"] == 2 and m["sensitivity"] == 0.5
    assert m["false_alarms"] == 1 and m["false_alarms_per_hour"] == pytest.approx(1.0)
    assert m["latency_median_s"] == pytest.approx(1.0)
    assert m["percent_time_frozen_true"] == pytest.approx(100 * 70 / 36000)
    assert m["percent_time_frozen_pred"] == pytest.approx(100 * 65 / 36000)
    both = pool_event_metrics([m, m])
    assert both["false_alarms_per_hour"] == pytest.approx(1.0) and both["episodes_true"] == 4
    assert episodes(np.array([0, 1, 1, 0, 1])) == [(1, 3), (4, 5)]
