"""Score a model, checkpoint or bundle, and Moore's freeze-index baseline, on the same recordings.

  toolkit evaluate data/defog --model fog-small --checkpoint runs/small/model.pt
  toolkit evaluate --synthetic 4 --bundle bundles/fog-small --json
  toolkit evaluate recordings/ --baseline-only

Predictions follow deploy.offline.predict_recording (hop --hop-s, look-ahead --lookahead-s; the bundle's own
events settings when a bundle is given) and are mapped back to each recording's rate. Reported: the competition
metric (AP per class over all samples, mean over classes; defog Valid/Task masks applied) and event figures for
"any FOG" (max over classes, deploy.events.EventDetector): episode sensitivity, false alarms per hour, onset
latency, % time frozen. The freeze index scores every class with the same ln(FI) and detects events where FI
exceeds --fi-threshold.
"""
from __future__ import annotations

import numpy as np

from calibration.checkpoint import load_model
from deploy.bundle import Bundle
from deploy.engines import open_engine
from deploy.lazy import lazy_import, require
from deploy.preprocess import PreprocessSpec

torch = lazy_import("torch", "workstation", "evaluating a PyTorch model")
models = lazy_import("models", "workstation", "evaluating a PyTorch model")

HELP = "score a model/checkpoint/bundle and the freeze-index baseline on recordings (table or --json)"


def add_arguments(p) -> None:
    from toolkit.commands._recordings import add_recording_arguments
    add_recording_arguments(p, per_subject=1)
    p.add_argument("--seed", type=int, default=1000, help="synthetic seed (default 1000: the model card's held-out "
                   "subjects, never the training seeds)")
    p.add_argument("--model", help="registry preset name (models.create_model)")
    p.add_argument("--checkpoint", help="state_dict .pt for --model (default: the weights the project ships for "
                   "the preset, if any)")
    p.add_argument("--bundle", help="bundle folder made by `toolkit export`")
    p.add_argument("--backend", default="auto", help="engine backend for --bundle (default auto)")
    p.add_argument("--baseline-only", action="store_true", help="only the freeze-index baseline")
    # Event settings: the bundle's when a bundle is given, else deploy.events.DEFAULT_SETTINGS (what export writes
    # into a bundle), so offline figures are what the daemon would produce. Each flag overrides one value.
    p.add_argument("--hop-s", type=float, default=None, help="hop between model windows, s")
    p.add_argument("--lookahead-s", type=float, default=None, help="look-ahead per sample, s")
    p.add_argument("--on", type=float, default=None, help="event on-threshold")
    p.add_argument("--off", type=float, default=None, help="event off-threshold")
    p.add_argument("--min-duration", type=float, default=None, help="minimum episode length, s")
    p.add_argument("--smoothing", type=float, default=None, help="probability smoothing, s")
    p.add_argument("--refractory", type=float, default=None, help="merge episodes closer than this, s")
    p.add_argument("--fi-window", type=float, default=4.0, help="freeze-index window, s (default 4)")
    p.add_argument("--fi-threshold", type=float, default=1.5, help="freeze-index threshold (default 1.5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _recordings(args):
    from calibration.data import recordings_from_args
    recs = recordings_from_args(args)
    return [r for r in recs if r.labels is not None] or _no_labels([r.meta.get("name") for r in recs])


def _no_labels(paths):
    from toolkit.cli import UserError
    raise UserError(f"none of the {len(paths)} recordings has labels (StartHesitation/Turn/Walking columns); "
                    "evaluation needs labelled recordings")


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
    engine = open_engine(bundle, backend=args.backend)
    batch = int(engine.input_shape[0])

    def infer(x):  # the engine has a fixed batch: feed it slices, pad the last
        out = []
        for i in range(0, len(x), batch):
            part = x[i:i + batch]
            if len(part) < batch:
                part = np.concatenate([part, np.repeat(part[-1:], batch - len(part), axis=0)])
            out.append(np.array(engine.infer(np.ascontiguousarray(part)))[:min(batch, len(x) - i)])
        return np.concatenate(out)
    return f"bundle {args.bundle}", spec, infer, bundle.manifest.get("events") or {}


def _to_recording_rate(probs, model_rate, rec):
    import numpy as np
    idx = np.minimum((np.arange(rec.n_samples) / rec.rate_hz * model_rate).astype(int), len(probs) - 1)
    return probs[idx]


def _settings(args, bundle_events=None) -> dict:
    """Event settings: defaults, then the bundle's, then the flags given."""
    from deploy.events import DEFAULT_SETTINGS
    flags = {"hop_s": args.hop_s, "lookahead_s": args.lookahead_s, "on": args.on, "off": args.off,
             "min_duration_s": args.min_duration, "smoothing_s": args.smoothing, "refractory_s": args.refractory}
    return {**DEFAULT_SETTINGS, **(bundle_events or {}), **{k: v for k, v in flags.items() if v is not None}}


def _any_fog(settings: dict) -> dict:
    """One "FOG" class for the any-FOG event figures: the least strict per-class threshold of the settings."""
    from deploy.events import detector_settings
    knobs = detector_settings(settings)
    on, off = (min(v.values()) if isinstance(v, dict) else v for v in (knobs["on"], knobs["off"]))
    return {**knobs, "on": on, "off": min(off, on)}


def _events(any_prob, rate, settings):
    from deploy.events import detect_events
    return detect_events(any_prob[:, None], rate, classes=("FOG",), **_any_fog(settings))


def _score(name, recs, per_rec_scores, per_rec_anyprob, settings):
    from deploy.metrics import competition_map, event_metrics, pool_event_metrics
    ap = competition_map([r.labels for r in recs], per_rec_scores, [r.mask for r in recs])
    events = [event_metrics(r.labels, _events(p, r.rate_hz, settings), r.rate_hz, r.mask)
              for r, p in zip(recs, per_rec_anyprob)]
    pooled = pool_event_metrics(events)
    pooled.pop("latencies_s", None)
    return {"name": name, "ap": ap, "events": pooled}


def _json_safe(value):
    """NaN (no positives, no episodes) becomes null, so the output is strict JSON."""
    import math
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return float(value) if hasattr(value, "dtype") else value


def run(args) -> int:
    import json
    import sys

    import numpy as np

    from deploy.freeze_index import freeze_index_scores
    from deploy.offline import predict_recording
    from toolkit.cli import UserError

    recs = _recordings(args)
    results = []
    scorer = None
    if args.bundle and args.model:
        raise UserError("give --model or --bundle, not both")
    if args.checkpoint and not args.model:
        raise UserError("--checkpoint needs --model PRESET (the architecture the weights belong to)")
    if args.bundle:
        scorer = _bundle_scorer(args)
    elif args.model:
        scorer = _torch_scorer(args)
    elif not args.baseline_only:
        print("evaluate: no --model or --bundle given: scoring the freeze-index baseline only", file=sys.stderr)
    if scorer and not args.baseline_only:
        name, spec, infer, events_cfg = scorer
        settings = _settings(args, events_cfg)
        hop = max(1, int(round(settings["hop_s"] * spec.rate_hz)))
        look = settings["lookahead_s"]
        scores = []
        for i, rec in enumerate(recs):
            print(f"\revaluate: model on recording {i + 1}/{len(recs)}", end="", file=sys.stderr)
            probs = predict_recording(rec, spec, infer, hop,
                                      None if look is None else int(round(look * spec.rate_hz)))
            scores.append(_to_recording_rate(probs, spec.rate_hz, rec))
        print(file=sys.stderr)
        results.append(_score(name, recs, scores, [s.max(1) for s in scores], settings))
    fi_scores = [freeze_index_scores(r, window_s=args.fi_window) for r in recs]
    # FI as a probability-like score: 0.5 exactly at the threshold, so the same event detector applies
    fi_prob = [1 / (1 + np.exp(-(s - np.log(args.fi_threshold)) * 4)) for s in fi_scores]
    results.append(_score(f"freeze index ({args.fi_window:g} s, threshold {args.fi_threshold:g})", recs,
                          [np.repeat(s[:, None], 3, 1) for s in fi_scores], fi_prob, _settings(args)))
    hours = sum(r.duration_s for r in recs) / 3600
    if args.json:
        print(json.dumps(_json_safe({"recordings": len(recs), "hours": hours, "results": results}), indent=2))
        return 0
    print(f"{len(recs)} recordings, {hours * 60:.1f} min")
    head = f"{'scorer':46s} {'mAP':>6s} {'SH':>6s} {'Turn':>6s} {'Walk':>6s} {'sens':>6s} {'FA/h':>7s} " \
           f"{'lat50':>6s} {'lat90':>6s} {'%TF':>5s} {'%TFp':>5s} {'eps':>4s} {'det':>4s}"
    print(head)
    for r in results:
        a, e = r["ap"], r["events"]
        print(f"{r['name'][:46]:46s} {a['mean']:6.3f} {a['StartHesitation']:6.3f} {a['Turn']:6.3f} "
              f"{a['Walking']:6.3f} {e['sensitivity']:6.2f} {e['false_alarms_per_hour']:7.1f} "
              f"{e['latency_median_s']:6.2f} {e['latency_p90_s']:6.2f} {e['percent_time_frozen_true']:5.1f} "
              f"{e['percent_time_frozen_pred']:5.1f} {e['episodes_true']:4d} {e['episodes_detected']:4d}")
    return 0
