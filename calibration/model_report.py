"""Figures for a trained checkpoint: held-out synthetic mAP vs the freeze index, INT8 PTQ and QAT, false alarms.

  python -m calibration.model_report --checkpoint models/weights/fog-small.pt --train-seed 0 [--qat-epochs 4]

Held-out data are synthetic recordings drawn with `--test-seed` (their subjects never appear in training, whose
subjects come from `--train-seed`). Everything is scored per sample at the model rate on the same labels:
- float model and Moore's freeze index (ln FI of AccV, 4 s windows; class-agnostic, so the same score for each
  class): competition mAP and AP per class (model on a hop of half a window, as validation), and event figures
  (sensitivity, false alarms per hour) exactly as an exported bundle runs by default: the model predicted on the
  bundle's hop and look-ahead and its event detector settings (`deploy.events.DEFAULT_SETTINGS`, which
  `toolkit.export.EVENT_DEFAULTS` is; read from there), Bachlin's FI > 1.5 for the baseline;
- INT8: the QAT variant calibrated on training windows (each calibrator), fake-quantized, scored the same way,
  plus float vs INT8 probability error; and QAT fine-tuning from the worst PTQ calibration;
- false alarms per hour on the real (FOG-free) mobgap lower-back walking in ../shared, when present.
The figures are merged into the JSON beside the checkpoint.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

FI_THRESHOLD = 1.5


def bundle_events() -> dict:
    """The event settings an exported bundle uses by default (hop, look-ahead, detector)."""
    from deploy.events import DEFAULT_SETTINGS
    return dict(DEFAULT_SETTINGS)


def _clean(value):
    """JSON-safe: nan -> None, numpy -> python, rounded."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items() if k != "latencies_s"}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else round(float(value), 4)
    if isinstance(value, np.integer):
        return int(value)
    return value


def model_probs(model, prepared, spec, hop, lookahead=None):
    from calibration.train import make_infer
    from deploy.offline import predict_prepared

    infer = make_infer(model)
    return [predict_prepared(p.acc, spec, infer, hop, lookahead) for p in prepared]


def bundle_probs(model, prepared, spec, settings):
    """Probabilities on the bundle's hop grid with its look-ahead (what the daemon's detector sees)."""
    return model_probs(model, prepared, spec, int(round(settings["hop_s"] * spec.rate_hz)),
                       int(round(settings["lookahead_s"] * spec.rate_hz)))


def freeze_index_probs(recordings, prepared, spec):
    """ln FI per model-rate sample (nearest original sample), the same for all three classes."""
    from deploy.freeze_index import freeze_index_scores

    out = []
    for rec, prep in zip(recordings, prepared):
        score = freeze_index_scores(rec)
        index = np.minimum(np.round(np.arange(prep.n_samples) * rec.rate_hz / spec.rate_hz).astype(int),
                           rec.n_samples - 1)
        out.append(np.repeat(score[index][:, None], 3, axis=1))
    return out


def score(prepared, probs, spec, events=None) -> dict:
    """Competition mAP (+ AP per class) and pooled event metrics for per-recording probabilities."""
    from deploy.metrics import competition_map, event_metrics, pool_event_metrics

    labels = [p.labels for p in prepared]
    masks = [p.mask for p in prepared]
    ap = competition_map(labels, [p[:len(lab)] for p, lab in zip(probs, labels)], masks)
    result = {"map": ap.pop("mean"), "ap": ap}
    if events is not None:
        per = []
        for p, prob in zip(prepared, probs):
            found = events(prob)
            per.append(event_metrics(p.labels, found, spec.rate_hz, p.mask))
        result["events"] = pool_event_metrics(per)
    return result


def model_events(rate_hz, settings):
    from deploy.events import detect_events, detector_settings
    return lambda probs: detect_events(probs, rate_hz, **detector_settings(settings))


def fi_events(rate_hz):
    """Bachlin's threshold on ln FI, as events (episodes of the boolean, shorter than 0.5 s dropped)."""
    from deploy.events import Event
    from deploy.metrics import episodes

    def detect(scores):
        frozen = scores[:, 0] > np.log(FI_THRESHOLD)
        return [Event("FOG", a / rate_hz, b / rate_hz, a / rate_hz + 0.5, 1.0)
                for a, b in episodes(frozen) if (b - a) >= 0.5 * rate_hz]
    return detect


def mobgap_false_alarms(model, spec, settings, shared=None) -> dict | None:
    """Events per hour of the model and the FI baseline on real FOG-free walking (every event is false)."""
    from deploy.recording import CLASSES, read_recording

    from calibration.data import prepare_recording
    import os
    root = Path(shared or os.environ.get("FOG_SHARED") or Path(__file__).resolve().parents[2] / "shared")
    folder = root / "data" / "mobgap-walking"
    files = sorted(folder.rglob("*.csv"))
    if not files:
        return None
    recs = [read_recording(f, mapping="mobgap") for f in files]
    prepared = [prepare_recording(r, spec, name=f.stem) for r, f in zip(recs, files)]
    hours = sum(p.n_samples for p in prepared) / spec.rate_hz / 3600
    probs = bundle_probs(model, prepared, spec, settings)
    fi = freeze_index_probs(recs, prepared, spec)
    found = [model_events(spec.rate_hz, settings)(p) for p in probs]
    n_model = sum(map(len, found))
    n_fi = sum(len(fi_events(spec.rate_hz)(s)) for s in fi)
    return {"recordings": len(files), "minutes": round(hours * 60, 2), "model_events": n_model,
            "model_false_alarms_per_hour": n_model / hours, "freeze_index_events": n_fi,
            "freeze_index_false_alarms_per_hour": n_fi / hours,
            "max_model_probability": float(max(p.max() for p in probs)),
            "model_events_by_class": {c: sum(e.cls == c for f in found for e in f) for c in CLASSES},
            "per_recording": {f"{f.parent.parent.name}/{f.parent.name}/{f.stem}": len(e)
                              for f, e in zip(files, found)}}


def int8_figures(model, preset, spec, train_prepared, test_prepared, hop, methods, qat_epochs, batch_size=32,
                 seed=0, log=print):
    """PTQ per calibrator (mAP on held-out, probability error), then QAT from the worst calibration."""
    from calibration.data import WindowReader
    from calibration.ptq import calibrate
    from calibration.train import TrainConfig, fit
    from models.qat import set_quantization, to_qat

    float_probs = model_probs(model, test_prepared, spec, hop)
    float_map = score(test_prepared, float_probs, spec)["map"]
    reader = WindowReader(train_prepared, spec, limit=512, seed=seed, batch_size=batch_size)
    ptq, variants = {}, {}
    for method in methods:
        qat = to_qat(model, batch_size=batch_size, seq_len=spec.n_patches)
        started = time.perf_counter()
        calibrate(qat, reader, method, preset=preset, progress=False)
        seconds = time.perf_counter() - started
        set_quantization(qat, True)
        probs = model_probs(qat, test_prepared, spec, hop)
        s = score(test_prepared, probs, spec)
        diff = np.concatenate([np.abs(a - b).ravel() for a, b in zip(probs, float_probs)])
        ptq[method] = {"map": s["map"], "ap": s["ap"], "map_drop": float_map - s["map"],
                       "max_abs_prob_error": float(diff.max()), "mean_abs_prob_error": float(diff.mean()),
                       "calibration_seconds": round(seconds, 2)}
        variants[method] = qat
        log(f"  PTQ {method:10s}: mAP {s['map']:.4f} (drop {float_map - s['map']:+.4f}), "
            f"max |dp| {diff.max():.4f}, calibration {seconds:.1f} s")
    result = {"float_map": float_map, "ptq": ptq}
    if qat_epochs:
        worst = max(ptq, key=lambda m: ptq[m]["map_drop"])
        qat = variants[worst]
        half = len(train_prepared) // 5 or 1             # a slice of training subjects for early stopping
        config = TrainConfig(epochs=qat_epochs, steps_per_epoch=30, batch_size=batch_size, lr=1e-4,
                             warmup_steps=10, patience=qat_epochs, seed=seed + 7)
        started = time.perf_counter()
        fit(qat, train_prepared[half:], train_prepared[:half], spec, config, progress=False)
        probs = model_probs(qat, test_prepared, spec, hop)
        s = score(test_prepared, probs, spec)
        result["qat"] = {"from_calibration": worst, "ptq_map": ptq[worst]["map"], "map": s["map"], "ap": s["ap"],
                         "map_drop": float_map - s["map"], "epochs": qat_epochs, "steps_per_epoch": 30,
                         "seconds": round(time.perf_counter() - started, 1)}
        log(f"  QAT from {worst}: mAP {s['map']:.4f} (PTQ {ptq[worst]['map']:.4f}, float {float_map:.4f})")
    return result


def main(argv=None) -> int:
    import torch

    from calibration.checkpoint import checkpoint_info, load_model
    from calibration.data import as_spec, prepare_recording, synthetic_recordings
    from models import get_preset

    p = argparse.ArgumentParser(prog="python -m calibration.model_report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--train-seed", type=int, default=0)
    p.add_argument("--train-subjects", type=int, default=24)
    p.add_argument("--test-seed", type=int, default=1000)
    p.add_argument("--test-subjects", type=int, default=8)
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--methods", default="entropy,percentile,mse,max")
    p.add_argument("--qat-epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--shared", help="the ../shared folder (mobgap walking)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731

    model, preset, checkpoint = load_model(None, args.checkpoint)
    spec = as_spec(get_preset(preset).preprocess)
    hop = spec.window // 2
    test = synthetic_recordings(args.test_subjects, seed=args.test_seed, minutes=args.minutes)
    test_prepared = [prepare_recording(r, spec) for r in test]
    started = time.perf_counter()
    figures = {"held_out": {"subjects": args.test_subjects, "seed": args.test_seed, "minutes_each": args.minutes,
                            "hop_samples": hop}}
    settings = bundle_events()
    figures["model"] = score(test_prepared, model_probs(model, test_prepared, spec, hop), spec)
    figures["model"]["events"] = score(test_prepared, bundle_probs(model, test_prepared, spec, settings), spec,
                                       model_events(spec.rate_hz, settings))["events"]
    figures["freeze_index"] = score(test_prepared, freeze_index_probs(test, test_prepared, spec), spec,
                                    fi_events(spec.rate_hz))
    log(f"held-out synthetic: model mAP {figures['model']['map']:.4f}, freeze index "
        f"{figures['freeze_index']['map']:.4f}")
    figures["mobgap_walking"] = mobgap_false_alarms(model, spec, settings, args.shared)
    log(f"mobgap walking: {figures['mobgap_walking']}")
    train = synthetic_recordings(args.train_subjects, seed=args.train_seed, minutes=args.minutes, per_subject=2)
    train_prepared = [prepare_recording(r, spec) for r in train]
    figures["int8"] = int8_figures(model, preset, spec, train_prepared, test_prepared, hop,
                                   args.methods.split(","), args.qat_epochs, log=log)
    figures["event_settings"] = {**settings, "source": "deploy.events.DEFAULT_SETTINGS"}
    figures["report_seconds"] = round(time.perf_counter() - started, 1)
    info = checkpoint_info(checkpoint)
    info["figures"] = _clean(figures)
    Path(checkpoint).with_suffix(".json").write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info["figures"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
