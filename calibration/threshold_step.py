"""The threshold step of the default's choice (round two's, with its walking budget): calibration.blend_choice picks
the on-threshold of its chosen network with it, calibration.event_choice a (timing, threshold) pair."""
from __future__ import annotations

SENS_FLOOR = 0.7     # pooled episode sensitivity every lab should keep (issue 25's bar)


def threshold_row(labs: dict, **setting) -> dict:
    """One setting of the threshold step: its labs' figures, worst-lab episode sensitivity and worst-lab ratio of
    false alarms per hour to the freeze index's."""
    sens = [f["sensitivity"] for f in labs.values() if f["sensitivity"] is not None]
    return {**setting, "labs": labs, "min_sensitivity": min(sens) if sens else None,
            "fa_ratio": max(f["false_alarms_per_hour"] / max(f["fi_false_alarms_per_hour"], 1e-9)
                            for f in labs.values())}


def keeps_floor(row: dict) -> bool:
    return row["min_sensitivity"] is None or row["min_sensitivity"] >= SENS_FLOOR


def threshold_step(rows: list[dict], max_per_hour=None, order=lambda r: (-r["on"],)) -> dict:
    """The rule's threshold step over `threshold_row`s: with `max_per_hour`, the rows within the walking budget (their
    walking_false_alarms_per_hour; if none is: the quietest); those keeping the floor on every lab, the smallest
    worst-lab false-alarm ratio; if none keeps it, the highest worst-lab sensitivity. Ties (to 1e-6): `order`
    (default: the higher threshold)."""
    if max_per_hour is not None:
        within = [r for r in rows if r["walking_false_alarms_per_hour"] <= max_per_hour]
        rows = within or [min(rows, key=lambda r: (r["walking_false_alarms_per_hour"], *order(r)))]
    eligible = [r for r in rows if keeps_floor(r)]
    if eligible:
        return min(eligible, key=lambda r: (round(r["fa_ratio"], 6), *order(r)))
    return min(rows, key=lambda r: (-round(r["min_sensitivity"], 6), *order(r)))
