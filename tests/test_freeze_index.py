"""Moore's freeze index: band ratio on pure tones, and separation of synthetic FOG from walking."""
from __future__ import annotations

import numpy as np

from deploy.freeze_index import freeze_index, freeze_index_detect, freeze_index_scores
from deploy.metrics import average_precision
from deploy.synth import synth_recording


def test_band_ratio_on_tones():
    rate = 100
    t = np.arange(20 * rate) / rate
    walk = np.sin(2 * np.pi * 1.8 * t)
    tremble = np.sin(2 * np.pi * 5.5 * t)
    assert np.median(freeze_index(walk, rate)) < 0.01
    assert np.median(freeze_index(tremble, rate)) > 100
    mix = freeze_index(walk + 0.5 * tremble, rate)
    assert 0.15 < np.median(mix) < 0.35  # power ratio 0.25


def test_separates_synthetic_fog_from_walking():
    aps, prevalence = [], []
    for seed in range(4):
        rec = synth_recording(4, seed=seed)
        y = rec.labels.max(1)
        aps.append(average_precision(y, freeze_index_scores(rec, window_s=4.0)))
        prevalence.append(y.mean())
    assert np.mean(aps) > 2 * np.mean(prevalence) and np.mean(aps) > 0.5


def test_detect_uses_threshold_and_gate():
    rec = synth_recording(2, seed=1)
    loose, strict = freeze_index_detect(rec, threshold=0.5), freeze_index_detect(rec, threshold=5.0)
    assert loose.sum() > strict.sum()
    gated = freeze_index_detect(rec, threshold=0.5, min_power=1e-3)
    assert gated.sum() < loose.sum()
