"""Issue 25's acceptance bars, read off one `calibration.blend_choice` result (its choice.json), met or not.

  python -m calibration.issue_bars runs/bars-a/choice.json [runs/bars-b/choice.json ...]

Round three of the default's choice (models/weights/CHOICE_RULE_ROUND3.md) counts them: 17 bars in all, at the
setting the result chose. Per lab: pooled AP >= the freeze index's + 0.10, pooled episode sensitivity >= 0.7, false
alarms per hour <= the freeze index's. Per held-out person with freezes: AP >= the freeze index's. The person who
never froze (no episodes): fewer false alarms per hour than the freeze index. Real walking (`--walking`): the fold
networks' false alarms per hour <= 10. A figure that is missing (no walking given, say) counts as not met.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from calibration.blend_choice import SENS_FLOOR as SENSITIVITY        # the choice's floor is the bar
from calibration.walking_budget import MAX_PER_HOUR as WALKING_MAX    # and so is its walking budget

AP_MARGIN = 0.10


def _known(value) -> bool:
    return value is not None and value == value


def bars(choice: dict) -> list[tuple[str, str, bool]]:
    """(bar, figure against its bar, met) for every bar, labs first, then people, then walking."""
    rows = []
    for lab, m in sorted(choice["chosen"]["labs"].items()):
        rows.append((f"{lab}: pooled AP >= FI + {AP_MARGIN:g}", f"{m['ap']:.3f} vs {m['fi_ap'] + AP_MARGIN:.3f}",
                     m["ap"] >= m["fi_ap"] + AP_MARGIN))
        rows.append((f"{lab}: episode sensitivity >= {SENSITIVITY:g}", f"{m['sensitivity']:.2f}",
                     m["sensitivity"] >= SENSITIVITY))
        rows.append((f"{lab}: false alarms/h <= FI's", f"{m['false_alarms_per_hour']:.1f} vs "
                     f"{m['fi_false_alarms_per_hour']:.1f}",
                     m["false_alarms_per_hour"] <= m["fi_false_alarms_per_hour"]))
    for subject, m in sorted(choice["per_subject"].items()):
        if m["episodes"]:
            met = _known(m["ap"]) and _known(m["fi_ap"]) and m["ap"] >= m["fi_ap"]
            rows.append((f"{subject}: AP >= FI's", f"{m['ap']:.3f} vs {m['fi_ap']:.3f}", met))
        else:
            rows.append((f"{subject} (never froze): false alarms/h < FI's",
                         f"{m['false_alarms_per_hour']:.1f} vs {m['fi_false_alarms_per_hour']:.1f}",
                         m["false_alarms_per_hour"] < m["fi_false_alarms_per_hour"]))
    walking = choice["chosen"].get("walking_false_alarms_per_hour")
    rows.append((f"real walking: false alarms/h <= {WALKING_MAX:g}",
                 f"{walking:.1f}" if _known(walking) else "not measured",
                 _known(walking) and walking <= WALKING_MAX))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m calibration.issue_bars", description=__doc__.split("\n")[0])
    p.add_argument("choices", nargs="+", type=Path, help="choice.json files written by calibration.blend_choice")
    args = p.parse_args(argv)
    for path in args.choices:
        if not path.is_file():
            print(f"issue_bars: {path} does not exist: give the choice.json that "
                  f"`python -m calibration.blend_choice ... --out DIR` wrote (DIR/choice.json)", file=sys.stderr)
            return 2
        choice = json.loads(path.read_text())
        rows = bars(choice)
        c = choice["chosen"]
        print(f"{path}: {c['network']}, blend {c['fi_blend']:g}, power {c['power_weight']:g}, on {c['on']:g}: "
              f"{sum(met for *_, met in rows)} of {len(rows)} bars met")
        for name, figure, met in rows:
            print(f"  {'met    ' if met else 'NOT met'}  {name}: {figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
