"""How far each held-out freeze is from being found: per labelled episode of the LOSO folds, the highest any-FOG
probability the network that never saw its person gives inside it, and where that peak ranks among the same
person's FOG-free samples.

  python -m calibration.episode_reach ../shared/data/daphnet ../shared/data/stanford-imu-fog-64hz \
      --ensemble runs/loso-s0 runs/loso-s1 runs/loso-s2 --blend 0.25 --power 1 \
      [--walking ../shared/data/mobgap-walking] --out OUT

No network is trained: the fold networks' window terms (cached beside their weights by calibration.blend_choice) are
blended as given, as in calibration.event_choice. What the figures say:
- **reach at t**: episodes whose peak is at least t. An episode whose peak stays below the on-threshold t is found
  only if an event raised before it runs on into it, so no event timing (smoothing, minimum duration) lifts a lab's
  episode sensitivity much above its reach at t.
- **rank**: the share of the person's own FOG-free samples scored below the episode's peak. A freeze ranked under
  0.5 scores lower than most of its person's ordinary walking and standing: no threshold, not even one set per
  person, finds it without raising alarms over most of that person's day.
- With `--walking`, the lowest on-threshold of calibration.loso.THRESHOLDS at which the fold networks stay within
  the walking budget (calibration.walking_budget), the threshold the default's choice could go down to.
OUT/episodes.csv has one row per episode; OUT/reach.json the tables printed.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from calibration.threshold_step import SENS_FLOOR
from deploy.event_classes import any_fog
from deploy import metrics
from calibration.walking_budget import MAX_PER_HOUR

LEVELS = (0.05, 0.1, 0.2, 0.3, 0.5)      # the peaks' bands in the printed table


@dataclass(frozen=True)
class Episode:
    lab: str
    subject: str
    recording: str
    start_s: float
    duration_s: float
    peak: float        # highest any-FOG probability inside the episode
    rank: float        # share of the person's FOG-free samples scored below `peak`
    found: bool | None = None   # an event overlapped it (deploy.metrics.event_metrics' rule); None: not asked


def episode_peaks(recordings, probs, rule: str = "max", events=None) -> list[Episode]:
    """Every labelled episode (valid samples only) of `recordings` with `probs[i]`, recording i's (n,) any-FOG or
    (n, C) event-class probabilities (any-FOG by `rule`, "max" or "sum" as the scorer's). `events[i]`, if given:
    recording i's counted events as (onset_s, offset_s or None) pairs, which say whether each episode was found."""
    found, quiet = [], {}
    for i, (rec, p) in enumerate(zip(recordings, probs)):
        if rec.labels is None:
            continue
        score = any_fog(np.asarray(p, dtype=np.float64), rule=rule)
        valid = np.ones(rec.n_samples, bool) if rec.mask is None else np.asarray(rec.mask, bool)
        fog = (rec.labels.max(axis=1) > 0.5) & valid
        subject = str(rec.meta.get("subject"))
        quiet.setdefault(subject, []).append(score[valid & ~fog])
        for a, b in metrics.episodes(fog):
            hit = None if events is None else _overlapped(a / rec.rate_hz, b / rec.rate_hz, events[i])
            found.append((rec, subject, a, b, float(score[a:b].max()), hit))
    quiet = {s: np.sort(np.concatenate(v)) for s, v in quiet.items()}
    return [Episode(lab=str(rec.meta.get("lab", "unknown")), subject=subject,
                    recording=str(rec.meta.get("id") or rec.meta.get("name")), start_s=round(a / rec.rate_hz, 3),
                    duration_s=round((b - a) / rec.rate_hz, 3), peak=peak,
                    rank=float(np.searchsorted(quiet[subject], peak, side="left") / max(len(quiet[subject]), 1)),
                    found=hit)
            for rec, subject, a, b, peak, hit in found]


def _overlapped(onset_s: float, offset_s: float, events) -> bool:
    return any(metrics.overlaps(on, off, onset_s, offset_s) for on, off in events)


def write_episodes(path, episodes: list[Episode], **columns) -> None:
    """`episodes` as CSV rows, `columns` (e.g. scorer=...) first; several calls to one path append (one header)."""
    path = Path(path)
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*columns, *Episode.__dataclass_fields__])
        if new:
            writer.writeheader()
        writer.writerows({**columns, **asdict(e)} for e in episodes)


def reach(episodes: list[Episode], thresholds) -> dict:
    """Per lab and per person: episodes, how many the issue's sensitivity bar needs, the reach at each threshold
    and how many rank under the person's FOG-free median."""
    def row(group: list[Episode]) -> dict:
        return {"episodes": len(group), "needed": math.ceil(SENS_FLOOR * len(group) - 1e-9),
                "reach": {f"{t:g}": sum(e.peak >= t for e in group) for t in thresholds},
                "under_own_median": sum(e.rank < 0.5 for e in group)}
    out = {"labs": {}, "subjects": {}}
    for key, name in (("labs", "lab"), ("subjects", "subject")):
        for value in sorted({getattr(e, name) for e in episodes}):
            out[key][value] = row([e for e in episodes if getattr(e, name) == value])
    return out


def table(figures: dict, thresholds) -> str:
    head = ["", "episodes", f"needed for {SENS_FLOOR:g}"] + [f"peak >= {t:g}" for t in thresholds] + [
        "under own FOG-free median"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for key in ("labs", "subjects"):
        for name, f in figures[key].items():
            cells = [f"**{name}**" if key == "labs" else name, f["episodes"], f["needed"],
                     *f["reach"].values(), f["under_own_median"]]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def lowest_within_budget(args, network: str, run, recipe, fi_kwargs) -> tuple[float | None, dict]:
    """The lowest THRESHOLDS on-threshold whose walking false alarms per hour stay within the budget, and all rates."""
    from calibration.blend_choice import walking_budget
    from calibration.loso import HYSTERESIS, THRESHOLDS
    budget = walking_budget(args, {network: [run]}, recipe, fi_kwargs)
    rates = budget.per_hour(network, args.blend, args.power, THRESHOLDS, HYSTERESIS)
    within = [on for on in THRESHOLDS if rates[on] <= budget.max_per_hour]
    return (min(within) if within else None), rates


def main(argv=None) -> int:
    from calibration.event_choice import add_fold_arguments, replayed_folds
    p = argparse.ArgumentParser(prog="python -m calibration.episode_reach", description=__doc__.split("\n\n")[0])
    add_fold_arguments(p)
    p.add_argument("--walking", nargs="+", metavar="DIR", help="real FOG-free walking: the lowest threshold in budget")
    p.add_argument("--walking-max", type=float, default=MAX_PER_HOUR, metavar="PER_HOUR")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    from calibration.blend_choice import RECIPES, fi_terms_kwargs
    from calibration.loso import THRESHOLDS
    network, run, _, recs, probs = replayed_folds(args)
    episodes = episode_peaks(recs, probs)
    thresholds = tuple(sorted(set(LEVELS) | {min(THRESHOLDS)}))
    figures = {"runs": list(args.ensemble), "blend": args.blend, "power": args.power,
               **reach(episodes, thresholds)}
    if args.walking:
        recipe = RECIPES["blend"]
        figures["lowest_on_within_walking_budget"], rates = lowest_within_budget(args, network, run, recipe,
                                                                                 fi_terms_kwargs(recipe))
        figures["walking_false_alarms_per_hour"] = {f"{on:g}": rate for on, rate in rates.items()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "episodes.csv").unlink(missing_ok=True)
    write_episodes(out / "episodes.csv", episodes)
    (out / "reach.json").write_text(json.dumps(figures, indent=1) + "\n")
    print(table(figures, thresholds))
    if args.walking:
        low = figures["lowest_on_within_walking_budget"]
        print(f"lowest on-threshold within {args.walking_max:g} false alarms/h on the walking recordings: "
              f"{'none' if low is None else f'{low:g}'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
