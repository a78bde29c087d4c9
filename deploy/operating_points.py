"""Operating points: a scorer's episode sensitivity against false alarms per hour as its on-threshold moves.

A detector's threshold is a choice between missed freezes and cues that were not needed; which one a wearer needs
depends on them (a cue every six minutes is 10 false alarms/h). The sweep runs the event detector at each
on-threshold of a grid, everything else as the scorer's settings say, and scores the events with the project's one
scorer (`deploy.scoring.event_figures`, pooled as `deploy.scoring.score` pools them), so the point at the current
threshold is exactly what `toolkit evaluate` reports for it.

- Every event class's on-threshold moves to t together; each off-threshold stays the settings' own and is never
  above on: at on = t, off = min(off, t). Events are raised as the settings' `mode` says (deploy.events.Detection).
  A point names the pair (on, off) that was scored, off as the least strict class (`any_fog_settings`).
- False alarms count on every recording given: events overlapping no labelled episode, and every event on a
  recording without labels (declared FOG-free), over all valid hours. Sensitivity counts labelled episodes found.
- `choose(points, fa_per_hour)`: coming down from the strictest threshold, the thresholds whose false alarms stay at
  or below the rate, up to the first that does not; of these, the one that finds the most episodes (ties: the lowest
  threshold, the most sensitive). Stopping at the first threshold over the rate keeps the choice away from the low
  thresholds where events merge into a few long ones that overlap every freeze (no false alarm, half the time
  called FOG): every stricter threshold keeps to the rate too. None when even the strictest does not.
"""
from __future__ import annotations

import math

import numpy as np

from deploy.metrics import pool_event_metrics
from deploy.contract.events import EventSettings
from deploy.scoring import FI_SLOPE, any_fog_settings, column_names, detection, event_figures

# Probability thresholds: every 0.05 in the middle, and 1-2-5 steps of the distance to 0 and to 1 in the tails,
# because a confident model's freezes and false alarms part ways above 0.99 (the default's on is 0.9; on Daphnet
# its false alarms fall from 27 to 8 per hour between 0.99 and 0.9999).
GRID = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03, *(round(0.05 * k, 2) for k in range(1, 20)), 0.97, 0.98, 0.99,
        0.995, 0.998, 0.999, 0.9995, 0.9998, 0.9999, 0.99995, 0.99999)


def thresholds(current: float, grid=GRID) -> list[float]:
    """The grid with the current on-threshold in it (so its point is in the sweep)."""
    return sorted({float(t) for t in grid} | {float(current)})


def settings_at(settings, on: float) -> EventSettings:
    """`settings` with every on-threshold at `on` and each off at min(off, on): what the point at `on` scores."""
    settings = EventSettings.resolve(settings)
    off = settings.off
    low = ({c: min(float(v), float(on)) for c, v in off.items()} if isinstance(off, dict)
           else min(float(off), float(on)) if np.ndim(off) == 0 else [min(float(v), float(on)) for v in off])
    return EventSettings.resolve(settings, {"on": float(on), "off": low})


def operating_point(recordings, probs, detect) -> dict:
    """Pooled event figures of probabilities (one (n,) any-FOG or (n, K) event-class array per recording) with
    `detect` (a deploy.events.Detection)."""
    labelled, free_alarms, free_hours, called, hours = [], 0, 0.0, 0.0, 0.0
    for rec, prob in zip(recordings, probs):
        fig, _ = event_figures(rec, prob, detect)
        hours += fig["hours"]
        if fig["hours"]:
            called += fig["percent_time_called_fog"] * fig["hours"]
        if "event_metrics" in fig:
            labelled.append(fig["event_metrics"])
        else:
            free_alarms += fig["false_alarms"]
            free_hours += fig["hours"]
    pooled = pool_event_metrics(labelled) if labelled else {}
    alarms = pooled.get("false_alarms", 0) + free_alarms
    knobs = detect.detector_kwargs() if detect.settings.any_event else \
        any_fog_settings(detect.settings, detect.event_classes)
    return {"on": knobs["on"], "off": knobs["off"], "episodes_true": pooled.get("episodes_true", 0),
            "episodes_found": round(pooled["sensitivity"] * pooled["episodes_true"]) if pooled.get("episodes_true")
            else 0, "sensitivity": pooled.get("sensitivity", float("nan")), "false_alarms": alarms,
            "hours": hours, "false_alarms_per_hour": alarms / hours if hours else float("nan"),
            "false_alarms_labelled": pooled.get("false_alarms", 0), "false_alarms_fog_free": free_alarms,
            "latency_median_s": pooled.get("latency_median_s", float("nan")),
            "percent_time_called_fog": called / hours if hours else float("nan")}


def sweep(recordings, probs, settings, grid=GRID, classes=None, rule: str = "max") -> dict:
    """{"current": the settings' on (the least strict class), "points": one operating_point per threshold
    (ascending)}. `probs`: per recording, (n,) any-FOG or (n, K) event-class probabilities named `classes`
    (default deploy.scoring.column_names), their any-FOG rule `rule`."""
    probs = [np.asarray(p, dtype=np.float64) for p in probs]
    names = column_names(probs[0], classes) if probs else ()
    current = any_fog_settings(settings, names)["on"]
    return {"current": current,
            "points": [operating_point(recordings, probs, detection(settings_at(settings, t), names, rule))
                       for t in thresholds(current, grid)]}


def choose(points: list[dict], fa_per_hour: float) -> dict | None:
    """The point to run at for at most `fa_per_hour` false alarms per hour (see the module docstring)."""
    block = []
    for p in sorted(points, key=lambda p: -p["on"]):
        if not p["false_alarms_per_hour"] <= fa_per_hour:      # NaN (no hours) stops too
            break
        block.append(p)
    return min(block, key=lambda p: (-p["episodes_found"], p["on"])) if block else None


def freeze_index_at(on: float, fi_threshold: float) -> float:
    """The freeze index a probability threshold of `deploy.scoring.freeze_index_probability` stands for."""
    if on <= 0 or on >= 1:
        return 0.0 if on <= 0 else math.inf
    return fi_threshold * math.exp(math.log(on / (1 - on)) / FI_SLOPE)
