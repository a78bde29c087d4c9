"""Train a preset on labelled recordings, or fine-tune it with fake quantization (QAT).

Float training:
  toolkit train data/train/tdcsfog --model fog-small --out runs/small --plot runs/small
  toolkit train --synthetic 24 --out runs/synth            # seeded synthetic recordings (deploy.synth)

QAT fine-tuning (fake INT8 quantization on, starting from float weights and calibrated ranges):
  toolkit train data/ --qat --weights runs/small/model.pt --calibration cal.json --out runs/small-qat
  (without --calibration the ranges are calibrated first on the training windows, the default calibrator)
  model.pt then carries the learnt ranges beside the fine-tuned weights: `toolkit export --model OUT/model.pt
  --target jetson` ships them as they are (the manifest says so).

Validation is on held-out subjects (`meta["subject"]`; Kaggle metadata or the synthetic generator supply it):
--val-subjects names them, otherwise --val-fraction of the subjects is drawn with --seed. The metric is the
competition's (mean over classes of per-sample average precision, Valid & Task masks applied). The run folder
gets best.pt and last.pt (--resume continues from it), history.json, and model.pt + model.json: the best
weights as a plain state_dict with a description, loadable by `toolkit calibrate/export --model`; --plot DIR draws
the training curves (loss and validation mAP per epoch) into DIR/training.png.
"""
from __future__ import annotations

import time
from pathlib import Path

from calibration.cache import CalibrationCache
from calibration.calibrators import DEFAULT_METHOD
from calibration.checkpoint import load_model, save_checkpoint
from calibration.data import WindowReader, describe_recordings, recordings_from_args
from deploy.lazy import lazy_import, require
from toolkit.cli import UserError
from toolkit.commands._options import add_model_arguments, add_plot, add_quiet, model_and_weights
from toolkit.commands._recordings import add_recording_arguments
from toolkit.plots import plot_training

torch = lazy_import("torch", "workstation", "toolkit train")
models = lazy_import("models", "workstation", "toolkit train")
qat_convert = lazy_import("models.qat", "workstation", "toolkit train --qat")
ptq = lazy_import("calibration.ptq", "workstation", "toolkit train --qat")
training = lazy_import("calibration.train", "workstation", "toolkit train")

HELP = "train a preset (float) or fine-tune it with fake quantization (--qat)"


def add_arguments(p) -> None:
    add_recording_arguments(p, per_subject=2)
    add_model_arguments(p.add_argument_group("model (--weights: start from these; required with --qat)"))
    p.add_argument("--out", required=True, help="run folder for checkpoints and history")
    p.add_argument("--val-subjects", help="comma-separated held-out subjects")
    p.add_argument("--val-fraction", type=float, default=0.25, help="share of subjects held out (default 0.25)")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--steps", type=int, default=50, help="optimizer steps per epoch (default 50)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate after warm-up (default 1e-3)")
    p.add_argument("--warmup", type=int, default=100, help="linear warm-up steps (default 100)")
    p.add_argument("--patience", type=int, default=8, help="early stop after this many epochs without a better "
                   "validation mAP (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--qat", action="store_true", help="fine-tune with fake INT8 quantization")
    p.add_argument("--calibration", help="calibration cache (from `toolkit calibrate`) for --qat")
    add_plot(p)
    add_quiet(p)


def run(args) -> int:
    require(torch)
    if args.threads:
        torch.set_num_threads(args.threads)
    preset_arg, weights = model_and_weights(args)
    if args.qat and not weights:
        raise UserError("--qat fine-tunes trained float weights: give --weights (a float model.pt; --checkpoint is "
                        "the old spelling)")
    recordings = recordings_from_args(args)
    val_subjects = args.val_subjects.split(",") if args.val_subjects else None
    train, val = training.split_by_subject(recordings, val_subjects, args.val_fraction, args.seed)
    training.check_validation(train, val)
    torch.manual_seed(args.seed)             # the initial weights are part of what --seed reproduces
    model, preset, checkpoint = load_model(preset_arg, weights, default_weights=False)
    spec = models.get_preset(preset).preprocess
    config = training.TrainConfig(epochs=args.epochs, steps_per_epoch=args.steps, batch_size=args.batch_size, lr=args.lr,
                         warmup_steps=args.warmup, patience=args.patience, seed=args.seed)
    float_model = model
    if args.qat:
        model, initial_ranges = _qat_variant(model, preset, args, train, spec)
    print(f"train: {preset}, {len(train)} training / {len(val)} validation recordings "
          f"({'QAT fine-tuning' if args.qat else 'float'})", flush=True)
    started = time.perf_counter()
    result = training.fit(model, train, val, spec, config, out_dir=args.out, resume=args.resume, progress=not args.quiet)
    info = {"preset": preset, "qat": bool(args.qat), "seed": args.seed, "config": vars(config),
            "init_checkpoint": str(checkpoint) if checkpoint else None,
            "train_data": describe_recordings(train), "val_data": describe_recordings(val),
            "best_val_map": result.best_map, "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
            "seconds": round(time.perf_counter() - started, 1), "threads": torch.get_num_threads()}
    out = Path(args.out)
    if args.qat:
        # The QAT state_dict holds the float weights (fine-tuned) plus quantizer ranges; keep both forms.
        torch.save(model.state_dict(), out / "model_qat.pt")
        float_model.load_state_dict({k: v for k, v in model.state_dict().items() if "quantizer" not in k},
                                    strict=False)
        ranges = ptq.learnt_ranges(model, initial_ranges, describe_recordings(train))
        save_checkpoint(float_model, out / "model.pt", info, qat_ranges=ranges.to_dict())
    else:
        save_checkpoint(model, out / "model.pt", info)
    print(f"train: best validation mAP {result.best_map} at epoch {result.best_epoch}; "
          f"weights in {out / 'model.pt'} ({info['seconds']:.0f} s)")
    if args.plot:
        print(f"train: training curves in {plot_training(args.plot, result.history, f'{preset} ({out})')}")
    return 0


def _qat_variant(model, preset, args, train, spec):
    """(the calibrated QAT variant with fake quantization on, its initial ranges), from --calibration or calibrated
    here on the training windows (the user's recordings)."""
    qat = qat_convert.to_qat(model, batch_size=args.batch_size, seq_len=spec["n_patches"])
    if args.calibration:
        cache = CalibrationCache.load(args.calibration)
        ptq.apply_cache(qat, cache)
    else:
        cache = ptq.calibrate(qat, WindowReader(train, spec, limit=512, seed=args.seed, batch_size=args.batch_size),
                              DEFAULT_METHOD, preset=preset, progress=not args.quiet)
    qat_convert.set_quantization(qat, True)
    return qat, cache
