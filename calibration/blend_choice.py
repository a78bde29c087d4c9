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
No candidate is judged on one subject alone, and the subjects in ../shared never choose anything for themselves
only: the choice is one setting for all folds, and the model is judged later on people who are not in ../shared.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from calibration.loso import HYSTERESIS, RECIPES, predict_with, saved_fold_model, threshold_sweep
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
            calls.append(tuple(v.double().numpy() for v in (net(t), base, powered(t) - base)))
        return np.zeros(calls[-1][0].shape, np.float32)
    predict_with(record, spec, recordings)
    return calls, spec


def replay(calls, blend: float, power: float):
    """An infer giving the blended model's probabilities from recorded window terms, in the recorded order."""
    it = iter(calls)

    def infer(x):
        net, fi, pw = next(it)
        return 1.0 / (1.0 + np.exp(-(net + blend * (fi + power * pw))))
    return infer


def rows_of(blend: float, power: float, result: dict) -> list[dict]:
    """One row per on-threshold: worst froze-subject episode sensitivity, pooled FA/h, mean AP."""
    folds = result["folds"]
    froze = [f for f in folds if f["freeze_index"]["any_fog"]["episodes_true"]]
    out = []
    for on in folds[0]["model"]:
        figs = {f["subject"]: f["model"][on]["any_fog"] for f in folds}
        hours = sum(fig["hours"] for fig in figs.values())
        out.append({"fi_blend": blend, "power_weight": power, "on": float(on),
                    "min_episode_sensitivity": min(figs[f["subject"]]["sensitivity"] for f in froze),
                    "false_alarms_per_hour": sum(fig["false_alarms"] for fig in figs.values()) / hours,
                    "mean_ap": sum(figs[f["subject"]]["ap"] for f in froze) / len(froze),
                    "per_subject": {s: {k: fig[k] for k in ("ap", "sensitivity", "false_alarms_per_hour")}
                                    for s, fig in figs.items()}})
    return out


def choose(rows: list[dict]) -> dict:
    eligible = [r for r in rows if r["min_episode_sensitivity"] >= SENS_FLOOR]
    if not eligible:
        raise SystemExit(f"no candidate keeps episode sensitivity >= {SENS_FLOOR} on every subject who froze")
    return min(eligible, key=lambda r: (round(r["false_alarms_per_hour"], 6), -r["mean_ap"]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m calibration.blend_choice", description=__doc__.split("\n\n")[0])
    p.add_argument("data", nargs="+", help="the real recordings of the LOSO run (e.g. ../shared/data/daphnet)")
    p.add_argument("--plain", required=True, help="a plain LOSO run's folder (model-<subject>.pt)")
    p.add_argument("--recipe", default="blend", choices=sorted(RECIPES))
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    from models import get_preset
    recipe = RECIPES[args.recipe]
    preset = get_preset(recipe.preset)
    fi_kwargs = {k: v for k, v in preset.kwargs.get("fi_kwargs", {}).items() if k != "power_weight"}
    recordings = read_recordings(args.data)
    subjects = sorted({r.meta["subject"] for r in recordings})
    folds = {}
    for n, subject in enumerate(subjects, 1):
        print(f"[{n}/{len(subjects)}] held-out {subject}: network and freeze-index terms", file=sys.stderr, flush=True)
        test = [r for r in recordings if r.meta["subject"] == subject]
        calls, spec = window_terms(recipe, Path(args.plain) / f"model-{subject}.pt", test, fi_kwargs)
        fi = score(test, [freeze_index_probability(r) for r in test], DEFAULT_SETTINGS, "freeze index")
        folds[subject] = (test, calls, spec, fi)
    rows = []
    for blend in FI_BLENDS:
        for power in POWER_WEIGHTS:
            result = {"folds": [{"subject": s, "freeze_index": fi, "model": threshold_sweep(
                test, predict_with(replay(calls, blend, power), spec, test))}
                for s, (test, calls, spec, fi) in folds.items()]}
            rows += rows_of(blend, power, result)
    best = choose(rows)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.out, "choice.json").write_text(json.dumps(json_safe({"rule": __doc__.split("\n\n")[2],
                                                                   "chosen": best, "rows": rows}), indent=1) + "\n")
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
