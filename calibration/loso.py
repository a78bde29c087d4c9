"""Leave-one-subject-out (LOSO) and leave-one-lab-out on real recordings, synthetic subjects in every training fold.

  python -m calibration.loso ../shared/data/daphnet ../shared/data/stanford-imu-fog-64hz --recipe plain \
      --out runs/loso-plain [--jobs 2] [--hold-out lab]

Each fold holds out one real subject (`--hold-out subject`, the default) or one lab (`--hold-out lab`:
`meta["lab"]`, e.g. train on Daphnet and score Stanford); the model trains on the other recordings plus seeded
synthetic subjects (`deploy.synth`) for a fixed schedule (no early stopping on anything real: the test subject must
never steer training, and there is no subject to spare for validation). The held-out recordings are then predicted on
the bundle's grid (hop and look-ahead of the default EventSettings) and scored by `deploy.scoring` next to the
freeze index, at every on-threshold of `THRESHOLDS`, so a threshold can be chosen on the folds and never on one
subject. Probabilities are saved per fold (`probs-<fold>.npz`), the fold's weights (`model-<fold>.pt`) and the
figures in `loso.json`: per fold, and pooled per lab over the lab's held-out recordings (`pooled`), each lab's
recordings scored with the probabilities of the fold that held them out.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from calibration.ensemble_weights import mean_of_networks
from deploy.contract.events import EventSettings
from deploy.events import DEFAULT_SETTINGS
from deploy.recording import read_recordings
from deploy.scoring import at_recording_rate, freeze_index_probability, json_safe, score

THRESHOLDS = (0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9)
HYSTERESIS = 0.15       # off = on - HYSTERESIS
HOLD_OUT = ("subject", "lab")   # what a fold holds out: one person, or one whole lab


def fold_of(recording, by: str = "subject") -> str:
    """The fold a recording belongs to: its subject, or its lab (`meta["lab"]`, "unknown" where a reader sets none)."""
    return str(recording.meta.get("subject") if by == "subject" else recording.meta.get("lab", "unknown"))


def lab_of(recording) -> str:
    return fold_of(recording, "lab")


@dataclass(frozen=True)
class Recipe:
    preset: str = "fog-small"
    preprocess: dict = field(default_factory=dict)    # PreprocessSpec overrides (gravity_align, min_std, ...)
    model: dict = field(default_factory=dict)         # model keyword overrides
    train_only: dict = field(default_factory=dict)    # model keyword overrides while training only (weights
    #                                                   then move into the model as `model` says, e.g. fi_blend)
    real_share: float = 0.5          # share of training windows drawn from real recordings
    synthetic_subjects: int = 12
    synthetic_minutes: float = 5.0
    epochs: int = 20
    steps: int = 30
    batch_size: int = 32
    lr: float = 1.5e-3
    warmup: int = 100
    augment: bool | dict = True      # calibration.train.TrainConfig.augment
    seed: int = 0
    synth: dict = field(default_factory=dict)   # deploy.synth.SynthOptions of the synthetic training subjects
    end_weight: float = 0.0          # calibration.train.TrainConfig.end_weight
    by_episode: bool = False         # calibration.train.TrainConfig.by_episode


NO_BLEND = {"fi_blend": 0.0}   # fog-small without its fixed freeze-index logit (as every recipe before "blend")
# the input however the sensor sits (deploy.preprocess.window_frame): gravity on -AccV, horizontal on principal axes
INVARIANT = {"gravity_align": True, "horizontal": "principal"}
TREMOR = {"tremor_share": 0.5, "broadband_freezes": True}   # round two's synthetic tremor subjects
RECIPE_INVARIANT = Recipe(preprocess=INVARIANT, model=NO_BLEND, real_share=0.8)
LONG_TREMOR = replace(RECIPE_INVARIANT, epochs=40, synth=TREMOR)
RECIPES = {
    "synthetic-only": Recipe(real_share=0.0, model=NO_BLEND),
    "plain": Recipe(model=NO_BLEND),
    "floor": Recipe(preprocess={"min_std": 0.05}, model=NO_BLEND),
    "gravity": Recipe(preprocess={"gravity_align": True}, model=NO_BLEND),
    "gravity-floor": Recipe(preprocess={"gravity_align": True, "min_std": 0.05}, model=NO_BLEND),
    # issue 25's candidates, on both labs (see models/weights/CHOICE_RULE.md): the invariant input ...
    "invariant": RECIPE_INVARIANT,
    # ... with half the windows synthetic, and with training windows low-passed at 10-20 Hz half of the time
    "invariant-half": Recipe(preprocess=INVARIANT, model=NO_BLEND, real_share=0.5),
    "invariant-lowpass": replace(RECIPE_INVARIANT, augment={"lowpass": [0.5, 10.0, 20.0]}),
    # ... for 40 epochs; for comparison only, gravity alone, the heading left to augmentation (turns up to 180 deg)
    "invariant-long": replace(RECIPE_INVARIANT, epochs=40),
    "vertical-augmented": replace(RECIPE_INVARIANT, preprocess={"gravity_align": True}, augment={"rotation_deg": 180}),
    # round two (CHOICE_RULE_ROUND2.md): synthetic 4-6 Hz tremor that is not freezing and broadband freeze trembling;
    # the loss weighted toward the window's end, where the device reads it (1 s look-ahead); both
    "invariant-tremor": replace(RECIPE_INVARIANT, synth=TREMOR),
    "invariant-end": replace(RECIPE_INVARIANT, end_weight=3.0),
    "invariant-tremor-end": replace(RECIPE_INVARIANT, end_weight=3.0, synth=TREMOR),
    # round three (CHOICE_RULE_ROUND3.md): invariant-long with tremor subjects; for short freezes (none won), its loss
    # weighted to the window's end (SCREEN_ROUND5.md), an 8 s window and each episode alike (CHOICE_RULE_ROUND5/7.md)
    "invariant-long-tremor": LONG_TREMOR,
    "invariant-long-tremor-end": replace(LONG_TREMOR, end_weight=3.0),
    "invariant-long-tremor-8s": replace(LONG_TREMOR, preprocess={**INVARIANT, "n_patches": 64},
                                        model={**NO_BLEND, "seq_len": 64, "d": 64}),
    "invariant-long-tremor-episodes": replace(LONG_TREMOR, by_episode=True),
    # fixed band powers (freeze-index ingredients) per patch beside the learnt embedding (models.spectral)
    "spectral": Recipe(model={"spectral": {"rate_hz": 64.0, "window_s": 4.0}, **NO_BLEND}),
    # the shipped networks: trained without the preset's fixed freeze-index logit, predicting with it (the card)
    "blend": Recipe(train_only=NO_BLEND),
    # the preset as registered, fixed term included while training: the network learns corrections to it
    "residual": Recipe(),
}


def mixed(synthetic: list, real: list, real_share: float) -> list:
    """Training recordings with about `real_share` of the windows from real ones: windows are drawn round-robin over
    recordings (calibration.data.sample_starts), so the smaller side is repeated (whole copies, at least one each)."""
    if not real or real_share <= 0:
        return list(synthetic)
    if not synthetic or real_share >= 1:
        return list(real)
    ratio = real_share / (1 - real_share) * len(synthetic) / len(real)    # real copies per synthetic copy
    if ratio >= 1:
        return synthetic + real * max(1, round(ratio))
    return synthetic * max(1, round(1 / ratio)) + real


def spec_of(recipe: Recipe):
    from models import get_preset
    from deploy.preprocess import PreprocessSpec
    return PreprocessSpec.from_dict({**get_preset(recipe.preset).preprocess, **recipe.preprocess})


def train_model(recipe: Recipe, real_train, log=None):
    """A model trained by `recipe` on `real_train` (Recordings) plus the recipe's synthetic subjects."""
    import torch

    from calibration.data import prepare_recording, synthetic_recordings
    from calibration.train import TrainConfig, fit
    from models import create_model

    torch.manual_seed(recipe.seed)
    spec = spec_of(recipe)
    synthetic = [prepare_recording(r, spec) for r in synthetic_recordings(
        recipe.synthetic_subjects, seed=recipe.seed, minutes=recipe.synthetic_minutes, options=recipe.synth)]
    real = [prepare_recording(r, spec) for r in real_train]
    train = mixed(synthetic, real, recipe.real_share)
    val = [prepare_recording(r, spec) for r in synthetic_recordings(2, seed=recipe.seed + 500, minutes=3.0)]
    model = create_model(recipe.preset, **{**recipe.model, **recipe.train_only})
    config = TrainConfig(epochs=recipe.epochs, steps_per_epoch=recipe.steps, batch_size=recipe.batch_size,
                         lr=recipe.lr, warmup_steps=recipe.warmup, patience=recipe.epochs + 1, seed=recipe.seed,
                         augment=recipe.augment, keep="last", end_weight=recipe.end_weight,
                         by_episode=recipe.by_episode)
    result = fit(model, train, val, spec, config, progress=log is not None)
    if recipe.train_only:
        trained, model = model, create_model(recipe.preset, **recipe.model)
        model.load_state_dict(trained.state_dict())
        model.eval()
    return model, spec, result


def predict(model, spec, recordings, settings=DEFAULT_SETTINGS):
    """Per-recording class probabilities at each recording's rate, on the bundle's hop and look-ahead grid
    (`settings`: event settings, an EventSettings or a partial dict of its keys)."""
    from calibration.train import make_infer
    return predict_with(make_infer(model), spec, recordings, settings)


def predict_with(infer, spec, recordings, settings=DEFAULT_SETTINGS):
    """`predict` with any `infer(batch) -> probabilities`, called batch after batch in a fixed order."""
    from deploy.offline import predict_recording

    events = EventSettings.resolve(settings)
    hop, look = events.hop_samples(spec.rate_hz), events.lookahead_samples(spec.rate_hz)
    return [at_recording_rate(predict_recording(r, spec, infer, hop, look), spec.rate_hz, r) for r in recordings]


def threshold_sweep(recordings, probs) -> dict:
    """Pooled any-FOG figures at each on-threshold (off = on - HYSTERESIS): one event per freeze (events.mode
    "any"), as a model trained on these untyped freezes raises them."""
    out = {}
    for on in THRESHOLDS:
        settings = EventSettings.resolve({"on": on, "off": round(on - HYSTERESIS, 3), "mode": "any"})
        out[f"{on:g}"] = score(recordings, probs, settings)
    return out


def saved_fold_model(recipe: Recipe, path: Path):
    """A fold's saved weights (model-<subject>.pt) in the recipe's model, e.g. to predict with another fi_blend."""
    from calibration.checkpoint import fit_weights, read_weights
    from models import create_model
    model = create_model(recipe.preset, **recipe.model)
    fit_weights(model, read_weights(path)[0], path, "the fold was trained with another recipe")
    return model.eval(), spec_of(recipe)


def save_fold(out_dir, held: str, model, recordings, probs) -> None:
    """A fold's weights (to predict again on another grid or with another fi_blend) and probabilities."""
    import torch
    torch.save(model.state_dict(), Path(out_dir) / f"model-{held}.pt")
    np.savez_compressed(Path(out_dir) / f"probs-{held}.npz",
                        **{r.meta["id"]: p.astype(np.float32) for r, p in zip(recordings, probs)})


def run_fold(recipe: Recipe, paths: list[str], held: str, out_dir: str, reuse: bool = False,
             by: str = "subject") -> dict:
    """Train without the recordings of fold `held` (a subject, or a lab with by="lab"), predict and score them."""
    import torch
    torch.set_num_threads(1)
    recordings = read_recordings(paths)
    test = [r for r in recordings if fold_of(r, by) == held]
    train = [r for r in recordings if fold_of(r, by) != held]
    started = time.perf_counter()
    if reuse:
        (model, spec), result = saved_fold_model(recipe, Path(out_dir) / f"model-{held}.pt"), None
    else:
        model, spec, result = train_model(recipe, train)
    probs = predict(model, spec, test)
    save_fold(out_dir, held, model, test, probs)
    fi = [freeze_index_probability(r) for r in test]
    return {"subject": held, "held_out": by, "recordings": [r.meta["id"] for r in test],
            "labs": sorted({lab_of(r) for r in test}),
            "train_subjects": sorted({r.meta["subject"] for r in train}),
            "seconds": round(time.perf_counter() - started, 1), "reused_weights": reuse,
            "train_loss_last": result and result.history[-1]["train_loss"],
            "model": threshold_sweep(test, probs), "freeze_index": score(test, fi, DEFAULT_SETTINGS, "freeze index")}


def reblend(recipe: Recipe, paths: list[str], plain_dirs: list[str], out_dir: str | None = None,
            by: str = "subject") -> dict:
    """LOSO figures of the recipe's model (e.g. the preset with its fixed freeze-index blend) from another run's
    saved fold weights (DIR/model-<fold>.pt of recipe "plain": the same learnt network), predicted again on
    the same grid, so no fold is trained again. Exact: the blend happens inside each window's logits, before the
    windows' probabilities are averaged, as on the device. With `out_dir`, the probabilities are saved there.
    Several runs (one per seed) are scored as one seed ensemble: each fold's networks, logits averaged, blend once."""
    import torch
    torch.set_num_threads(1)
    recordings = read_recordings(paths)
    folds = []
    for held in sorted({fold_of(r, by) for r in recordings}):
        test = [r for r in recordings if fold_of(r, by) == held]
        members = [Path(d) / f"model-{held}.pt" for d in plain_dirs]
        for weights in (w for w in members if not w.is_file()):
            raise SystemExit(f"--reblend: {weights} is missing; run `python -m calibration.loso ... --recipe plain "
                             f"--out {weights.parent}` first (it saves each fold's weights)")
        nets = [saved_fold_model(recipe, weights) for weights in members]
        model, spec = nets[0] if len(nets) == 1 else (mean_of_networks(
            recipe.preset, [net.state_dict() for net, _ in nets], **recipe.model), nets[0][1])
        probs = predict(model, spec, test)
        if out_dir:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            save_fold(out_dir, held, model, test, probs)
        fi_prob = [freeze_index_probability(r) for r in test]
        folds.append({"subject": held, "held_out": by, "recordings": [r.meta["id"] for r in test],
                      "labs": sorted({lab_of(r) for r in test}), "reblended_from": plain_dirs,
                      "model": threshold_sweep(test, probs),
                      "freeze_index": score(test, fi_prob, DEFAULT_SETTINGS, "freeze index")})
    return {"recipe": asdict(recipe), "held_out": by, "folds": folds}


def fold_probabilities(out_dir, recordings, folds) -> list[np.ndarray]:
    """Each recording's held-out probabilities, from the saved probs-<fold>.npz of the fold that held it out."""
    saved, out = {}, []
    owner = {rid: fold["subject"] for fold in folds for rid in fold["recordings"]}
    for r in recordings:
        held = owner[r.meta["id"]]
        if held not in saved:
            saved[held] = np.load(Path(out_dir) / f"probs-{held}.npz")
        out.append(saved[held][r.meta["id"]])
    return out


def pooled_by_lab(paths: list[str], out_dir, folds) -> dict:
    """Per lab: the model's figures at every on-threshold and the freeze index's, pooled over the lab's held-out
    recordings (AP over their pooled samples, episodes and alarms summed), each scored by the fold holding it out."""
    held = {rid for fold in folds for rid in fold["recordings"]}
    recordings = [r for r in read_recordings(paths) if r.meta["id"] in held]
    probs = fold_probabilities(out_dir, recordings, folds)
    out = {}
    for lab in sorted({lab_of(r) for r in recordings}):
        pick = [i for i, r in enumerate(recordings) if lab_of(r) == lab]
        recs = [recordings[i] for i in pick]
        out[lab] = {"subjects": sorted({r.meta["subject"] for r in recs}),
                    "model": threshold_sweep(recs, [probs[i] for i in pick]),
                    "freeze_index": score(recs, [freeze_index_probability(r) for r in recs], DEFAULT_SETTINGS,
                                          "freeze index")}
    return out


def study(recipe: Recipe, paths: list[str], out_dir: str, jobs: int = 1, only=None, reuse: bool = False,
          by: str = "subject") -> dict:
    held = sorted({fold_of(r, by) for r in read_recordings(paths)})
    if only:
        unknown = sorted(set(only) - set(held))
        if unknown:
            raise SystemExit(f"--folds names {unknown}, not {by}s of these recordings ({', '.join(held)})")
        held = [s for s in held if s in only]
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    n = len(held)
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        folds = list(pool.map(run_fold, [recipe] * n, [paths] * n, held, [out_dir] * n, [reuse] * n, [by] * n))
    return {"recipe": asdict(recipe), "held_out": by, "folds": folds}


def summary_rows(result: dict, on: str = "0.5"):
    """(held-out fold, model figures, freeze-index figures) per fold, then ("<lab> pooled", ...) per lab."""
    for fold in result["folds"]:
        yield fold["subject"], fold["model"][on], fold["freeze_index"]
    for lab, pooled in (result.get("pooled") or {}).items():
        yield f"{lab} pooled", pooled["model"][on], pooled["freeze_index"]


TABLE_FIGURES = (("ap", ".3f"), ("auroc", ".3f"), ("sensitivity", ".2f"), ("false_alarms_per_hour", ".1f"),
                 ("sensitivity_time", ".2f"), ("specificity_time", ".2f"))


def markdown_table(result: dict, on: str = "0.5") -> str:
    """The model card's per-fold table (and per-lab pooled rows): model vs freeze index, any FOG, at `on`."""
    def cell(fig, key, fmt):
        value = (fig.get("any_fog") or {}).get(key)
        return "-" if value is None or value != value else format(value, fmt)
    rows = ["| held out | episodes | AP model / FI | AUROC model / FI | episode sens. model / FI "
            "| false alarms/h model / FI | time sens. model / FI | time spec. model / FI |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for held, m, fi in summary_rows(result, on):
        rows.append(f"| {held} | {m['any_fog']['episodes_true']} | "
                    + " | ".join(f"{cell(m, k, f)} / {cell(fi, k, f)}" for k, f in TABLE_FIGURES) + " |")
    return "\n".join(rows)


def train_final(recipe: Recipe, paths: list[str], out_dir: str) -> Path:
    """The shipped model: the recipe trained on every real subject (plus its synthetic subjects)."""
    import torch

    from calibration.checkpoint import save_checkpoint
    from calibration.data import describe_recordings

    torch.set_num_threads(1)
    if recipe.preprocess or recipe.model:
        raise SystemExit("the shipped model is the preset as registered: move the recipe's preprocess/model "
                         f"overrides ({recipe.preprocess}, {recipe.model}) into the {recipe.preset} preset first")
    real = read_recordings(paths)
    started = time.perf_counter()
    model, spec, result = train_model(recipe, real, log=True)
    info = {"preset": recipe.preset, "seed": recipe.seed, "recipe": asdict(recipe), "preprocess": spec.to_dict(),
            "train_data": describe_recordings(real),
            "synthetic_train_subjects": [f"syn{recipe.seed}-s{s:02d}" for s in range(recipe.synthetic_subjects)],
            "val_data": {"subjects": [f"syn{recipe.seed + 500}-s{s:02d}" for s in range(2)],
                         "note": "logged only; the last weights are kept"},
            "epochs_run": result.epochs_run, "seconds": round(time.perf_counter() - started, 1), "threads": 1}
    return save_checkpoint(model, Path(out_dir) / "model.pt", info)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m calibration.loso", description=__doc__.split("\n\n")[0])
    p.add_argument("data", nargs="+", help="real recordings with subject ids (e.g. ../shared/data/daphnet)")
    p.add_argument("--recipe", default="blend", choices=sorted(RECIPES))
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="override a recipe field, e.g. --set epochs=30 --set 'preprocess={\"min_std\": 0.1}'")
    p.add_argument("--out", required=True)
    p.add_argument("--jobs", type=int, default=1, help="folds in parallel (one torch thread each)")
    p.add_argument("--folds", help="comma-separated held-out subjects (or labs) to run (default: every one)")
    p.add_argument("--hold-out", choices=HOLD_OUT, default="subject", help="what a fold holds out: one subject "
                   "(leave-one-subject-out, the default) or one lab (meta['lab']: train on the other lab)")
    p.add_argument("--reuse", action="store_true", help="no training: predict with the folds' saved weights "
                   "(OUT/model-<fold>.pt) in the recipe's model (e.g. another fi_blend); writes OUT/loso.json")
    p.add_argument("--reblend", metavar="DIR", nargs="+", help="no training: the recipe's model (e.g. the preset's "
                   "freeze-index blend) with DIR's saved fold weights (a plain run: the same learnt network); several "
                   "DIRs (one per seed): their fold networks as one seed ensemble; writes OUT/loso.json")
    p.add_argument("--final", action="store_true", help="no folds: train on every subject, write OUT/model.pt")
    p.add_argument("--table", metavar="ON", help="print the per-fold (and per-lab pooled) markdown table of "
                   "OUT/loso.json at this on-threshold and stop")
    args = p.parse_args(argv)
    if args.table:
        result = json.loads(Path(args.out, "loso.json").read_text())
        if "pooled" not in result:    # a run written before the per-lab pooling: pool its saved probabilities now
            result["pooled"] = json_safe(pooled_by_lab(args.data, args.out, result["folds"]))
            Path(args.out, "loso.json").write_text(json.dumps(result, indent=1) + "\n")
        print(markdown_table(result, args.table))
        return 0
    recipe = RECIPES[args.recipe]
    for item in args.set:
        key, _, value = item.partition("=")
        recipe = replace(recipe, **{key: json.loads(value)})
    if args.final:
        print(f"trained: {train_final(recipe, args.data, args.out)}", file=sys.stderr)
        return 0
    if args.reblend:
        result = reblend(recipe, args.data, args.reblend, args.out, args.hold_out)
    else:
        result = study(recipe, args.data, args.out, args.jobs, args.folds and args.folds.split(","), args.reuse,
                       args.hold_out)
    result["pooled"] = pooled_by_lab(args.data, args.out, result["folds"])
    Path(args.out, "loso.json").write_text(json.dumps(json_safe(result), indent=1) + "\n")
    for subject, m, fi in summary_rows(result):
        a, f = m.get("any_fog") or m.get("unlabelled") or {}, fi.get("any_fog") or {}
        print(f"{subject}: model AP {a.get('ap', float('nan')):.3f} sens {a.get('sensitivity', float('nan')):.2f} "
              f"FA/h {a.get('false_alarms_per_hour', float('nan')):.1f} | FI AP {f.get('ap', float('nan')):.3f} "
              f"FA/h {f.get('false_alarms_per_hour', float('nan')):.1f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
