"""Score a model, checkpoint or bundle, and Moore's freeze-index baseline, on the same recordings.

  toolkit evaluate ../shared/data/daphnet --bundle bundle --plot plots/     # real freezes (Daphnet text files)
  toolkit evaluate data/defog --model fog-small --checkpoint runs/small/model.pt
  toolkit evaluate ../shared/data/mobgap-walking --mapping mobgap --bundle bundle   # FOG-free: false alarms
  toolkit evaluate --synthetic 4 --bundle bundles/fog-small --json

Predictions follow deploy.offline.predict_recording (the bundle's hop, look-ahead and event settings when a bundle
is given, else deploy.events.DEFAULT_SETTINGS, what export writes; each flag overrides one value) and are mapped
back to each recording's rate. Every figure comes from deploy.scoring, the project's one scorer: per-class APs
(the competition metric) on recordings labelled with the three Kaggle types; any-FOG AP, time-based sensitivity
and specificity, episode sensitivity, false alarms per hour and onset latency on every labelled recording
(Daphnet's single "freeze" label included); time called FOG and false alarms per hour on recordings without
labels (declared FOG-free). The freeze index (Bachlin: 4 s, threshold 1.5) is scored the same way.
"""
from __future__ import annotations

import json
import sys

import numpy as np

from calibration.checkpoint import load_model
from calibration.data import recordings_from_args
from deploy.bundle import Bundle
from deploy.contract import with_defaults
from deploy.engines import batch_infer, open_engine
from deploy.event_classes import from_manifest
from deploy.lazy import lazy_import, require
from deploy.offline import predict_recording
from deploy.preprocess import PreprocessSpec
from deploy.scoring import FI_THRESHOLD, FI_WINDOW_S, at_recording_rate, freeze_index_probability, json_safe, score
from toolkit.commands._events import add_event_arguments, event_overrides
from toolkit.commands._recordings import add_recording_arguments
from toolkit.cli import UserError
from toolkit.commands.evaluate_report import print_table
from toolkit.plots import plot_recordings

torch = lazy_import("torch", "workstation", "evaluating a PyTorch model")
models = lazy_import("models", "workstation", "evaluating a PyTorch model")

HELP = "score a model/checkpoint/bundle and the freeze-index baseline on recordings (table, --json, --plot)"


def add_arguments(p) -> None:
    add_recording_arguments(p, per_subject=1)
    p.add_argument("--seed", type=int, default=1000, help="synthetic seed (default 1000: the model card's held-out "
                   "subjects, never the training seeds)")
    p.add_argument("--model", help="registry preset name (models.create_model)")
    p.add_argument("--checkpoint", help="state_dict .pt for --model (default: the weights the project ships for "
                   "the preset, if any)")
    p.add_argument("--bundle", help="bundle folder made by `toolkit export`")
    p.add_argument("--backend", default="auto", help="engine backend for --bundle (default auto)")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"),
                   help="which of the bundle's graphs to score (default: the precision the bundle's target runs)")
    p.add_argument("--baseline-only", action="store_true", help="only the freeze-index baseline")
    ev = p.add_argument_group("event settings (default: the bundle's, else what export writes); the same names "
                              "as `toolkit export`")
    add_event_arguments(ev)
    p.add_argument("--fi-window", type=float, default=None, help="freeze-index window, s (default 4)")
    p.add_argument("--fi-threshold", type=float, default=None, help="freeze-index threshold (default 1.5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--per-recording", action="store_true", help="also print one row per recording")
    p.add_argument("--plot", metavar="DIR", help="write one PNG per recording: signal, truth, probabilities, "
                   "thresholds and events on one time axis")


def _torch_scorer(args):
    require(torch)
    model, _, checkpoint = load_model(args.model, args.checkpoint)  # the project's one weights loader

    def infer(x):
        with torch.no_grad():
            return torch.sigmoid(model(torch.from_numpy(x))).numpy()
    spec = PreprocessSpec.from_dict(models.get_preset(args.model).preprocess)
    name = args.model + (f" ({args.checkpoint})" if args.checkpoint else " (shipped weights)" if checkpoint
                         else " (untrained)")
    return name, spec, infer, None


def _bundle_scorer(args):
    bundle = Bundle.load(args.bundle)
    spec = PreprocessSpec.from_dict(bundle.manifest["input"]["preprocess"])
    infer = batch_infer(open_engine(bundle, backend=args.backend, precision=args.precision))
    precision = args.precision or bundle.manifest.get("precision")
    return f"bundle {args.bundle} ({precision})", spec, infer, bundle.manifest.get("events") or {}


def _settings(args, bundle_events=None) -> dict:
    """Event settings: defaults, then the bundle's, then the flags given."""
    return with_defaults(bundle_events, event_overrides(args))


def _model_probs(scorer, recs, settings):
    _, spec, infer, _ = scorer
    hop = max(1, int(round(settings["hop_s"] * spec.rate_hz)))
    look = settings["lookahead_s"]
    out = []
    for i, rec in enumerate(recs):
        print(f"\revaluate: model on recording {i + 1}/{len(recs)}", end="", file=sys.stderr)
        probs = predict_recording(rec, spec, infer, hop, None if look is None else int(round(look * spec.rate_hz)))
        out.append(at_recording_rate(probs, spec.rate_hz, rec))
    print(file=sys.stderr)
    return out


def _event_classes(args) -> tuple[list[int] | slice, str]:
    """A bundle's event columns (its background classes left out) and any-FOG rule; a preset: all, "max"."""
    if not args.bundle:
        return slice(None), "max"
    return from_manifest(Bundle.load(args.bundle, verify=False).manifest)


def _scorer(args):
    if args.bundle and args.model:
        raise UserError("give --model or --bundle, not both")
    if args.checkpoint and not args.model:
        raise UserError("--checkpoint needs --model PRESET (the architecture the weights belong to)")
    if args.baseline_only:
        return None
    if args.bundle:
        return _bundle_scorer(args)
    if args.model:
        return _torch_scorer(args)
    print("evaluate: no --model or --bundle given: scoring the freeze-index baseline only", file=sys.stderr)
    return None


def run(args) -> int:
    recs = recordings_from_args(args)
    scorer = _scorer(args)
    results, probs, rules = [], {}, {}
    settings = _settings(args, scorer[3] if scorer else None)
    if scorer:
        columns, rule = _event_classes(args)
        rules["model"] = rule
        probs["model"] = [p[:, columns] for p in _model_probs(scorer, recs, settings)]
        results.append(score(recs, probs["model"], settings, scorer[0], any_fog_rule=rule))
    fi_window = args.fi_window or FI_WINDOW_S
    fi_threshold = args.fi_threshold or FI_THRESHOLD
    probs["freeze index"] = [freeze_index_probability(r, fi_window, fi_threshold) for r in recs]
    results.append(score(recs, probs["freeze index"], settings,
                         f"freeze index ({fi_window:g} s, threshold {fi_threshold:g})"))
    if args.plot:
        written = plot_recordings(args.plot, recs, probs, settings, rules)
        print(f"evaluate: {len(written)} plots in {args.plot}", file=sys.stderr)
    hours = sum(r.duration_s for r in recs) / 3600
    if args.json:
        print(json.dumps(json_safe({"recordings": len(recs), "hours": hours, "events": settings,
                                    "results": results}), indent=2))
        return 0
    print_table(recs, results, settings, per_recording=args.per_recording)
    return 0
