"""Choose the default's fixed blend (fi_blend, power_weight) and its event threshold on the LOSO folds only.

  python -m calibration.blend_choice ../shared/data/daphnet --plain runs/loso-plain --out runs/blend-choice

The learnt network is the same for every candidate (recipe "blend" trains it without the blend), so one plain LOSO
run's fold weights (`--plain`, model-<subject>.pt) serve every candidate: each held-out window's network logits,
freeze-index term and power term are computed once (`window_terms`), and every candidate's probabilities are
formed from them window by window, then averaged over the windows exactly as `calibration.loso.predict` does
(identical to predicting with the blended model, tests/test_blend_choice.py). The rule (written after a first look at
the grid, so these three numbers are chosen in-sample on the three subjects; see the model card):
1. every held-out subject who froze keeps episode sensitivity >= SENS_FLOOR (the acceptance floor of issue 12);
2. among those, the fewest false alarms per hour pooled over every held-out subject (alarms / hours);
3. ties: the higher mean any-FOG AP over the subjects who froze.
Given several plain runs (seeds), every figure is pooled over them (episodes found / episodes, alarms / hours,
mean AP): one network's luck on 30 episodes moves the choice as much as the candidates differ.
The choice is one setting for every fold, never one per subject; the model is judged later on people who are not in
../shared.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from calibration.loso import HYSTERESIS, RECIPES, predict_with, saved_fold_model, threshold_sweep
from calibration.progress import bar
from deploy.events import DEFAULT_SETTINGS
from deploy.recording import read_recordings
from deploy.scoring import freeze_index_probability, json_safe, score

FI_BLENDS = (0.25, 0.5, 0.75, 1.0)
POWER_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
SENS_FLOOR = 0.7


def window_terms(recipe, weights: Path, recordings, fi_kwargs: dict) -> tuple[list, object]:
    """(every window batch's (network logits, freeze-index term, power term) in predict's call order, the spec)."""
    import torch

    from models.spectral import FreezeIndexLogit
    net, spec = saved_fold_model(replace(recipe, model={**recipe.model, "fi_blend": 0.0}), weights)
    plain_fi = FreezeIndexLogit(spec.patch, **fi_kwargs)
    powered = FreezeIndexLogit(spec.patch, **fi_kwargs, power_weight=1.0)
    calls = []

    def record(x):
        with torch.no_grad():
            t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
            base = plain_fi(t)
            calls.append(tuple(v.numpy() for v in (net(t), base, powered(t) - base)))
        return np.zeros(calls[-1][0].shape, np.float32)
    predict_with(record, spec, recordings)
    return calls, spec


def replay(calls, blend: float, power: float):
    """An infer giving the blended model's probabilities from recorded window terms, in the recorded order. In
    float32, as the model computes them: its sigmoid saturates at 1.0 for a strong freeze-index logit, and those ties
    move the AP (by 0.002 on S03 against a float64 replay)."""
    it = iter(calls)
    blend, power, one = np.float32(blend), np.float32(power), np.float32(1.0)

    def infer(x):
        net, fi, pw = next(it)
        return one / (one + np.exp(-(net + blend * (fi + power * pw))))
    return infer


def rows_of(blend: float, power: float, results: list[dict], subjects=None) -> list[dict]:
    """One row per on-threshold, pooled over the runs (seeds) given: per subject who froze, episodes found / episodes
    (worst subject kept); false alarms / hours over every held-out subject; mean AP over runs and subjects.
    `subjects` limits the figures to those held-out subjects (the nested choice: choose on the others)."""
    folds = [[f for f in r["folds"] if subjects is None or f["subject"] in subjects] for r in results]
    froze = [f["subject"] for f in folds[0] if f["freeze_index"]["any_fog"]["episodes_true"]]
    out = []
    for on in results[0]["folds"][0]["model"]:
        figs = [(f["subject"], f["model"][on]["any_fog"]) for run in folds for f in run]
        per_subject = {}
        for subject, fig in figs:
            acc = per_subject.setdefault(subject, {"found": 0.0, "episodes": 0, "alarms": 0, "hours": 0.0, "ap": [],
                                                   "time_sens": [], "time_spec": []})
            acc["found"] += (fig["sensitivity"] * fig["episodes_true"]) if fig["episodes_true"] else 0.0
            acc["episodes"] += fig["episodes_true"]
            acc["alarms"] += fig["false_alarms"]
            acc["hours"] += fig["hours"]
            acc["ap"].append(fig["ap"])
            acc["time_sens"].append(fig.get("sensitivity_time"))
            acc["time_spec"].append(fig.get("specificity_time"))
        summary = {s: {"ap": sum(a["ap"]) / len(a["ap"]) if s in froze else None,
                       "sensitivity": a["found"] / a["episodes"] if a["episodes"] else None,
                       "false_alarms_per_hour": a["alarms"] / a["hours"], "ap_runs": a["ap"],
                       "sensitivity_time": _mean(a["time_sens"]), "specificity_time": _mean(a["time_spec"])}
                   for s, a in per_subject.items()}
        out.append({"fi_blend": blend, "power_weight": power, "on": float(on), "runs": len(results),
                    "min_episode_sensitivity": min((summary[s]["sensitivity"] for s in froze), default=None),
                    "false_alarms_per_hour": sum(a["alarms"] for a in per_subject.values())
                    / sum(a["hours"] for a in per_subject.values()),
                    "mean_ap": _mean([summary[s]["ap"] for s in froze]), "per_subject": summary})
    return out


def _mean(values):
    values = [v for v in values if v is not None and v == v]
    return sum(values) / len(values) if values else None


def card_table(best: dict, freeze_index: dict) -> str:
    """The model card's per-fold table: the chosen setting (pooled over the runs) beside the freeze index."""
    rows = ["| held-out subject | AP model (per run) / FI | episode sens. model / FI | false alarms/h model / FI "
            "| time sens. model / FI | time spec. model / FI |", "| --- | --- | --- | --- | --- | --- |"]
    for subject, m in best["per_subject"].items():
        fi = freeze_index[subject]
        runs = "" if m["ap"] is None else " (" + ", ".join(format(a, ".3f") for a in m["ap_runs"]) + ")"
        rows.append(f"| {subject} | {_cell(m['ap'], '.3f')}{runs} / {_cell(fi.get('ap'), '.3f')} | "
                    f"{_cell(m['sensitivity'], '.2f')} / {_cell(fi.get('sensitivity'), '.2f')} | "
                    f"{_cell(m['false_alarms_per_hour'], '.1f')} / {_cell(fi.get('false_alarms_per_hour'), '.1f')} | "
                    f"{_cell(m['sensitivity_time'], '.2f')} / {_cell(fi.get('sensitivity_time'), '.2f')} | "
                    f"{_cell(m['specificity_time'], '.2f')} / {_cell(fi.get('specificity_time'), '.2f')} |")
    return "\n".join(rows)


def nested(candidates: dict, subjects: list[str]) -> dict:
    """The rule applied once per held-out subject on the OTHER subjects' figures only, and that subject's figures at
    the setting the others chose: how well choosing this way does on someone the choice never saw. `candidates`:
    {(blend, power): results}, as for `rows_of`."""
    out = {}
    for held in subjects:
        others = [s for s in subjects if s != held]
        best = choose([row for (b, p), results in candidates.items() for row in rows_of(b, p, results, others)])
        at = next(r for r in rows_of(best["fi_blend"], best["power_weight"], candidates[best["fi_blend"],
                                                                                        best["power_weight"]], [held])
                  if r["on"] == best["on"])
        out[held] = {"chosen_on": others, "fi_blend": best["fi_blend"], "power_weight": best["power_weight"],
                     "on": best["on"], **at["per_subject"][held]}
    return out


def nested_table(chosen: dict, freeze_index: dict) -> str:
    rows = ["| held-out subject | chosen on the others: blend / power / on | AP model / FI | episode sens. model / FI "
            "| false alarms/h model / FI |", "| --- | --- | --- | --- | --- |"]
    for subject, m in chosen.items():
        fi = freeze_index[subject]
        rows.append(f"| {subject} | {m['fi_blend']:g} / {m['power_weight']:g} / {m['on']:g} | "
                    f"{_cell(m['ap'], '.3f')} / {_cell(fi.get('ap'), '.3f')} | "
                    f"{_cell(m['sensitivity'], '.2f')} / {_cell(fi.get('sensitivity'), '.2f')} | "
                    f"{_cell(m['false_alarms_per_hour'], '.1f')} / {_cell(fi.get('false_alarms_per_hour'), '.1f')} |")
    return "\n".join(rows)


def _cell(value, fmt):
    return "-" if value is None or value != value else format(value, fmt)


def choose(rows: list[dict]) -> dict:
    eligible = [r for r in rows if r["min_episode_sensitivity"] is None or r["min_episode_sensitivity"] >= SENS_FLOOR]
    if not eligible:
        raise SystemExit(f"no candidate keeps episode sensitivity >= {SENS_FLOOR} on every subject who froze")
    return min(eligible, key=lambda r: (round(r["false_alarms_per_hour"], 6), -r["mean_ap"]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m calibration.blend_choice", description=__doc__.split("\n\n")[0])
    p.add_argument("data", nargs="+", help="the real recordings of the LOSO run (e.g. ../shared/data/daphnet)")
    p.add_argument("--plain", required=True, nargs="+", help="plain LOSO runs' folders (model-<subject>.pt), e.g. "
                   "one per seed: the figures are pooled over them")
    p.add_argument("--recipe", default="blend", choices=sorted(RECIPES))
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    import torch

    from models import get_preset
    torch.set_num_threads(1)   # batch-1-sized work: a second OpenMP thread only waits on a shared machine
    recipe = RECIPES[args.recipe]
    preset = get_preset(recipe.preset)
    fi_kwargs = {k: v for k, v in preset.kwargs.get("fi_kwargs", {}).items() if k != "power_weight"}
    recordings = read_recordings(args.data)
    subjects = sorted({r.meta["subject"] for r in recordings})
    folds = {}
    for run in args.plain:
        for n, subject in enumerate(subjects, 1):
            print(f"{run} [{n}/{len(subjects)}] held-out {subject}: network and freeze-index terms", file=sys.stderr,
                  flush=True)
            test = [r for r in recordings if r.meta["subject"] == subject]
            calls, spec = window_terms(recipe, Path(run) / f"model-{subject}.pt", test, fi_kwargs)
            fi = score(test, [freeze_index_probability(r) for r in test], DEFAULT_SETTINGS, "freeze index")
            folds[run, subject] = (test, calls, spec, fi)
    grid = [(blend, power) for blend in FI_BLENDS for power in POWER_WEIGHTS]
    with bar(len(grid), "blend x power candidates scored", unit="candidate") as progress:
        candidates = {}
        for blend, power in grid:
            candidates[blend, power] = [{"folds": [{"subject": s, "freeze_index": fi, "model": threshold_sweep(
                test, predict_with(replay(calls, blend, power), spec, test))}
                for (r, s), (test, calls, spec, fi) in folds.items() if r == run]} for run in args.plain]
            progress.update()
    rows = [row for (blend, power), results in candidates.items() for row in rows_of(blend, power, results)]
    best = choose(rows)
    freeze_index = {s: fi["any_fog"] for (r, s), (_, _, _, fi) in folds.items() if r == args.plain[0]}
    table = card_table(best, freeze_index)
    held_out = nested(candidates, subjects)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.out, "choice.json").write_text(json.dumps(json_safe({
        "rule": __doc__.split("\n\n")[2], "runs": args.plain, "chosen": best, "freeze_index": freeze_index,
        "table": table, "nested": held_out, "nested_table": nested_table(held_out, freeze_index),
        "rows": rows}), indent=1) + "\n")
    print(table)
    print("\nThe same rule, nested: each subject scored at the setting chosen on the other subjects only")
    print(nested_table(held_out, freeze_index))
    print(f"chosen: fi_blend {best['fi_blend']} power_weight {best['power_weight']} on {best['on']:g} "
          f"(off {best['on'] - HYSTERESIS:.2f}): worst episode sensitivity {best['min_episode_sensitivity']:.2f}, "
          f"pooled false alarms/h {best['false_alarms_per_hour']:.1f}, mean AP {best['mean_ap']:.3f}")
    shipped = (preset.kwargs.get("fi_blend"), preset.kwargs.get("fi_kwargs", {}).get("power_weight"),
               preset.events.get("on"))
    chosen = (best["fi_blend"], best["power_weight"], best["on"])
    print(f"preset {preset.name} ships fi_blend, power_weight, on = {shipped}: "
          + ("the choice" if shipped == chosen else f"NOT the choice {chosen}: edit models/registry.py"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
