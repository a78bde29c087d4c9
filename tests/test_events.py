"""EventDetector: hysteresis, minimum duration, refractory merge, and chunked == one-shot."""
from __future__ import annotations

import numpy as np
import pytest

from deploy.events import Event, EventDetector, detect_events

RATE = 64


def _probs(seconds=60):
    p = np.zeros((RATE * seconds, 3))
    p[10 * RATE:14 * RATE, 1] = 0.9            # a 4 s Turn freeze
    p[20 * RATE:20 * RATE + 10, 0] = 0.95      # 0.16 s blip: shorter than min duration
    p[30 * RATE:33 * RATE, 2] = 0.9            # Walking freeze with a 0.5 s dip, merged by refractory
    p[int(33.5 * RATE):35 * RATE, 2] = 0.9
    p[50 * RATE:, 2] = 0.8                     # still frozen when the stream ends
    return p


KW = dict(rate_hz=RATE, on=0.6, off=0.4, min_duration_s=0.5, smoothing_s=0.25, refractory_s=1.0)


def test_episodes_found_with_onset_offset_detect_and_peak():
    events = detect_events(_probs(), **KW)
    assert [e.cls for e in events] == ["Turn", "Walking", "Walking"]
    turn = events[0]
    assert abs(turn.onset_s - 10) < 0.1 and abs(turn.offset_s - 14) < 0.1
    assert turn.onset_s + 0.5 <= turn.detect_s <= turn.onset_s + 0.5 + 0.25 and abs(turn.peak - 0.9) < 1e-9
    merged = events[1]
    assert abs(merged.onset_s - 30) < 0.1 and abs(merged.offset_s - 35) < 0.1
    assert events[2].offset_s == pytest.approx(60.0)


def test_without_refractory_the_dip_splits_the_episode():
    events = detect_events(_probs(), **{**KW, "refractory_s": 0.0})
    assert [e.cls for e in events] == ["Turn", "Walking", "Walking", "Walking"]


@pytest.mark.parametrize("chunk", [1, 7, 32, 333])
def test_chunked_updates_equal_one_update(chunk):
    rng = np.random.default_rng(chunk)
    p = np.clip(_probs() + rng.normal(0, 0.15, _probs().shape), 0, 1)
    one = detect_events(p, **KW)
    det, got = EventDetector(**KW), []
    for i in range(0, len(p), chunk):
        got += det.update(p[i:i + chunk])
    got += det.flush()
    assert sorted(got, key=lambda e: (e.onset_s, e.cls)) == one and len(one) >= 3


def test_started_reports_the_decision_as_it_happens():
    det = EventDetector(**KW)
    cues = []
    for i in range(0, len(_probs()), 16):
        finished = det.update(_probs()[i:i + 16])
        cues += det.started
        assert all(e.offset_s is not None for e in finished)
    assert [c.cls for c in cues][:2] == ["Turn", "Walking"] and cues[0].offset_s is None
    assert isinstance(cues[0], Event)


def test_per_class_thresholds_and_validation():
    p = np.zeros((RATE * 10, 3))
    p[RATE:4 * RATE, :] = 0.55
    events = detect_events(p, **{**KW, "on": {"StartHesitation": 0.5, "Turn": 0.6, "Walking": 0.5}})
    assert sorted(e.cls for e in events) == ["StartHesitation", "Walking"]
    with pytest.raises(ValueError):
        EventDetector(rate_hz=RATE, on=0.3, off=0.5)
