"""deploy.scoring, the one scorer: any-FOG AP and AUROC equal scikit-learn's, masks and unlabelled recordings count
right."""
from __future__ import annotations

import numpy as np
import pytest

from deploy.contract.events import EventSettings
from deploy.events import DEFAULT_SETTINGS
from deploy.recording import Recording
from deploy.scoring import FI_THRESHOLD, freeze_index_probability, score


def _rec(labels=None, mask=None, n=6400, kind="any", seed=0):
    acc = np.random.default_rng(seed).normal(size=(n, 3)) * 0.1 + [-1, 0, 0]
    meta = {"label_kind": kind, "name": f"r{seed}"}
    return Recording(acc, 64.0, "g", labels=labels, mask=mask, meta=meta)


@pytest.mark.parametrize("seed", range(5))
def test_any_fog_ap_equals_scikit_learn_on_random_cases(seed):
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    recs, probs, truth, scores = [], [], [], []
    for k in range(3):
        n = int(rng.integers(2000, 5000))
        lab = np.zeros((n, 3))
        lab[(rng.integers(0, n, 5)[:, None] + np.arange(200)[None, :]) % n, int(rng.integers(0, 3))] = 1
        mask = rng.random(n) < 0.9
        p = rng.random((n, 3)) * 0.5 + lab * rng.random((n, 1)) * 0.6
        p = np.round(p, 2)                               # ties, as real probabilities have
        recs.append(_rec(lab, mask, n=n, kind="typed", seed=k))
        probs.append(p)
        truth.append(lab.max(1)[mask] > 0.5)
        scores.append(p.max(1)[mask])
    result = score(recs, probs, DEFAULT_SETTINGS)
    truth_all, scores_all = np.concatenate(truth), np.concatenate(scores)
    assert result["any_fog"]["ap"] == pytest.approx(metrics.average_precision_score(truth_all, scores_all))
    # AUROC, pooled and per recording (valid samples only), as scikit-learn computes it
    assert result["any_fog"]["auroc"] == pytest.approx(metrics.roc_auc_score(truth_all, scores_all), abs=1e-12)
    for row, t, s in zip(result["per_recording"], truth, scores):
        assert row["any_fog_auroc"] == pytest.approx(metrics.roc_auc_score(t, s), abs=1e-12)


def test_time_based_sensitivity_specificity_and_masked_events():
    n = 64 * 120
    labels = np.zeros((n, 3))
    labels[64 * 30:64 * 50] = 1                          # one 20 s freeze
    mask = np.ones(n, bool)
    mask[64 * 90:] = False                               # the last 30 s are not part of the experiment
    prob = np.zeros(n)
    prob[64 * 40:64 * 60] = 0.9                          # called 40-60 s: half the freeze, 10 s too long
    prob[64 * 100:64 * 110] = 0.9                        # an event in the masked stretch: not a false alarm
    rec = _rec(labels, mask, n=n)
    result = score([rec], [prob], EventSettings.resolve({"smoothing_s": 0.0, "min_duration_s": 0.5}))["any_fog"]
    assert result["episodes_true"] == 1 and result["sensitivity"] == 1.0 and result["false_alarms"] == 0
    assert result["sensitivity_time"] == pytest.approx(0.5, abs=0.02)
    assert result["specificity_time"] == pytest.approx(1 - 10 / 70, abs=0.02)
    assert result["hours"] == pytest.approx(90 / 3600)


def test_unlabelled_recordings_count_every_event_as_false():
    n = 64 * 600
    prob = np.zeros(n)
    for start in (60, 200, 400):
        prob[64 * start:64 * (start + 5)] = 0.95
    result = score([_rec(n=n)], [prob], DEFAULT_SETTINGS)
    free = result["unlabelled"]
    assert free["false_alarms"] == 3 and free["false_alarms_per_hour"] == pytest.approx(3 / (600 / 3600))
    assert free["percent_time_called_fog"] == pytest.approx(100 * 15 / 600, abs=0.5)
    assert "any_fog" not in result


def test_freeze_index_probability_is_one_half_at_the_threshold():
    t = np.arange(64 * 20) / 64
    loco = np.sin(2 * np.pi * 1.5 * t)
    rec = Recording(np.stack([loco, 0 * t, 0 * t], 1), 64.0, "g")
    p = freeze_index_probability(rec)
    assert (p < 0.5).mean() > 0.9                        # walking: FI far below 1.5
    rec.acc[:, 0] += np.sin(2 * np.pi * 6 * t) * 3
    assert (freeze_index_probability(rec) > 0.5).mean() > 0.9
    assert FI_THRESHOLD == 1.5
