"""EventDetector: hysteresis, minimum duration, refractory merge, and chunked == one-shot."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deploy.errors import FogError
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
    with pytest.raises(FogError, match="each off threshold must be <= its on threshold"):
        EventDetector(rate_hz=RATE, on=0.3, off=0.5)


def _plain_moving_average(x, taps):
    """Mean of the non-NaN values among the last `taps` raw samples (fewer at the start); NaN if there are none."""
    out = np.full(x.shape, np.nan)
    for g in range(len(x)):
        for c in range(x.shape[1]):
            window = x[max(0, g - taps + 1):g + 1, c]
            window = window[~np.isnan(window)]
            if len(window):
                out[g, c] = sum(window) / len(window)
    return out


@pytest.mark.parametrize("chunk", [1, 5, 32, 1000])
def test_running_sum_smoothing_equals_a_plain_moving_average_with_nans(chunk):
    rng = np.random.default_rng(chunk)
    x = rng.random((700, 3))
    x[rng.random(x.shape) < 0.05] = np.nan       # scattered missing values are left out of the mean
    x[100:140, 1] = np.nan                       # a hole longer than the filter: NaN while it lasts
    det = EventDetector(rate_hz=RATE, smoothing_s=0.5)
    got = np.concatenate([det._smooth(x[i:i + chunk]).copy() for i in range(0, len(x), chunk)])
    expected = _plain_moving_average(x, det.taps)
    assert np.isnan(got[140 - 1, 1]) and np.isnan(expected[140 - 1, 1])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def _reference_events(s, on, off, min_len, refractory, rate):
    """The module docstring's state machine, one sample at a time, on already smoothed values (one class)."""
    events, start, seen_on, confirmed, detect, peak, low = [], None, False, False, None, 0.0, None
    for g, v in enumerate(s):
        if start is None:
            if not v >= off:
                continue
            start, seen_on, confirmed, peak, low = g, False, False, 0.0, None
        if v >= off:
            peak = max(peak, v)
            seen_on = seen_on or v >= on
            if low is not None and v >= on:
                low = None
            if not confirmed and seen_on and g - start + 1 >= min_len:
                confirmed, detect = True, g
        if v < off or low is not None:
            if not confirmed:
                start = None
            elif low is None:
                low = g
                if refractory == 0:
                    events.append((start, g, detect, peak))
                    start = None
            elif g - low >= refractory:
                events.append((start, low, detect, peak))
                start = None
    return events


@pytest.mark.parametrize("refractory_s", [0.0, 0.25, 1.0])
@pytest.mark.parametrize("chunk", [1, 13, 32, 5000])
def test_vectorized_state_machine_equals_a_per_sample_loop(refractory_s, chunk):
    rng = np.random.default_rng(int(refractory_s * 100) + chunk)
    base = np.repeat(rng.random((60, 3)) ** 2, RATE // 2, axis=0)      # plateaus of 0.5 s
    p = np.clip(base + rng.normal(0, 0.12, base.shape), 0, 1)
    p[rng.random(p.shape) < 0.01] = np.nan
    kw = {**KW, "refractory_s": refractory_s, "smoothing_s": 1 / RATE}  # 1 tap: the state machine sees p itself
    det, got = EventDetector(**kw), []
    for i in range(0, len(p), chunk):
        got += det.update(p[i:i + chunk])
    for c, cls in enumerate(det.classes):
        expected = _reference_events(p[:, c], kw["on"], kw["off"], det.min_len, det.refractory, RATE)
        mine = [(round(e.onset_s * RATE), round(e.offset_s * RATE), round(e.detect_s * RATE), e.peak)
                for e in got if e.cls == cls]
        # 1-tap smoothing is a difference of prefix sums: equal to p up to rounding
        assert [m[:3] for m in mine] == [e[:3] for e in expected]
        np.testing.assert_allclose([m[3] for m in mine], [e[3] for e in expected], rtol=0, atol=1e-12)
    assert len(got) >= 5


def _overlapping_freeze(rate: float = 64.0) -> np.ndarray:
    """(n, 4) probabilities: one freeze that crosses the threshold of two event classes at once, and a background
    class (column 3) high everywhere else."""
    probs = np.zeros((int(30 * rate), 4))
    probs[:, 3] = 0.95
    freeze = slice(int(10 * rate), int(16 * rate))
    probs[freeze, 0], probs[freeze, 1], probs[freeze, 3] = 0.8, 0.7, 0.0
    return probs


def test_one_any_fog_event_per_freeze_or_one_per_class_as_the_mode_says():
    from deploy.contract.events import EventSettings
    from deploy.events import Detection
    classes, probs = ("StartHesitation", "Turn", "Walking", "NoEvent"), _overlapping_freeze()
    knobs = {"on": {"StartHesitation": 0.6, "Turn": 0.65, "Walking": 0.9, "NoEvent": 0.5}, "off": 0.4}
    per_class = Detection.of(EventSettings.resolve(knobs, {"mode": "per_class"}), classes, [0, 1, 2], "max")
    found = per_class.events(probs, 64.0)
    assert sorted(e.cls for e in found) == ["StartHesitation", "Turn"]     # one freeze, two messages; no NoEvent
    anyfog = Detection.of(EventSettings.resolve(knobs, {"mode": "any"}), classes, [0, 1, 2], "max")
    (event,) = anyfog.events(probs, 64.0)
    assert event.cls == "FOG" and event.onset_s == pytest.approx(found[0].onset_s, abs=0.1)
    assert anyfog.detector_kwargs()["on"] == 0.6               # the least strict of the event classes' thresholds
    # the streaming detector sees what the offline one sees, chunk by chunk
    det = anyfog.detector(64.0)
    streamed = [e for k in range(0, len(probs), 100) for e in det.update(anyfog.rows(probs[k:k + 100]))]
    assert streamed + det.flush() == [event]
    # "sum": the event classes' shares add up (a softmax model): 0.35 + 0.3 crosses 0.6 where neither class does
    probs[:, :3] = np.where(probs[:, :3] > 0, [0.35, 0.3, 0.0], 0.0)
    assert per_class.events(probs, 64.0) == [] and len(Detection.of(
        EventSettings.resolve(knobs, {"mode": "any"}), classes, [0, 1, 2], "sum").events(probs, 64.0)) == 1


def test_the_event_mode_follows_the_training_labels():
    from calibration.checkpoint import checkpoint_info, trained_event_mode
    from deploy.contract.events import EventSettings
    from deploy.errors import ConfigError
    shipped = Path(__file__).resolve().parents[1] / "models" / "weights" / "fog-small.pt"
    if shipped.with_suffix(".json").is_file():      # trained on untyped Daphnet freezes (+ typed synthetic ones)
        assert trained_event_mode(checkpoint_info(shipped))[0] == "any"
    typed = {"train_data": {"sources": ["tdcsfog"], "label_kinds": {"typed": 40, "untyped": 0, "unlabelled": 0}}}
    mixed = {"train_data": {"sources": ["daphnet", "tdcsfog"], "label_kinds": {"typed": 4, "untyped": 1}}}
    assert trained_event_mode(typed)[0] == "per_class" and trained_event_mode(mixed)[0] == "any"
    assert trained_event_mode({})[0] is None                     # a user's weights say nothing: per_class stays
    assert EventSettings.from_dict({}).mode == "per_class"      # a bundle written before events.mode
    with pytest.raises(ConfigError, match="events.mode = 'anyfog': must be one of 'any', 'per_class'"):
        EventSettings.from_dict({"mode": "anyfog"})
