"""Choose a model's event timing (smoothing, minimum duration) with its on-threshold, on the LOSO folds only.

  python -m calibration.event_choice ../shared/data/daphnet ../shared/data/stanford-imu-fog-64hz \
      --ensemble runs/loso-invariant-long-tremor-s0 runs/loso-invariant-long-tremor-s1 \
      runs/loso-invariant-long-tremor-s2 --blend 0.25 --power 1 --walking ../shared/data/mobgap-walking --out OUT

The rule is models/weights/CHOICE_RULE_ROUND6.md (written before its figures). No network is trained: the fold
networks' window terms (cached beside their weights by calibration.blend_choice) are blended once at the given
blend, and every (timing, threshold) pair is scored by the event detector the device runs, on the held-out folds and
on real FOG-free walking. OUT/choice.json has calibration.blend_choice's shape (plus the timing and every pair's
figures), so `python -m calibration.issue_bars OUT/choice.json` counts the issue's bars at the chosen pair.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from calibration.blend_choice import (RECIPES, collect, fi_terms_kwargs, lab_figures, replayed, subject_figures,
                                      summarize, walking_budget)
from calibration.choice_tables import subject_table
from calibration.ensemble_terms import ensemble_name
from calibration.loso import HYSTERESIS, THRESHOLDS
from calibration.progress import bar
from calibration.threshold_step import keeps_floor, threshold_row, threshold_step
from calibration.walking_budget import MAX_PER_HOUR
from deploy.scoring import freeze_index_probability, json_safe

SMOOTHING_S = (0.5, 1.0)
MIN_DURATION_S = (0.5, 1.0, 1.5, 2.0)
SHIPPED = {"smoothing_s": 0.5, "min_duration_s": 1.0}     # the contract's defaults, every round before six


def timings() -> list[dict]:
    return [{"smoothing_s": s, "min_duration_s": d} for s in SMOOTHING_S for d in MIN_DURATION_S]


def _name(timing: dict) -> str:
    return f"smoothing {timing['smoothing_s']:g} s, min duration {timing['min_duration_s']:g} s"


def pairs(summaries: dict, fi, subjects, walking: dict) -> list[dict]:
    """Every (timing, on) pair on `subjects`' folds: per lab figures, worst-lab sensitivity and false-alarm ratio to
    the freeze index's, and the walking figure. `summaries`: timing name -> Summary; `walking`: name -> {on: rate}."""
    return [threshold_row(lab_figures([summaries[_name(t)]], fi, f"{on:g}", subjects), timing=t, on=on,
                          walking_false_alarms_per_hour=walking[_name(t)][on])
            for t in timings() for on in THRESHOLDS]


def _order(row) -> tuple:
    """The rule's tie-breaks: the shipped timing, then the higher threshold, shorter smoothing, shorter duration."""
    t = row["timing"]
    return t != SHIPPED, -row["on"], t["smoothing_s"], t["min_duration_s"]


def pick(rows: list[dict], budget: float = MAX_PER_HOUR) -> dict:
    """The rule (CHOICE_RULE_ROUND6.md) over `rows` (`pairs`): round two's threshold step over every pair, within
    the walking budget, the tie-breaks `_order`."""
    return threshold_step(rows, budget, _order)


def chosen_figures(summaries: dict, fi, row: dict, subject: str) -> dict:
    return subject_figures([summaries[_name(row["timing"])]], fi, subject, f"{row['on']:g}")


def nested(summaries: dict, fi, walking: dict) -> tuple[dict, dict]:
    """Each subject at the pair chosen on the other subjects' folds; and those figures pooled per lab (the AP does
    not depend on the timing: it is the folds' pooled AP)."""
    subjects = sorted(fi.lab)
    held_out = {}
    for held in subjects:
        row = pick(pairs(summaries, fi, [s for s in subjects if s != held], walking))
        held_out[held] = {"on": row["on"], **row["timing"], **chosen_figures(summaries, fi, row, held)}
    pooled = {}
    for lab in sorted(set(fi.lab.values())):
        members = [s for s in subjects if fi.lab[s] == lab]
        counts = [summaries[_name(held_out[s])].counts[s][f"{held_out[s]['on']:g}"] for s in members]
        episodes = sum(c["episodes"] for c in counts)
        pooled[lab] = {"sensitivity": sum(c["found"] for c in counts) / episodes if episodes else None,
                       "false_alarms_per_hour": sum(c["alarms"] for c in counts) / sum(c["hours"] for c in counts)}
    return held_out, pooled


def replayed_folds(args) -> tuple:
    """(network name, run, every recording, held-out recordings, their probabilities): `args.ensemble`'s fold
    networks on `args.data`, blended at `args.blend` and `args.power` from their cached window terms."""
    import torch
    torch.set_num_threads(1)
    recipe = RECIPES["blend"]
    run = tuple(args.ensemble) if len(args.ensemble) > 1 else args.ensemble[0]
    network = ensemble_name(args.ensemble) if len(args.ensemble) > 1 else Path(run).name
    recordings, terms = collect(args.data, {network: [run]}, recipe, fi_terms_kwargs(recipe))
    recs, probs = [], []
    for test, calls, spec in terms[(network, run)]:
        recs += test
        probs += replayed(calls, spec, test, args.blend, args.power)
    return network, run, recordings, recs, probs


def add_fold_arguments(p) -> None:
    """What `replayed_folds` reads: the recordings, the model's LOSO runs, its blend and power."""
    p.add_argument("data", nargs="+", help="the real recordings of the LOSO runs (both labs' folders)")
    p.add_argument("--ensemble", nargs="+", required=True, metavar="RUN",
                   help="the model's LOSO runs (one per seed; one run for a single network), as blend_choice takes")
    p.add_argument("--blend", type=float, required=True, help="the model's fixed freeze-index blend")
    p.add_argument("--power", type=float, required=True, help="the model's power weight")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m calibration.event_choice", description=__doc__.split("\n\n")[0])
    add_fold_arguments(p)
    p.add_argument("--walking", nargs="+", required=True, metavar="DIR", help="real FOG-free walking")
    p.add_argument("--walking-max", type=float, default=MAX_PER_HOUR, metavar="PER_HOUR")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    recipe = RECIPES["blend"]
    fi_kwargs = fi_terms_kwargs(recipe)
    network, run, recordings, recs, probs = replayed_folds(args)
    fi_probs = {r.meta["id"]: freeze_index_probability(r) for r in recordings}
    fi = summarize(recs, [fi_probs[r.meta["id"]] for r in recs], thresholds=None)
    budget = walking_budget(args, {network: [run]}, recipe, fi_kwargs)
    summaries, walking = {}, {}
    with bar(len(timings()), "timings scored", unit="timing") as progress:
        for timing in timings():
            summaries[_name(timing)] = summarize(recs, probs, THRESHOLDS, timing)
            walking[_name(timing)] = budget.per_hour(network, args.blend, args.power, THRESHOLDS, HYSTERESIS, timing)
            progress.update()
    rows = pairs(summaries, fi, sorted(fi.lab), walking)
    row = pick(rows, args.walking_max)
    per_subject = {s: chosen_figures(summaries, fi, row, s) for s in sorted(fi.lab)}
    held_out, held_out_labs = nested(summaries, fi, walking)
    chosen = {"network": network, "fi_blend": args.blend, "power_weight": args.power, "on": row["on"],
              "off": round(row["on"] - HYSTERESIS, 3), **row["timing"], "labs": row["labs"],
              "walking_false_alarms_per_hour": row["walking_false_alarms_per_hour"],
              "keeps_floor": keeps_floor(row)}
    grid = [{"timing": r["timing"], "on": r["on"], "min_sensitivity": r["min_sensitivity"], "fa_ratio": r["fa_ratio"],
             "walking_false_alarms_per_hour": r["walking_false_alarms_per_hour"]} for r in rows]
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.out, "choice.json").write_text(json.dumps(json_safe({
        "rule": "models/weights/CHOICE_RULE_ROUND6.md", "runs": list(args.ensemble), "chosen": chosen,
        "per_subject": per_subject, "table": subject_table(per_subject), "nested": held_out,
        "nested_pooled": held_out_labs, "grid": grid}), indent=1) + "\n")
    print(subject_table(per_subject))
    for lab, f in sorted(row["labs"].items()):
        print(f"{lab} pooled: AP {f['ap']:.3f} (FI {f['fi_ap']:.3f}), episode sensitivity {f['sensitivity']:.2f}, "
              f"false alarms/h {f['false_alarms_per_hour']:.1f} (FI {f['fi_false_alarms_per_hour']:.1f})")
    for lab, f in sorted(held_out_labs.items()):
        print(f"{lab} pooled, nested: episode sensitivity {f['sensitivity']:.2f}, "
              f"false alarms/h {f['false_alarms_per_hour']:.1f}")
    print(f"chosen: {_name(row['timing'])}, on {row['on']:g} (off {chosen['off']:g}): "
          f"{row['walking_false_alarms_per_hour']:.1f} false alarms/h on the walking recordings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
