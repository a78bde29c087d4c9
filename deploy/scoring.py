"""The one scorer: per-sample probabilities of a model (or of the freeze index) against recordings.

Everything `toolkit evaluate`, `calibration.model_report` and the LOSO study report comes from here, so a figure
means the same wherever it is printed:
- per class: the competition metric (AP per class over pooled samples) over recordings labelled with Kaggle's
  three types; recordings labelled "freeze" only (Daphnet, `meta["label_kind"] == "any"`) are left out of it;
- any FOG: AP and AUROC (the labs' own papers report AUROC) of max-over-classes against "any class labelled",
  per recording and pooled over them, time-based sensitivity and specificity (a
  sample counts as called FOG when it lies inside a detected event; comparable with Bachlin 2010's per-sample
  figures), episode sensitivity, false alarms per hour and onset latency (deploy.metrics.event_metrics);
- recordings without labels (declared FOG-free, e.g. real walking): time called FOG and false alarms per hour
  (every event is false there).
Only valid samples count (mask: defog Valid & Task, Daphnet annotation != 0); an event whose onset lies in an
invalid stretch is neither a hit nor a false alarm. Events are found as the daemon finds them (deploy.events
.Detection, the bundle's settings and `mode`): one any-FOG event per freeze ("any"), or one per event class that
crosses its threshold ("per_class": every such event is a message, so each counts, as a hit or a false alarm). Each
recording's figures list the events scored (`event_list`, the daemon's message fields, `counted` False where the
onset lies in an invalid stretch).

The freeze index (Moore 2008; Bachlin 2010's 4 s window and threshold 1.5) is the baseline: `freeze_index_
probability` turns ln FI into a probability-like score that is exactly 0.5 at the threshold, so the same detector
and the same settings apply to it and to the model.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from deploy.contract import CLASSES, EVENT_DEFAULTS
from deploy.contract.events import EventSettings
from deploy.event_classes import any_fog
from deploy.events import Detection
from deploy.freeze_index import THRESHOLD as FI_THRESHOLD
from deploy.freeze_index import WINDOW_S as FI_WINDOW_S
from deploy.freeze_index import freeze_index_scores
from deploy.metrics import average_precision, competition_map, event_metrics, pool_event_metrics, roc_auc

FI_SLOPE = 4.0           # steepness of the FI -> probability map (ranking, hence AP, does not depend on it)


def freeze_index_probability(recording, window_s: float = FI_WINDOW_S, threshold: float = FI_THRESHOLD):
    """(n,) probability-like FI score at the recording's rate: 0.5 exactly where FI equals `threshold`."""
    ln_fi = freeze_index_scores(recording, window_s=window_s)
    return 1.0 / (1.0 + np.exp(-(ln_fi - math.log(threshold)) * FI_SLOPE))


def freeze_index_settings(settings) -> EventSettings:
    """Event settings for the freeze index beside a model: the model's timings (hop, smoothing, durations), but the
    index's own threshold (probability 0.5 = FI at its threshold) and the default hysteresis, whatever on/off the
    model's bundle uses (an on-threshold of 0.7 would otherwise ask the index for FI > 1.85, not Bachlin's 1.5)."""
    return replace(EventSettings.resolve(settings), on=EVENT_DEFAULTS["on"], off=EVENT_DEFAULTS["off"])


def at_recording_rate(probs: np.ndarray, model_rate_hz: float, recording) -> np.ndarray:
    """Model-rate per-sample probabilities -> one row per recording sample (nearest earlier model sample)."""
    idx = np.minimum((np.arange(recording.n_samples) / recording.rate_hz * model_rate_hz).astype(int),
                     len(probs) - 1)
    return np.asarray(probs)[idx]


def any_fog_settings(settings, classes=None) -> dict:
    """Detector settings for one "FOG" class: the least strict per-class threshold of `settings` (event settings:
    an EventSettings, or a partial dict of its keys) over the event `classes` (default all; EventSettings.any_fog)."""
    return EventSettings.resolve(settings).any_fog(classes).detector_kwargs()


def any_fog_events(any_prob: np.ndarray, rate_hz: float, settings):
    """The events of an (n,) any-FOG score (one stream, whatever the settings' mode)."""
    return detection(settings, ()).events(np.asarray(any_prob, dtype=np.float64), rate_hz)


def detection(settings, classes, rule: str = "max") -> Detection:
    """A Detection over probabilities whose columns are `classes` (all of them event classes); `settings` may be a
    Detection already (kept), an EventSettings or a partial dict of event keys."""
    if isinstance(settings, Detection):
        return settings
    return Detection.of(settings, classes, None, rule)


def column_names(probs, classes=None) -> tuple:
    """The names of the columns of (n, C) probabilities: `classes`, else the three FOG classes, else class0...;
    an (n,) any-FOG score names none."""
    if np.ndim(probs) == 1:
        return ()
    if classes is not None:
        return tuple(classes)
    width = np.shape(probs)[1]
    return CLASSES if width == len(CLASSES) else tuple(f"class{i}" for i in range(width))


def event_mask(events, n: int, rate_hz: float) -> np.ndarray:
    """(n,) True inside detected events."""
    called = np.zeros(n, bool)
    for ev in events:
        a = max(0, int(round(ev.onset_s * rate_hz)))
        b = n if ev.offset_s is None else int(round(ev.offset_s * rate_hz))
        called[a:min(n, max(b, a + 1))] = True
    return called


def is_typed(recording) -> bool:
    """Labels carry Kaggle's three types (not a single "freeze" label copied into each column)."""
    return recording.labels is not None and recording.meta.get("label_kind", "typed") != "any"


def _valid(recording) -> np.ndarray:
    return np.ones(recording.n_samples, bool) if recording.mask is None else np.asarray(recording.mask, bool)


def event_figures(recording, probs: np.ndarray, settings) -> tuple[dict, np.ndarray]:
    """The part of a recording's figures that moves with the event settings: (figures, called), `called` (n_valid,)
    True inside a counted event. `probs`: (n,) any-FOG or (n, K) event-class probabilities at the recording's rate;
    `settings`: a deploy.events.Detection (or event settings: columns named as `column_names` says). Events whose
    onset lies in an invalid stretch are not counted. Both `score_recording` and the threshold sweep
    (deploy.operating_points) score events through here, once."""
    rate, valid = recording.rate_hz, _valid(recording)
    found = detection(settings, column_names(probs)).events(probs, rate)
    counted = [bool(valid[min(recording.n_samples - 1, int(round(e.onset_s * rate)))]) for e in found]
    events = [e for e, ok in zip(found, counted) if ok]
    called = event_mask(events, recording.n_samples, rate)[valid]
    out = {"name": recording.meta.get("name") or recording.meta.get("id"), "subject": recording.meta.get("subject"),
           "hours": float(valid.sum()) / rate / 3600.0, "events": len(events),
           "percent_time_called_fog": 100.0 * float(called.mean()) if called.size else float("nan"),
           "event_list": [{"class": e.cls, "onset_s": e.onset_s, "offset_s": e.offset_s, "detect_s": e.detect_s,
                           "peak": e.peak, "counted": ok} for e, ok in zip(found, counted)]}
    if recording.labels is None:
        out["false_alarms"] = len(events)
        out["false_alarms_per_hour"] = len(events) / out["hours"] if out["hours"] else float("nan")
    else:
        labels = np.where(valid[:, None], recording.labels, 0.0)   # episodes only where samples count
        out["event_metrics"] = event_metrics(labels, events, rate, valid)
    return out, called


def score_recording(recording, probs: np.ndarray, settings, rule: str = "max") -> dict:
    """Figures of one recording (labelled or not); `probs` (n,) any-FOG or (n, K) event-class probabilities at the
    recording's rate, `settings` as event_figures takes them, `rule` the any-FOG rule of its AP and AUROC."""
    out, called = event_figures(recording, probs, settings)
    if recording.labels is None:
        return out
    valid = _valid(recording)
    any_prob = any_fog(probs, rule=rule)
    t = (recording.labels.max(axis=1) > 0.5)[valid]
    out["any_fog_ap"] = average_precision(t, any_prob[valid])
    out["any_fog_auroc"] = roc_auc(t, any_prob[valid])
    out["sensitivity_time"] = float(called[t].mean()) if t.any() else float("nan")
    out["specificity_time"] = float((~called[~t]).mean()) if (~t).any() else float("nan")
    out["n_fog"], out["n_not_fog"] = int(t.sum()), int((~t).sum())
    return out


def score(recordings, probs, settings, name: str = "model", event_columns=None,
          any_fog_rule: str = "max", classes=None) -> dict:
    """Figures for per-recording probabilities: `probs[i]` is (n_i, C) class probabilities or (n_i,) any-FOG
    scores (class-agnostic, the same for every class) at recording i's rate. Pooled over recordings; per recording
    under "per_recording". `settings`: event settings (their `mode` says how events are raised); `classes` names the
    C columns (default `column_names`); `event_columns` (default all) leaves background classes out;
    `any_fog_rule` "max" or "sum" of the event classes (deploy.event_classes, from the bundle's manifest)."""
    probs = [np.asarray(p, dtype=np.float64) for p in probs]
    names = column_names(next((p for p in probs if p.ndim == 2), probs[0] if probs else np.zeros(0)), classes)
    if event_columns is not None:
        probs = [p if p.ndim == 1 else p[:, list(event_columns)] for p in probs]
        names = tuple(names[i] for i in event_columns)
    detect = detection(settings, names, any_fog_rule)
    any_probs = [any_fog(p, rule=any_fog_rule) for p in probs]
    per = [score_recording(r, p, detect, any_fog_rule) for r, p in zip(recordings, probs)]
    result = {"name": name, "per_recording": per}
    # a class-agnostic score (the freeze index) scores every class with the same value
    typed = [(r, p if p.ndim == 2 else np.repeat(p[:, None], r.labels.shape[1], axis=1))
             for r, p in zip(recordings, probs) if is_typed(r)]
    if typed:
        result["ap"] = competition_map([r.labels for r, _ in typed], [p for _, p in typed],
                                       [_valid(r) for r, _ in typed])
    labelled = [(r, a, s) for r, a, s in zip(recordings, any_probs, per) if r.labels is not None]
    if labelled:
        result["any_fog"] = _pool_labelled(labelled)
    unlabelled = [s for r, s in zip(recordings, per) if r.labels is None]
    if unlabelled:
        hours = sum(s["hours"] for s in unlabelled)
        fa = sum(s["false_alarms"] for s in unlabelled)
        result["unlabelled"] = {"recordings": len(unlabelled), "hours": hours, "false_alarms": fa,
                                "false_alarms_per_hour": fa / hours if hours else float("nan"),
                                "percent_time_called_fog": sum(s["percent_time_called_fog"] * s["hours"]
                                                               for s in unlabelled) / hours if hours else float("nan")}
    return result


def _pool_labelled(items) -> dict:
    truth = np.concatenate([r.labels.max(axis=1)[_valid(r)] > 0.5 for r, _, _ in items])
    scores = np.concatenate([a[_valid(r)] for r, a, _ in items])
    pooled = pool_event_metrics([s["event_metrics"] for _, _, s in items])
    pooled.pop("latencies_s", None)
    n_fog = sum(s["n_fog"] for _, _, s in items)
    n_not = sum(s["n_not_fog"] for _, _, s in items)
    sens = sum(s["sensitivity_time"] * s["n_fog"] for _, _, s in items if s["n_fog"])
    spec = sum(s["specificity_time"] * s["n_not_fog"] for _, _, s in items if s["n_not_fog"])
    hours = sum(s["hours"] for _, _, s in items)
    return {"ap": average_precision(truth, scores), "auroc": roc_auc(truth, scores),
            "sensitivity_time": sens / n_fog if n_fog else float("nan"),
            "specificity_time": spec / n_not if n_not else float("nan"),
            "percent_time_called_fog": sum(s["percent_time_called_fog"] * s["hours"] for _, _, s in items) / hours
            if hours else float("nan"), **pooled}


def json_safe(value):
    """Strict JSON: NaN becomes null, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value
