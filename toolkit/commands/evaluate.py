"""Score a model, checkpoint or bundle, and Moore's freeze-index baseline, on the same recordings.

  toolkit evaluate ../shared/data/daphnet --bundle bundle --plot plots/     # real freezes (Daphnet text files)
  toolkit evaluate data/defog --model runs/small/model.pt                 # a checkpoint (it names its preset)
  toolkit evaluate ../shared/data/mobgap-walking --mapping mobgap --bundle bundle   # FOG-free: false alarms
  toolkit evaluate --synthetic 4 --bundle bundles/fog-small --json

Predictions follow deploy.offline.predict_recording (the bundle's hop, look-ahead and event settings when a bundle
is given, else the defaults export writes; each flag overrides one value: deploy.contract.events.EventSettings
.resolve) and are mapped back to each recording's rate. Every figure comes from deploy.scoring, the project's one
scorer: per-class APs (the competition metric) on recordings labelled with the three Kaggle types; any-FOG AP,
time-based sensitivity and specificity, episode sensitivity, false alarms per hour and onset latency on every
labelled recording (Daphnet's single "freeze" label included); time called FOG and false alarms per hour on
recordings without labels (declared FOG-free). The freeze index (Bachlin: 4 s, threshold 1.5) is scored the same way.

Operating points: each scorer's episode sensitivity against false alarms per hour as its on-threshold moves
(deploy.operating_points: the same detector and scorer at each threshold), printed, in --json, and drawn on one
chart by --plot (operating-points.png). `--at-fa-per-hour 10` says which threshold keeps each scorer to 10 false
alarms per hour on the recordings given; `toolkit export --on-threshold-from EVAL.json` (EVAL.json from --json-out)
writes the model's into a bundle, which then records the recordings that chose it:

  toolkit evaluate ../shared/data/daphnet --bundle bundle --at-fa-per-hour 10 --json-out eval.json --plot plots/

Missed freezes: `--episodes episodes.csv` writes one row per labelled episode and scorer, whether its events found
it, its peak probability and that peak's rank among the same person's FOG-free samples (calibration.episode_reach):
a freeze peaking just under the threshold is a threshold's matter, one ranked under most of the person's walking is
the network's.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from calibration.data import recordings_from_args
from deploy.bundle import Bundle
from toolkit.api.evaluate import evaluate
from toolkit.cli import UserError
from toolkit.commands._events import add_event_arguments, event_overrides
from toolkit.commands._options import (add_bundle, add_json, add_model_arguments, add_plot, add_quiet,
                                       model_and_weights, output_file)
from toolkit.commands._recordings import add_recording_arguments
from toolkit.commands.evaluate_report import print_operating_points, print_table
from toolkit.plots import plot_operating_points, plot_recordings

HELP = "score a model/checkpoint/bundle and the freeze-index baseline on recordings (table, --json, --plot)"


def add_arguments(p) -> None:
    add_recording_arguments(p, per_subject=1)
    p.add_argument("--seed", type=int, default=1000, help="synthetic seed (default 1000: the model card's held-out "
                   "subjects, never the training seeds)")
    add_model_arguments(p.add_argument_group("model (none: the freeze-index baseline only)"))
    add_bundle(p)
    p.add_argument("--backend", default="auto", help="engine backend for --bundle (default auto)")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"),
                   help="which of the bundle's graphs to score (default: what its target runs on this backend); "
                        "the table and JSON say which graph was scored")
    p.add_argument("--baseline-only", action="store_true", help="only the freeze-index baseline")
    ev = p.add_argument_group("event settings (default: the bundle's, else what export writes); the same names "
                              "as `toolkit export`")
    add_event_arguments(ev)
    p.add_argument("--fi-window", type=float, default=None, help="freeze-index window, s (default 4)")
    p.add_argument("--fi-threshold", type=float, default=None, help="freeze-index threshold (default 1.5)")
    ops = p.add_argument_group("operating points")
    ops.add_argument("--at-fa-per-hour", type=float, metavar="RATE",
                     help="say which on-threshold keeps each scorer to at most RATE false alarms per hour on these "
                          "recordings (the most episodes found; `toolkit export --on-threshold-from` takes it)")
    ops.add_argument("--thresholds", type=_thresholds, metavar="T1,T2,...",
                     help="the on-thresholds to sweep (probabilities in (0, 1); default 36 from 0.001 to 0.99999, "
                          "dense near 0 and 1); all are printed")
    add_json(p, out=True)
    p.add_argument("--per-recording", action="store_true", help="also print one row per recording")
    p.add_argument("--episodes", metavar="CSV", help="write one row per labelled episode and scorer: whether an event "
                   "found it, its peak probability, and how that peak ranks among the person's FOG-free samples "
                   "(calibration.episode_reach): which freezes a scorer misses, and by how much")
    add_plot(p)
    add_quiet(p)


def _thresholds(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    bad = [t for t in values if not 0 < t < 1]
    if not values or bad:
        raise argparse.ArgumentTypeError(f"thresholds are probabilities in (0, 1), not {bad or text!r}")
    return values


def _model(args):
    """What to score: the bundle, the model (preset/checkpoint + weights), or None (the baseline only)."""
    model, weights = model_and_weights(args)
    if args.bundle and (model or weights):
        raise UserError("give --model or --bundle, not both")
    if args.baseline_only:
        return None, None
    if args.bundle:
        return Bundle.load(args.bundle), None
    if not model and not weights:
        print("evaluate: no --model or --bundle given: scoring the freeze-index baseline only", file=sys.stderr)
    return model, weights


def _write_episodes(path, recs, result) -> int:
    """Each scorer's episodes (calibration.episode_reach), found or not by the events it raised here."""
    from calibration.episode_reach import episode_peaks, write_episodes
    Path(path).unlink(missing_ok=True)
    rows = 0
    for (key, probs), figures in zip(result.probs.items(), result.results):   # both: the model first, if any
        events = [[(e["onset_s"], e["offset_s"]) for e in per["event_list"] if e["counted"]]
                  for per in figures["per_recording"]]
        found = episode_peaks(recs, probs, result.rules.get(key, "max"), events)
        write_episodes(path, found, scorer=figures["name"])
        rows += len(found)
    return rows


def run(args) -> int:
    args.json_out = output_file(args.json_out, "--json-out", "eval.json")
    args.episodes = output_file(args.episodes, "--episodes", "episodes.csv")
    recs = recordings_from_args(args)
    model, weights = _model(args)
    if args.precision and not args.bundle:
        raise UserError("--precision chooses one of a bundle's graphs: give --bundle")
    kw = {k: v for k, v in (("fi_window_s", args.fi_window), ("fi_threshold", args.fi_threshold)) if v}
    if args.thresholds:
        kw["thresholds"] = args.thresholds
    if args.at_fa_per_hour is not None and args.at_fa_per_hour < 0:
        raise UserError("--at-fa-per-hour takes a rate >= 0 (false alarms per hour)")
    result = evaluate(model, recs, weights=weights, precision=args.precision, backend=args.backend,
                      events={k: v for k, v in event_overrides(args).items() if v is not None},
                      at_fa_per_hour=args.at_fa_per_hour, progress=not args.quiet, **kw)
    if args.plot:
        written = plot_recordings(args.plot, recs, result.probs, result.settings, result.rules)
        written.append(plot_operating_points(Path(args.plot) / "operating-points.png", result.operating_points,
                                             result.at_fa_per_hour))
        print(f"evaluate: {len(written)} plots in {args.plot}", file=sys.stderr)
    if args.episodes:
        print(f"evaluate: {_write_episodes(args.episodes, recs, result)} episode rows in {args.episodes}",
              file=sys.stderr)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result.to_json(), indent=2) + "\n")
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    print_table(recs, result.results, result.settings, per_recording=args.per_recording,
                identities=result.recordings_used)
    print_operating_points(result.operating_points, result.at_fa_per_hour, all_rows=bool(args.thresholds))
    if result.precision:
        print(f"model graph scored: {result.precision} on {result.runtime}")
    return 0
