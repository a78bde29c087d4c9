"""The competition metric and the event-level figures clinicians ask for.

- `average_precision`: scikit-learn's definition (step-wise, no interpolation; tied scores form one threshold).
- `roc_auc`: the area under the ROC curve, exact (Mann-Whitney U with mid-ranks: a tied positive/negative pair
  counts one half, as scikit-learn's roc_auc_score), the figure the labs' papers report (O'Day 2022: AUROC).
- `competition_map`: AP per class over all time steps pooled across recordings, mean over the classes that have
  positives; defog rows with Valid or Task false (mask False) are excluded.
- `event_metrics`: episode sensitivity, false alarms per hour, onset detection latency (median and 90th
  percentile), percent time frozen and episode counts, for "any FOG" (classes merged, as a cue would be).
"""
from __future__ import annotations

import numpy as np

from deploy.recording import CLASSES


def average_precision(y_true, scores) -> float:
    """AP = sum over thresholds of (R_k - R_{k-1}) * P_k; nan when there is no positive."""
    y = np.asarray(y_true, dtype=bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
    tp = np.cumsum(y)[last_of_tie]
    precision = tp / (last_of_tie + 1)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_auc(y_true, scores) -> float:
    """P(score of a random positive > score of a random negative) + P(tie) / 2; nan without both classes.

    Mid-ranks: tied scores share the mean of the ranks they span, so the rank sum of the positives minus its minimum
    n_pos (n_pos + 1) / 2 is U, the count of (positive, negative) pairs ordered right, ties one half. The ranks are
    half-integers and their sum stays below 2^52 for any recording that fits in memory: the figure is exact."""
    y = np.asarray(y_true, dtype=bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ordered = s[order]
    starts = np.r_[0, np.flatnonzero(ordered[1:] != ordered[:-1]) + 1]
    ends = np.r_[starts[1:], len(s)]
    ranks = np.repeat((starts + 1 + ends) / 2.0, ends - starts)     # ranks starts+1 .. ends share their mean
    u = float(ranks[y[order]].sum()) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def competition_map(labels, scores, mask=None, classes=CLASSES) -> dict:
    """labels/scores: (n, C) arrays or lists of them (pooled); mask: (n,) bool or list, None = all rows.
    Returns {class: AP, ..., "mean": mean over classes with positives}."""
    if isinstance(labels, (list, tuple)):
        masks = mask if mask is not None else [None] * len(labels)
        masks = [np.ones(len(lab), bool) if m is None else np.asarray(m, bool) for lab, m in zip(labels, masks)]
        labels, scores, mask = np.concatenate(labels), np.concatenate(scores), np.concatenate(masks)
    labels, scores = np.asarray(labels), np.asarray(scores)
    keep = np.ones(len(labels), bool) if mask is None else np.asarray(mask, bool)
    result = {c: average_precision(labels[keep, i], scores[keep, i]) for i, c in enumerate(classes)}
    valid = [v for v in result.values() if not np.isnan(v)]
    result["mean"] = float(np.mean(valid)) if valid else float("nan")
    return result


def episodes(binary: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) index pairs of the runs of True."""
    b = np.r_[False, np.asarray(binary, bool), False]
    edges = np.flatnonzero(np.diff(b.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def overlaps(event_onset_s: float, event_offset_s: float | None, onset_s: float, offset_s: float) -> bool:
    """An event (offset None: still open) overlaps the span [onset_s, offset_s): touching its edge is not enough.
    The rule of an episode found and of a false alarm (event_metrics, calibration.episode_reach)."""
    return event_onset_s < offset_s and (np.inf if event_offset_s is None else event_offset_s) > onset_s


def event_metrics(labels: np.ndarray, events, rate_hz: float, mask=None) -> dict:
    """Compare detected events (deploy.events.Event, any class) with labelled episodes (any class).

    A true episode is detected if an event overlaps it; its latency is the first overlapping event's detect_s
    minus the episode onset (negative if the detector fired early, inside a rising smoothed probability). An event
    overlapping no true episode is a false alarm. Hours count every sample (or the masked ones)."""
    truth = np.asarray(labels).reshape(len(labels), -1).max(axis=1) > 0.5
    n = len(truth)
    hours = (n if mask is None else int(np.sum(mask))) / rate_hz / 3600.0
    true_eps = [(a / rate_hz, b / rate_hz) for a, b in episodes(truth)]
    detected, latencies, false_alarms = 0, [], 0
    pred = np.zeros(n, bool)
    for ev in events:
        a = int(round(ev.onset_s * rate_hz))
        b = int(round((ev.offset_s if ev.offset_s is not None else n / rate_hz) * rate_hz))
        pred[max(0, a):min(n, max(b, a + 1))] = True
    for onset, offset in true_eps:
        hits = [ev for ev in events if overlaps(ev.onset_s, ev.offset_s, onset, offset)]
        if hits:
            detected += 1
            latencies.append(min(ev.detect_s for ev in hits) - onset)
    for ev in events:
        if not any(overlaps(ev.onset_s, ev.offset_s, on, off) for on, off in true_eps):
            false_alarms += 1
    lat = np.array(latencies)
    return {
        "episodes_true": len(true_eps),
        "episodes_detected": len(list(events)),
        "sensitivity": detected / len(true_eps) if true_eps else float("nan"),
        "false_alarms": false_alarms,
        "false_alarms_per_hour": false_alarms / hours if hours else float("nan"),
        "latency_median_s": float(np.median(lat)) if lat.size else float("nan"),
        "latency_p90_s": float(np.percentile(lat, 90)) if lat.size else float("nan"),
        "percent_time_frozen_true": 100.0 * truth.mean() if n else float("nan"),
        "percent_time_frozen_pred": 100.0 * pred.mean() if n else float("nan"),
        "hours": hours,
        "latencies_s": lat.tolist(),
    }


def pool_event_metrics(per_recording: list[dict]) -> dict:
    """Combine event_metrics of several recordings: counts summed, rates over the total hours, latencies pooled."""
    if not per_recording:
        return {}
    hours = sum(m["hours"] for m in per_recording)
    true = sum(m["episodes_true"] for m in per_recording)
    hit = sum(round(m["sensitivity"] * m["episodes_true"]) for m in per_recording if m["episodes_true"])
    fa = sum(m["false_alarms"] for m in per_recording)
    lat = np.array([x for m in per_recording for x in m["latencies_s"]])
    return {"episodes_true": true, "episodes_detected": sum(m["episodes_detected"] for m in per_recording),
            "sensitivity": hit / true if true else float("nan"), "false_alarms": fa,
            "false_alarms_per_hour": fa / hours if hours else float("nan"),
            "latency_median_s": float(np.median(lat)) if lat.size else float("nan"),
            "latency_p90_s": float(np.percentile(lat, 90)) if lat.size else float("nan"),
            "percent_time_frozen_true": sum(m["percent_time_frozen_true"] * m["hours"] for m in per_recording) / hours,
            "percent_time_frozen_pred": sum(m["percent_time_frozen_pred"] * m["hours"] for m in per_recording) / hours,
            "hours": hours, "latencies_s": lat.tolist()}
