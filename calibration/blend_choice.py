"""Choose the default's network, fixed blend and event threshold on the LOSO folds only, by a rule written first.

  python -m calibration.blend_choice ../shared/data/daphnet ../shared/data/stanford-imu-fog-64hz \
      --plain runs/invariant-s0 runs/invariant-s1 --plain runs/plain-s0 --out runs/choice

Each `--plain` names one candidate network (a recipe trained without the fixed blend, `calibration.loso --recipe
plain|invariant|...`) by its LOSO runs, one per seed (DIR/model-<subject>.pt): the figures of a candidate are pooled
over its seeds. The fixed blend adds no weights, so every (network, fi_blend, power_weight) is scored from the same
fold networks: each held-out window's network logits, freeze-index term and power term are computed once
(`window_terms`) and combined window by window in float32 exactly as the blended model does (`replay`;
tests/test_blend_choice.py), then averaged over windows on the bundle's grid, as `calibration.loso.predict` does.

The rule (models/weights/CHOICE_RULE.md, committed before the final runs):
1. the candidate (network, fi_blend, power_weight) with the largest worst-lab AP margin: for each lab, the any-FOG AP
   pooled over the lab's held-out subjects (mean over seeds) minus the freeze index's pooled AP; the smaller of the
   labs' margins counts (the bar is per lab). Ties (equal to 1e-4): the larger mean margin.
2. its event on-threshold (off = on - 0.15): among the thresholds at which every lab keeps pooled episode
   sensitivity >= SENS_FLOOR, the one with the smallest worst-lab ratio of false alarms per hour to the freeze
   index's (pooled per lab); ties: the higher threshold. If no threshold keeps the floor: the one with the highest
   worst-lab episode sensitivity. With `--walking` (CHOICE_RULE_ROUND2.md's amendment), only the thresholds at which
   the network's fold networks raise at most `--walking-max` false alarms per hour on real FOG-free walking are
   considered (calibration.walking_budget).
The choice is one setting for every person, never one per subject. `nested` applies the same rule once per
held-out subject on the other subjects' folds only, and scores that subject at the setting chosen without it.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from calibration.loso import HYSTERESIS, RECIPES, THRESHOLDS, fold_of, lab_of, predict_with, saved_fold_model
from calibration.choice_tables import TIE, mean_of, print_choice, screen, subject_table
from calibration.ensemble_terms import ensemble_name, members, run_terms
from calibration.progress import bar
from calibration.threshold_step import SENS_FLOOR, keeps_floor, threshold_row, threshold_step
from calibration.walking_budget import MAX_PER_HOUR
from deploy.contract.events import EventSettings
from deploy.events import DEFAULT_SETTINGS
from deploy.metrics import average_precision, roc_auc
from deploy.preprocess import prepare
from deploy.recording import read_recordings
from deploy.scoring import at_recording_rate, freeze_index_probability, json_safe, score

FI_BLENDS = (0.0, 0.25, 0.5, 0.75, 1.0)
POWER_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


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


def replayed(calls, spec, recordings, blend: float, power: float) -> list[np.ndarray]:
    """Per-recording probabilities of the blended model from recorded window terms (`calibration.loso.predict`'s
    grid; the recorded terms replace the model, so the windows need not be cut again: a layout-only spec)."""
    from deploy.offline import predict_prepared
    layout = replace(spec, normalization="running", gravity_align=False, horizontal="sensor", min_std=0.0)
    events = EventSettings.resolve(DEFAULT_SETTINGS)
    hop, look = events.hop_samples(spec.rate_hz), events.lookahead_samples(spec.rate_hz)
    infer = replay(calls, blend, power)
    return [at_recording_rate(predict_prepared(np.zeros((len(prepare(r, layout)), 3), np.float32), layout, infer,
                                               hop, look), spec.rate_hz, r) for r in recordings]


@dataclass
class Summary:
    """What the rule needs of one scorer on the held-out folds: per subject and on-threshold the any-FOG counts
    (episodes, found, false alarms, hours, AP), and per lab the AP pooled over its subjects, also with each one of
    them left out (for the nested choice)."""
    lab: dict          # subject -> lab
    counts: dict       # subject -> on (str) -> {"episodes", "found", "alarms", "hours", "ap"}
    lab_ap: dict       # lab -> left-out subject (or "") -> pooled AP
    auroc: dict = None  # subject or lab -> AUROC (the lab's over its pooled samples)


def summarize(recordings, probs, thresholds=THRESHOLDS, timing=None) -> Summary:
    """`probs[i]`: recording i's (n, C) or (n,) held-out probabilities; thresholds None: the scorer's own (the
    freeze index's 0.5); `timing`: event settings over the defaults at every threshold (calibration.event_choice)."""
    subjects = sorted({fold_of(r) for r in recordings})
    lab = {fold_of(r): lab_of(r) for r in recordings}
    counts, samples = {}, {}
    ons = [None] if thresholds is None else list(thresholds)
    for s in subjects:
        pick = [i for i, r in enumerate(recordings) if fold_of(r) == s]
        recs = [recordings[i] for i in pick]
        # any-FOG scores once (the largest class): the scorer then skips the per-class work at every threshold
        ps = [np.ascontiguousarray(probs[i].max(1) if probs[i].ndim == 2 else probs[i]) for i in pick]
        counts[s] = {}
        for on in ons:
            settings = DEFAULT_SETTINGS if on is None else {**DEFAULT_SETTINGS, **(timing or {}), "on": on,
                                                            "off": round(on - HYSTERESIS, 3)}
            fig = score(recs, ps, settings)["any_fog"]
            found = round(fig["sensitivity"] * fig["episodes_true"]) if fig["episodes_true"] else 0
            counts[s]["fi" if on is None else f"{on:g}"] = {"episodes": fig["episodes_true"], "found": found,
                                                            "alarms": fig["false_alarms"], "hours": fig["hours"],
                                                            "ap": fig["ap"]}
        valid = [np.ones(r.n_samples, bool) if r.mask is None else np.asarray(r.mask, bool) for r in recs]
        samples[s] = (np.concatenate([r.labels.max(1)[v] > 0.5 for r, v in zip(recs, valid)]),
                      np.concatenate([p[v] for p, v in zip(ps, valid)]))
    lab_ap = {}
    for name in sorted(set(lab.values())):
        members = [s for s in subjects if lab[s] == name]
        lab_ap[name] = {left: average_precision(*(np.concatenate([samples[s][k] for s in members if s != left])
                                                  for k in (0, 1))) if len(members) > 1 or not left else None
                        for left in [""] + members}
    auroc = {s: roc_auc(*samples[s]) for s in subjects}
    auroc.update({name: roc_auc(*(np.concatenate([samples[s][k] for s in subjects if lab[s] == name]) for k in (0, 1)))
                  for name in lab_ap})
    return Summary(lab, counts, lab_ap, auroc)


def lab_figures(summaries: list[Summary], fi: Summary, on: str, subjects) -> dict:
    """Per lab, over `subjects` (all held-out subjects, or all but one) and pooled over the runs (seeds): AP (mean
    over runs), the freeze index's, episode sensitivity, false alarms per hour and the freeze index's."""
    out = {}
    for name in sorted(set(fi.lab.values())):
        members = [s for s in subjects if fi.lab[s] == name]
        if not members:
            continue
        left = "".join(s for s in fi.lab if fi.lab[s] == name and s not in subjects)   # one subject at most
        ap = [s.lab_ap[name][left] for s in summaries]
        pooled = {k: sum(run.counts[s][on][k] for run in summaries for s in members)
                  for k in ("episodes", "found", "alarms", "hours")}
        fi_pooled = {k: sum(fi.counts[s]["fi"][k] for s in members) for k in ("alarms", "hours")}
        auroc = [(s.auroc or {}).get(name) for s in summaries] if not left else [None]
        out[name] = {"ap": float(np.mean(ap)), "ap_runs": ap, "fi_ap": fi.lab_ap[name][left],
                     "auroc": mean_of(auroc), "fi_auroc": None if left else (fi.auroc or {}).get(name),
                     "sensitivity": pooled["found"] / pooled["episodes"] if pooled["episodes"] else None,
                     "false_alarms_per_hour": pooled["alarms"] / pooled["hours"],
                     "fi_false_alarms_per_hour": fi_pooled["alarms"] / fi_pooled["hours"]}
    return out


def choose(candidates: dict, fi: Summary, subjects, budget=None) -> dict:
    """The rule (module docstring) on `subjects`' folds: `candidates` maps (network, fi_blend, power_weight) to the
    list of its runs' Summaries; `budget` (calibration.walking_budget.WalkingBudget) drops the thresholds that raise
    too many false alarms on real walking (if none is left: the one raising the fewest, the higher on a tie)."""
    def margins(key):
        labs = lab_figures(candidates[key], fi, f"{THRESHOLDS[0]:g}", subjects)
        values = [f["ap"] - f["fi_ap"] for f in labs.values()]
        return min(values), float(np.mean(values)), {lab: f["ap"] for lab, f in labs.items()}
    ranked = {key: margins(key) for key in candidates}
    best = max(ranked, key=lambda k: (round(ranked[k][0] / TIE), ranked[k][1]))
    rows = [threshold_row(lab_figures(candidates[best], fi, f"{on:g}", subjects), on=on) for on in THRESHOLDS]
    if budget is not None:
        walking = budget.per_hour(*best, THRESHOLDS, HYSTERESIS)
        for r in rows:
            r["walking_false_alarms_per_hour"] = walking[r["on"]]
    pick = threshold_step(rows, budget and budget.max_per_hour)
    network, blend, power = best
    return {"network": network, "fi_blend": blend, "power_weight": power, "on": pick["on"],
            "off": round(pick["on"] - HYSTERESIS, 3), "worst_lab_margin": ranked[best][0],
            "mean_lab_margin": ranked[best][1], "keeps_floor": keeps_floor(pick), "labs": pick["labs"],
            "walking_false_alarms_per_hour": pick.get("walking_false_alarms_per_hour"),
            "ranking": sorted(([*k, *v] for k, v in ranked.items()), key=lambda r: (-r[3], -r[4]))}


def subject_figures(summaries: list[Summary], fi: Summary, subject: str, on: str) -> dict:
    """One held-out subject's figures at `on`, pooled over runs, beside the freeze index's."""
    runs = [s.counts[subject][on] for s in summaries]
    f = fi.counts[subject]["fi"]
    episodes = sum(r["episodes"] for r in runs)
    hours = sum(r["hours"] for r in runs)
    aps = [r["ap"] for r in runs if r["ap"] is not None and r["ap"] == r["ap"]]
    return {"lab": fi.lab[subject], "episodes": f["episodes"], "ap": float(np.mean(aps)) if aps else None,
            "ap_runs": [r["ap"] for r in runs], "fi_ap": f["ap"], "auroc": mean_of([(s.auroc or {}).get(subject) for s in summaries]),
            "fi_auroc": (fi.auroc or {}).get(subject),
            "sensitivity": sum(r["found"] for r in runs) / episodes if episodes else None,
            "fi_sensitivity": f["found"] / f["episodes"] if f["episodes"] else None,
            "false_alarms_per_hour": sum(r["alarms"] for r in runs) / hours,
            "fi_false_alarms_per_hour": f["alarms"] / f["hours"]}


def nested(candidates: dict, fi: Summary, budget=None) -> dict:
    """The rule applied once per held-out subject on the OTHER subjects' folds only, and that subject's figures at
    the setting the others chose: how well choosing this way does on someone the choice never saw (`nested_pooled`
    pools them per lab)."""
    subjects = sorted(fi.lab)
    out = {}
    for held in subjects:
        chosen = choose(candidates, fi, [s for s in subjects if s != held], budget)
        key = (chosen["network"], chosen["fi_blend"], chosen["power_weight"])
        out[held] = {**{k: chosen[k] for k in ("network", "fi_blend", "power_weight", "on")},
                     **subject_figures(candidates[key], fi, held, f"{chosen['on']:g}")}
    return out


def nested_pooled(held_out: dict, terms: dict, fi_probs: dict) -> dict:
    """Per lab, every held-out subject at the setting chosen without it (`nested`), pooled: AP over the lab's pooled
    samples (mean over the runs of the subject's network), episodes found, false alarms per hour; the freeze index's
    beside. `terms`: {(network, run): [(fold recordings, calls, spec)]}; `fi_probs`: recording id -> FI score."""
    per_run = {}     # run index -> (recordings, probabilities, settings)
    for subject, m in held_out.items():
        runs = [folds for (network, _), folds in terms.items() if network == m["network"]]
        for k, folds in enumerate(runs):
            test, calls, spec = next(f for f in folds if fold_of(f[0][0]) == subject)
            # any-FOG, one event per freeze (the bundle's `any` mode), as `summarize` and the device score it
            probs = [p.max(1) for p in replayed(calls, spec, test, m["fi_blend"], m["power_weight"])]
            recs, ps, ons = per_run.setdefault(k, ([], [], []))
            recs += test
            ps += probs
            ons += [m["on"]] * len(test)
    out = {}
    for lab in sorted({lab_of(r) for recs, _, _ in per_run.values() for r in recs}):
        aps, aurocs, figures = [], [], []
        for recs, ps, ons in per_run.values():
            pick = [i for i, r in enumerate(recs) if lab_of(r) == lab]
            pooled = score([recs[i] for i in pick], [ps[i] for i in pick], DEFAULT_SETTINGS)["any_fog"]
            aps.append(pooled["ap"])
            aurocs.append(pooled.get("auroc"))
            figures += [score([recs[i]], [ps[i]], {**DEFAULT_SETTINGS, "on": ons[i],
                                                   "off": round(ons[i] - HYSTERESIS, 3)})["any_fog"] for i in pick]
        recs = [r for r in per_run[0][0] if lab_of(r) == lab]
        fi = score(recs, [fi_probs[r.meta["id"]] for r in recs], DEFAULT_SETTINGS)["any_fog"]
        episodes = sum(f["episodes_true"] for f in figures)
        out[lab] = {"ap": float(np.mean(aps)), "ap_runs": aps, "fi_ap": fi["ap"], "auroc": mean_of(aurocs),
                    "fi_auroc": fi.get("auroc"),
                    "sensitivity": sum(round(f["sensitivity"] * f["episodes_true"]) for f in figures
                                       if f["episodes_true"]) / episodes if episodes else None,
                    "fi_sensitivity": fi["sensitivity"],
                    "false_alarms_per_hour": sum(f["false_alarms"] for f in figures) / sum(f["hours"] for f in figures),
                    "fi_false_alarms_per_hour": fi["false_alarms_per_hour"]}
    return out


def fi_terms_kwargs(recipe) -> dict:
    """The recipe's preset's freeze-index settings, its power weight left out (the blend's grid varies it)."""
    from models import get_preset
    return {k: v for k, v in get_preset(recipe.preset).kwargs.get("fi_kwargs", {}).items() if k != "power_weight"}


def run_recipe(run, default):
    """The recipe a LOSO run was trained with (its loso.json), so its networks see the input they were trained on;
    `default` where the run has none."""
    from calibration.loso import Recipe
    path = Path(run) / "loso.json"
    if not path.is_file():
        return default
    return Recipe(**json.loads(path.read_text())["recipe"])


def cached_terms(recipe, weights: Path, recordings, fi_kwargs: dict, tag: str = ""):
    """`window_terms`, kept beside the fold's weights (terms-<subject>.npz) for the next choice over the same run;
    recomputed when the weights, the input spec or the freeze-index settings differ from the cached ones."""
    from calibration.loso import spec_of
    cache = weights.with_name(weights.name.replace("model-", "terms-").replace(".pt", f"{tag and '-' + tag}.npz"))
    key = json.dumps({"spec": spec_of(recipe).to_dict(), "fi": fi_kwargs, "weights": weights.stat().st_mtime_ns,
                      "recordings": [r.meta["id"] for r in recordings]}, sort_keys=True)
    if cache.is_file():
        saved = np.load(cache)
        if str(saved["key"]) == key:
            sizes = np.cumsum(saved["sizes"])[:-1]
            calls = list(zip(*(np.split(saved[k], sizes) for k in ("net", "fi", "pw"))))
            return calls, spec_of(recipe)
    calls, spec = window_terms(recipe, weights, recordings, fi_kwargs)
    np.savez(cache, key=key, sizes=[len(c[0]) for c in calls],
             **{k: np.concatenate([c[i] for c in calls]) for i, k in enumerate(("net", "fi", "pw"))})
    return calls, spec


def collect(data, runs_by_network: dict, recipe, fi_kwargs: dict):
    """(recordings, {(network, run): [(fold recordings, calls, spec)]}) for every candidate network's runs, each
    run's networks fed the input of the recipe it was trained with."""
    recordings = read_recordings(data)
    subjects = sorted({fold_of(r) for r in recordings})
    terms = {}
    for network, runs in runs_by_network.items():
        for run in runs:
            for n, subject in enumerate(subjects, 1):
                print(f"{network} {' + '.join(Path(m).name for m in members(run))} [{n}/{len(subjects)}] held-out "
                      f"{subject}: network and freeze-index terms",
                      file=sys.stderr, flush=True)
                test = [r for r in recordings if fold_of(r) == subject]
                calls, spec = run_terms(run, f"model-{subject}.pt", lambda member, weights: cached_terms(
                    run_recipe(member, recipe), weights, test, fi_kwargs))
                terms.setdefault((network, run), []).append((test, calls, spec))
    return recordings, terms


def walking_budget(args, runs_by_network: dict, recipe, fi_kwargs: dict):
    """`--walking`'s calibration.walking_budget.WalkingBudget: each candidate's fold networks on the walking
    recordings, each fed its run's input, their window terms cached beside the weights (terms-<fold>-walking.npz)."""
    from calibration.walking_budget import WalkingBudget
    walking = read_recordings(args.walking, mapping="mobgap")

    def fold_networks(network):
        def terms_of(member, weights):
            return cached_terms(run_recipe(member, recipe), weights, walking, fi_kwargs, tag="walking")
        return [run_terms(run, weights.name, terms_of) for run in runs_by_network[network]
                for weights in sorted(Path(members(run)[0]).glob("model-*.pt"))]
    return WalkingBudget(walking, fold_networks, replayed, args.walking_max)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m calibration.blend_choice", description=__doc__.split("\n\n")[0])
    p.add_argument("data", nargs="+", help="the real recordings of the LOSO runs (both labs' folders)")
    p.add_argument("--plain", nargs="+", action="append", default=[], metavar="RUN",
                   help="one candidate network: its plain LOSO runs' folders (model-<subject>.pt), one per seed; "
                        "repeat --plain for each candidate")
    p.add_argument("--ensemble", nargs="+", action="append", default=[], metavar="RUN",
                   help="one candidate network: the mean of the logits of these runs' fold networks (one member "
                        "per run, e.g. one per seed; calibration.ensemble_terms); repeatable")
    p.add_argument("--recipe", default="blend", choices=sorted(RECIPES))
    p.add_argument("--out", required=True)
    p.add_argument("--screen", action="store_true", help="step 1 of the rule only: every candidate's per-lab pooled "
                   "AP and margins over the freeze index (no thresholds, no nested choice); writes OUT/screen.json")
    p.add_argument("--walking", nargs="+", metavar="DIR", help="real FOG-free walking (../shared/data/mobgap-walking):"
                   " on-thresholds raising more than --walking-max false alarms per hour on it are not candidates "
                   "(CHOICE_RULE_ROUND2.md's amendment)")
    p.add_argument("--walking-max", type=float, default=MAX_PER_HOUR, metavar="PER_HOUR")
    args = p.parse_args(argv)
    if not args.plain and not args.ensemble:
        p.error("give at least one candidate: --plain RUN... or --ensemble RUN...")
    import torch

    from models import get_preset, list_presets
    torch.set_num_threads(1)   # batch-1-sized work: a second OpenMP thread only waits on a shared machine
    recipe = RECIPES[args.recipe]
    preset = get_preset(recipe.preset)
    fi_kwargs = fi_terms_kwargs(recipe)
    runs_by_network = {Path(runs[0]).name.rsplit("-s", 1)[0]: runs for runs in args.plain}
    runs_by_network.update({ensemble_name(runs): [tuple(runs)] for runs in args.ensemble})
    recordings, terms = collect(args.data, runs_by_network, recipe, fi_kwargs)
    fi_probs = {r.meta["id"]: freeze_index_probability(r) for r in recordings}
    fi = summarize(recordings, [fi_probs[r.meta["id"]] for r in recordings], thresholds=None)
    grid = [(b, p) for b in FI_BLENDS for p in POWER_WEIGHTS if b or not p]   # blend 0: power means nothing
    candidates = {}
    with bar(len(grid) * len(terms), "candidates scored", unit="run") as progress:
        for (network, run), folds in terms.items():
            for blend, power in grid:
                recs, probs = [], []
                for test, calls, spec in folds:
                    recs += test
                    probs += replayed(calls, spec, test, blend, power)
                candidates.setdefault((network, blend, power), []).append(
                    summarize(recs, probs, thresholds=() if args.screen else THRESHOLDS))
                progress.update()
    if args.screen:
        return screen(candidates, fi, args.out)
    budget = args.walking and walking_budget(args, runs_by_network, recipe, fi_kwargs)
    chosen = choose(candidates, fi, sorted(fi.lab), budget)
    key = (chosen["network"], chosen["fi_blend"], chosen["power_weight"])
    per_subject = {s: subject_figures(candidates[key], fi, s, f"{chosen['on']:g}") for s in sorted(fi.lab)}
    held_out = nested(candidates, fi, budget)
    held_out_labs = nested_pooled(held_out, terms, fi_probs)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.out, "choice.json").write_text(json.dumps(json_safe({
        "rule": __doc__.split("\n\n")[2], "runs": runs_by_network, "chosen": chosen, "per_subject": per_subject,
        "table": subject_table(per_subject), "nested": held_out,
        "nested_table": subject_table(held_out, setting_column=True), "nested_pooled": held_out_labs}),
        indent=1) + "\n")
    runs = runs_by_network[chosen["network"]]
    shipped = f"{preset.name}-x{len(runs[0])}" if isinstance(runs[0], tuple) else preset.name   # an ensemble's preset
    print_choice(chosen, per_subject, held_out, held_out_labs, get_preset(shipped if shipped in list_presets()
                                                                          else preset.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
