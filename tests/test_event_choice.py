"""calibration.event_choice: the event timing chosen with the threshold (models/weights/CHOICE_RULE_ROUND6.md)."""
import numpy as np

from calibration.blend_choice import summarize
from calibration.event_choice import SHIPPED, pick, timings
from deploy.recording import Recording

RATE = 64.0


def _row(timing, on, sens, ratio, walking):
    return {"timing": timing, "on": on, "min_sensitivity": sens, "fa_ratio": ratio,
            "walking_false_alarms_per_hour": walking}


def test_the_grid_holds_the_shipped_timing():
    assert SHIPPED in timings() and len(timings()) == 8


def test_the_walking_budget_then_the_floor_then_the_alarm_ratio():
    long_ = {"smoothing_s": 1.0, "min_duration_s": 2.0}
    rows = [_row(SHIPPED, 0.3, 0.64, 0.3, 9.0), _row(SHIPPED, 0.2, 0.72, 0.4, 26.0),    # 0.2: too loud on walking
            _row(long_, 0.2, 0.71, 0.5, 8.0), _row(long_, 0.25, 0.70, 0.6, 7.0)]
    assert pick(rows) == rows[2]                         # keeps the floor within the budget, the smaller ratio
    assert pick(rows, budget=30.0) == rows[1]            # a looser budget: the shipped timing's 0.2 is smaller still
    # nobody keeps the floor: the highest worst-lab sensitivity
    low = [dict(r, min_sensitivity=r["min_sensitivity"] - 0.1) for r in rows]
    assert pick(low) == low[2]
    # a tie: the shipped timing first, then the higher threshold
    tied = [_row(long_, 0.3, 0.6, 0.3, 1.0), _row(SHIPPED, 0.3, 0.6, 0.3, 1.0), _row(SHIPPED, 0.4, 0.6, 0.3, 1.0)]
    assert pick(tied) == tied[2]
    # nothing within the budget: the pair raising the fewest alarms on walking
    assert pick([_row(SHIPPED, 0.3, 0.9, 0.1, 12.0), _row(long_, 0.3, 0.5, 0.1, 11.0)])["timing"] == long_


def test_a_timing_changes_which_blips_become_events():
    # one 3 s freeze found either way, and a 0.75 s blip on walking: an event (a false alarm) only where the minimum
    # duration is shorter than the blip
    n = int(60 * RATE)
    labels = np.zeros((n, 3))
    labels[int(20 * RATE):int(23 * RATE), 2] = 1.0
    prob = np.full(n, 0.05)
    prob[int(20 * RATE):int(23 * RATE)] = 0.9
    prob[int(40 * RATE):int(40.75 * RATE)] = 0.9
    rec = Recording(np.zeros((n, 3)), RATE, "g", labels=labels, meta={"id": "r", "subject": "A", "lab": "one"})
    short = {"smoothing_s": 0.5, "min_duration_s": 0.5}
    counts = {name: summarize([rec], [prob], (0.5,), timing).counts["A"]["0.5"]
              for name, timing in (("short", short), ("shipped", SHIPPED))}
    assert counts["short"]["found"] == counts["shipped"]["found"] == 1
    assert (counts["short"]["alarms"], counts["shipped"]["alarms"]) == (1, 0)


def test_the_walking_budget_counts_alarms_with_the_timing_asked():
    from calibration.walking_budget import WalkingBudget
    n = int(60 * RATE)
    walk = Recording(np.zeros((n, 3)), RATE, "g", meta={"id": "w", "subject": "W"})
    prob = np.full((n, 3), 0.05)
    prob[int(30 * RATE):int(30.75 * RATE)] = 0.9          # one 0.75 s blip on FOG-free walking

    budget = WalkingBudget([walk], lambda network: [("calls", "spec")],
                           lambda calls, spec, recordings, blend, power: [prob])
    short = budget.per_hour("net", 0.25, 1.0, (0.5,), 0.15, {"smoothing_s": 0.5, "min_duration_s": 0.5})
    shipped = budget.per_hour("net", 0.25, 1.0, (0.5,), 0.15, SHIPPED)
    hours = n / RATE / 3600
    assert short[0.5] == 1 / hours and shipped[0.5] == 0.0      # each timing its own figure, not a cached one
