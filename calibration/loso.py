"""Leave-one-subject-out (LOSO) on real recordings, synthetic subjects in every training fold.

  python -m calibration.loso ../shared/data/daphnet --recipe gravity --out runs/loso-gravity [--jobs 2]

Each fold holds out one real subject; the model trains on the other real subjects plus seeded synthetic
subjects (`deploy.synth`) for a fixed schedule (no early stopping on anything real: with three subjects there is
no validation subject to spare, and the test subject must never steer training). The held-out subject is then
predicted on the bundle's grid (hop and look-ahead of the default EventSettings) and scored by
`deploy.scoring` next to the freeze index, at every on-threshold of `THRESHOLDS`, so a threshold can be chosen
on the folds (pooled) and never on one subject. Probabilities are saved per fold (`probs-<subject>.npz`) and the
figures in `loso.json`.
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

from deploy.contract.events import EventSettings
from deploy.events import DEFAULT_SETTINGS
from deploy.recording import read_recordings
from deploy.scoring import at_recording_rate, freeze_index_probability, json_safe, score

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9)
HYSTERESIS = 0.15       # off = on - HYSTERESIS


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
    augment: bool = True
    seed: int = 0


NO_BLEND = {"fi_blend": 0.0}   # fog-small without its fixed freeze-index logit (as every recipe before "blend")

RECIPES = {
    "synthetic-only": Recipe(real_share=0.0, model=NO_BLEND),
    "plain": Recipe(model=NO_BLEND),
    "floor": Recipe(preprocess={"min_std": 0.05}, model=NO_BLEND),
    "gravity": Recipe(preprocess={"gravity_align": True}, model=NO_BLEND),
    "gravity-floor": Recipe(preprocess={"gravity_align": True, "min_std": 0.05}, model=NO_BLEND),
    # fixed band powers (freeze-index ingredients) per patch beside the learnt embedding (models.spectral)
    "spectral": Recipe(model={"spectral": {"rate_hz": 64.0, "window_s": 4.0}, **NO_BLEND}),
    # the shipped recipe: trained as "plain", then predicting with the preset's fixed freeze-index logit added
    # (fog-small: 1.0 x with the power term; calibration.blend_choice chose it, see the model card)
    "blend": Recipe(train_only=NO_BLEND),
    # the preset as registered, fixed term included while training: the network learns corrections to it
    "residual": Recipe(),
}


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
        recipe.synthetic_subjects, seed=recipe.seed, minutes=recipe.synthetic_minutes)]
    real = [prepare_recording(r, spec) for r in real_train]
    copies = 0
    if real and recipe.real_share > 0:
        copies = max(1, round(recipe.real_share * len(synthetic) / ((1 - recipe.real_share) * len(real))))
    train = synthetic + real * copies
    val = [prepare_recording(r, spec) for r in synthetic_recordings(2, seed=recipe.seed + 500, minutes=3.0)]
    model = create_model(recipe.preset, **{**recipe.model, **recipe.train_only})
    config = TrainConfig(epochs=recipe.epochs, steps_per_epoch=recipe.steps, batch_size=recipe.batch_size,
                         lr=recipe.lr, warmup_steps=recipe.warmup, patience=recipe.epochs + 1, seed=recipe.seed,
                         augment=recipe.augment, keep="last")
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


def run_fold(recipe: Recipe, paths: list[str], subject: str, out_dir: str, reuse: bool = False) -> dict:
    import torch
    torch.set_num_threads(1)
    recordings = read_recordings(paths)
    test = [r for r in recordings if r.meta["subject"] == subject]
    train = [r for r in recordings if r.meta["subject"] != subject]
    started = time.perf_counter()
    weights = Path(out_dir) / f"model-{subject}.pt"
    if reuse:
        (model, spec), result = saved_fold_model(recipe, weights), None
    else:
        model, spec, result = train_model(recipe, train)
    probs = predict(model, spec, test)
    torch.save(model.state_dict(), weights)   # to re-predict on other grids or with another fi_blend (--reuse)
    np.savez_compressed(Path(out_dir) / f"probs-{subject}.npz",
                        **{r.meta["id"]: p.astype(np.float32) for r, p in zip(test, probs)})
    fi = [freeze_index_probability(r) for r in test]
    return {"subject": subject, "recordings": [r.meta["id"] for r in test],
            "train_subjects": sorted({r.meta["subject"] for r in train}),
            "seconds": round(time.perf_counter() - started, 1), "reused_weights": reuse,
            "train_loss_last": result and result.history[-1]["train_loss"],
            "model": threshold_sweep(test, probs), "freeze_index": score(test, fi, DEFAULT_SETTINGS, "freeze index")}


def reblend(recipe: Recipe, paths: list[str], plain_dir: str) -> dict:
    """LOSO figures of the recipe's model (e.g. the preset with its fixed freeze-index blend) from another run's
    saved fold weights (DIR/model-<subject>.pt of recipe "plain": the same learnt network), predicted again on
    the same grid, so no fold is trained again. Exact: the blend happens inside each window's logits, before the
    windows' probabilities are averaged, as on the device."""
    import torch
    torch.set_num_threads(1)
    recordings = read_recordings(paths)
    folds = []
    for subject in sorted({r.meta["subject"] for r in recordings}):
        test = [r for r in recordings if r.meta["subject"] == subject]
        weights = Path(plain_dir) / f"model-{subject}.pt"
        if not weights.is_file():
            raise SystemExit(f"--reblend: {weights} is missing; run `python -m calibration.loso ... --recipe plain "
                             f"--out {plain_dir}` first (it saves each fold's weights)")
        model, spec = saved_fold_model(recipe, weights)
        fi_prob = [freeze_index_probability(r) for r in test]
        folds.append({"subject": subject, "recordings": [r.meta["id"] for r in test], "reblended_from": plain_dir,
                      "model": threshold_sweep(test, predict(model, spec, test)),
                      "freeze_index": score(test, fi_prob, DEFAULT_SETTINGS, "freeze index")})
    return {"recipe": asdict(recipe), "folds": folds}


def study(recipe: Recipe, paths: list[str], out_dir: str, jobs: int = 1, only=None, reuse: bool = False) -> dict:
    subjects = sorted({r.meta["subject"] for r in read_recordings(paths)})
    if only:
        unknown = sorted(set(only) - set(subjects))
        if unknown:
            raise SystemExit(f"--folds names {unknown}, not subjects of these recordings ({', '.join(subjects)})")
        subjects = [s for s in subjects if s in only]
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        folds = list(pool.map(run_fold, [recipe] * len(subjects), [paths] * len(subjects), subjects,
                              [out_dir] * len(subjects), [reuse] * len(subjects)))
    return {"recipe": asdict(recipe), "folds": folds}


def summary_rows(result: dict, on: str = "0.5"):
    """(subject, model figures, freeze-index figures) per fold, any FOG / unlabelled-style figures."""
    for fold in result["folds"]:
        yield fold["subject"], fold["model"][on], fold["freeze_index"]


def markdown_table(result: dict, on: str = "0.5") -> str:
    """The model card's per-fold table: model vs freeze index, any FOG, at on-threshold `on`."""
    def cell(fig, key, fmt):
        value = (fig.get("any_fog") or {}).get(key)
        return "-" if value is None or value != value else format(value, fmt)
    rows = ["| held-out subject | episodes | AP model / FI | episode sens. model / FI | false alarms/h model / FI "
            "| time sens. model / FI | time spec. model / FI |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for subject, m, fi in summary_rows(result, on):
        rows.append(f"| {subject} | {m['any_fog']['episodes_true']} | " + " | ".join(
            f"{cell(m, k, f)} / {cell(fi, k, f)}" for k, f in (("ap", ".3f"), ("sensitivity", ".2f"),
                                                              ("false_alarms_per_hour", ".1f"),
                                                              ("sensitivity_time", ".2f"),
                                                              ("specificity_time", ".2f"))) + " |")
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
    p.add_argument("--folds", help="comma-separated held-out subjects to run (default: every subject)")
    p.add_argument("--reuse", action="store_true", help="no training: predict with the folds' saved weights "
                   "(OUT/model-<subject>.pt) in the recipe's model (e.g. another fi_blend); writes OUT/loso.json")
    p.add_argument("--reblend", metavar="DIR", help="no training: the recipe's model (e.g. the preset's freeze-index "
                   "blend) with DIR's saved fold weights (a plain run: the same learnt network); writes OUT/loso.json")
    p.add_argument("--final", action="store_true", help="no folds: train on every subject, write OUT/model.pt")
    p.add_argument("--table", metavar="ON", help="print the per-fold markdown table of OUT/loso.json at this "
                   "on-threshold and stop")
    args = p.parse_args(argv)
    if args.table:
        print(markdown_table(json.loads(Path(args.out, "loso.json").read_text()), args.table))
        return 0
    recipe = RECIPES[args.recipe]
    for item in args.set:
        key, _, value = item.partition("=")
        recipe = replace(recipe, **{key: json.loads(value)})
    if args.final:
        print(f"trained: {train_final(recipe, args.data, args.out)}", file=sys.stderr)
        return 0
    if args.reblend:
        result = reblend(recipe, args.data, args.reblend)
    else:
        result = study(recipe, args.data, args.out, args.jobs, args.folds and args.folds.split(","), args.reuse)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.out, "loso.json").write_text(json.dumps(json_safe(result), indent=1) + "\n")
    for subject, m, fi in summary_rows(result):
        a, f = m.get("any_fog") or m.get("unlabelled") or {}, fi.get("any_fog") or {}
        print(f"{subject}: model AP {a.get('ap', float('nan')):.3f} sens {a.get('sensitivity', float('nan')):.2f} "
              f"FA/h {a.get('false_alarms_per_hour', float('nan')):.1f} | FI AP {f.get('ap', float('nan')):.3f} "
              f"FA/h {f.get('false_alarms_per_hour', float('nan')):.1f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
