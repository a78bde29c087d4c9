"""Figures for a trained checkpoint: held-out synthetic mAP vs the freeze index, INT8 PTQ and QAT, false alarms.

  python -m calibration.model_report --checkpoint models/weights/fog-small.pt --train-seed 0 [--qat-epochs 4]

Held-out data are synthetic recordings drawn with `--test-seed` (their subjects never appear in training, whose
subjects come from `--train-seed`). Everything is scored per sample at the model rate on the same labels:
- float model and Moore's freeze index (ln FI of AccV, 4 s windows; class-agnostic, so the same score for each
  class): competition mAP and AP per class (model on a hop of half a window, as validation), and the any-FOG
  figures of `deploy.scoring` (the project's one scorer, the same as `toolkit evaluate`) exactly as an exported
  bundle runs by default: the model predicted on the bundle's hop and look-ahead, events by the daemon's detector
  with the preset's event settings over the defaults (EventSettings), the freeze index (Bachlin: 4 s, 1.5) through the same detector;
- INT8: the QAT variant calibrated on training windows (each calibrator), fake-quantized, scored the same way,
  plus float vs INT8 probability error; and QAT fine-tuning from the worst PTQ calibration;
- false alarms per hour on the real (FOG-free) mobgap lower-back walking in ../shared, when present.
The figures are merged into the JSON beside the checkpoint.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from calibration.loso import predict
from deploy.contract.events import EventSettings
from deploy.recording import read_recordings
from deploy.scoring import freeze_index_probability, freeze_index_settings, score

def _clean(value):
    """JSON-safe: nan -> None, numpy -> python, rounded."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items() if k not in ("latencies_s", "per_recording")}
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


def synthetic_map(prepared, probs) -> dict:
    """Competition mAP (+ AP per class) of model-rate probabilities on prepared synthetic recordings."""
    from deploy.metrics import competition_map
    labels = [p.labels for p in prepared]
    ap = competition_map(labels, [q[:len(lab)] for q, lab in zip(probs, labels)], [p.mask for p in prepared])
    return {"map": ap.pop("mean"), "ap": ap}


def scored(model, recordings, spec, settings, name) -> dict:
    """deploy.scoring figures of the model and the freeze index on `recordings`, the model predicted on the
    bundle's grid (hop, look-ahead) and scored at each recording's rate."""
    return {"model": score(recordings, predict(model, spec, recordings, settings), settings, name),
            "freeze_index": score(recordings, [freeze_index_probability(r) for r in recordings],
                                  freeze_index_settings(settings), "freeze index")}


def mobgap_recordings(shared=None):
    root = Path(shared or os.environ.get("FOG_SHARED") or Path(__file__).resolve().parents[2] / "shared")
    folder = root / "data" / "mobgap-walking"
    return read_recordings([folder], mapping="mobgap") if folder.is_dir() else None


def int8_figures(model, preset, spec, train_prepared, test_prepared, hop, methods, qat_epochs, batch_size=32,
                 seed=0, log=print):
    """PTQ per calibrator (mAP on held-out, probability error), then QAT from the worst calibration."""
    from calibration.data import WindowReader
    from calibration.ptq import calibrate
    from calibration.train import TrainConfig, fit
    from models.qat import set_quantization, to_qat

    float_probs = model_probs(model, test_prepared, spec, hop)
    float_map = synthetic_map(test_prepared, float_probs)["map"]
    reader = WindowReader(train_prepared, spec, limit=512, seed=seed, batch_size=batch_size)
    ptq, variants = {}, {}
    for method in methods:
        qat = to_qat(model, batch_size=batch_size, seq_len=spec.n_patches)
        started = time.perf_counter()
        calibrate(qat, reader, method, preset=preset, progress=False)
        seconds = time.perf_counter() - started
        set_quantization(qat, True)
        probs = model_probs(qat, test_prepared, spec, hop)
        s = synthetic_map(test_prepared, probs)
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
        s = synthetic_map(test_prepared, probs)
        result["qat"] = {"from_calibration": worst, "ptq_map": ptq[worst]["map"], "map": s["map"], "ap": s["ap"],
                         "map_drop": float_map - s["map"], "epochs": qat_epochs, "steps_per_epoch": 30,
                         "seconds": round(time.perf_counter() - started, 1)}
        log(f"  QAT from {worst}: mAP {s['map']:.4f} (PTQ {ptq[worst]['map']:.4f}, float {float_map:.4f})")
    return result


def main(argv=None) -> int:
    import torch

    from calibration.checkpoint import checkpoint_info, load_model, trained_event_mode
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
    trained = trained_event_mode(checkpoint_info(checkpoint))[0] if checkpoint else None
    settings = EventSettings.resolve(get_preset(preset).events, {"mode": trained})   # what its bundle carries
    figures["model"] = synthetic_map(test_prepared, model_probs(model, test_prepared, spec, hop))
    figures["freeze_index_map"] = synthetic_map(test_prepared, [np.repeat(
        freeze_index_probability(r)[np.minimum(np.round(np.arange(p.n_samples) * r.rate_hz / spec.rate_hz)
                                               .astype(int), r.n_samples - 1)][:, None], 3, axis=1)
        for r, p in zip(test, test_prepared)])
    figures["held_out_synthetic"] = scored(model, test, spec, settings, "model")
    log(f"held-out synthetic: model mAP {figures['model']['map']:.4f}, freeze index "
        f"{figures['freeze_index_map']['map']:.4f}")
    walking = mobgap_recordings(args.shared)
    if walking:
        for r in walking:
            r.labels = None          # nobody froze: every event is a false alarm
        figures["mobgap_walking"] = scored(model, walking, spec, settings, "model")
        log(f"mobgap walking: model {figures['mobgap_walking']['model']['unlabelled']}, freeze index "
            f"{figures['mobgap_walking']['freeze_index']['unlabelled']}")
    train = synthetic_recordings(args.train_subjects, seed=args.train_seed, minutes=args.minutes, per_subject=2)
    train_prepared = [prepare_recording(r, spec) for r in train]
    figures["int8"] = int8_figures(model, preset, spec, train_prepared, test_prepared, hop,
                                   args.methods.split(","), args.qat_epochs, log=log)
    figures["event_settings"] = {**settings.to_dict(), "source": f"EventSettings defaults + preset {preset} events"}
    figures["report_seconds"] = round(time.perf_counter() - started, 1)
    info = checkpoint_info(checkpoint)
    info["figures"] = _clean(figures)
    Path(checkpoint).with_suffix(".json").write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info["figures"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
