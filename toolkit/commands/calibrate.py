"""Calibrate INT8 ranges for a model's QAT variant (post-training quantization) and report what INT8 costs.

  toolkit calibrate data/ --out cal.json                        # the bundled default's weights, default ranges
  toolkit calibrate --synthetic 8 --method percentile --percentile 99.99 --out cal.json --plot plots/
  toolkit calibrate data/ --model runs/small/model.pt --eval held_out/ --report ptq.json --out cal.json

Windows are drawn from the recordings through the shared preprocessing (`deploy.preprocess`), spread over
recordings and classes, --windows of them with --seed. Weights get per-channel max ranges; activations get the
chosen --method: max, percentile (--percentile), entropy (KL, as TensorRT's entropy calibrator) or mse.
The cache (JSON: amax per quantizer, calibrator, data, model hash) is reused by
`toolkit train --qat --calibration` and by `calibration.ptq.apply_cache` in Python. With --eval, float and INT8 (fake-quantized) predictions are compared
on held-out windows: AP per class for both, and the max and mean probability error.
"""
from __future__ import annotations

import json
import time

from calibration.calibrators import DEFAULT_METHOD
from calibration.checkpoint import load_model
from calibration.data import WindowReader, prepare_recording, recordings_from_args, sample_windows, synthetic_recordings
from deploy.contract import CLASSES
from deploy.lazy import lazy_import, require
from deploy.recording import read_recordings
from toolkit.cli import UserError
from toolkit.commands._options import add_model_arguments, add_plot, add_quiet, model_and_weights
from toolkit.commands._recordings import add_recording_arguments
from toolkit.plots import plot_calibration

torch = lazy_import("torch", "workstation", "toolkit calibrate")
models = lazy_import("models", "workstation", "toolkit calibrate")
qat_convert = lazy_import("models.qat", "workstation", "toolkit calibrate")
ptq = lazy_import("calibration.ptq", "workstation", "toolkit calibrate")

HELP = "calibrate INT8 ranges (PTQ) into a reusable cache; optionally report float vs INT8 agreement"

METHODS = ("entropy", "percentile", "mse", "max")


def add_arguments(p) -> None:
    add_recording_arguments(p, per_subject=1)
    add_model_arguments(p.add_argument_group("model"))
    p.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD,
                   help=f"activation range method (default {DEFAULT_METHOD}, the one default of export, calibrate and "
                        "train --qat, chosen by measurement: docs/calibration.md)")
    p.add_argument("--percentile", type=float, default=99.99, help="for --method percentile (default 99.99)")
    p.add_argument("--bins", type=int, default=2048, help="histogram bins (default 2048)")
    p.add_argument("--windows", type=int, default=512, help="calibration windows (default 512)")
    p.add_argument("--batch-size", type=int, default=32, help="static batch of the QAT variant (default 32)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="calibration cache to write (JSON)")
    p.add_argument("--eval", nargs="*", metavar="DATA", help="held-out recordings for the float vs INT8 report; "
                   "with --synthetic and no files: N synthetic subjects drawn with seed+1000 (unseen subjects)")
    p.add_argument("--eval-windows", type=int, default=512)
    p.add_argument("--report", help="write the agreement report here (JSON)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    add_plot(p)
    add_quiet(p)


def run(args) -> int:
    require(torch)
    if args.threads:
        torch.set_num_threads(args.threads)
    recordings = recordings_from_args(args)
    model, preset, checkpoint = load_model(*model_and_weights(args))
    spec = models.get_preset(preset).preprocess
    options = {"num_bins": args.bins} if args.method != "max" else {}
    if args.method == "percentile":
        options["percentile"] = args.percentile
    qat = qat_convert.to_qat(model, batch_size=args.batch_size, seq_len=spec["n_patches"])
    reader = WindowReader(recordings, spec, limit=args.windows, seed=args.seed, batch_size=args.batch_size)
    started = time.perf_counter()
    cache = ptq.calibrate(qat, reader, args.method, options=options, preset=preset, progress=not args.quiet)
    seconds = time.perf_counter() - started
    cache.data["checkpoint"] = str(checkpoint) if checkpoint else None
    cache.save(args.out)
    print(f"calibrate: {len(cache.amax)} quantizers, {cache.data['windows']} windows, {args.method}, "
          f"{seconds:.1f} s -> {args.out}")
    if args.plot:
        pages = plot_calibration(args.plot, cache.histograms, args.method)
        print(f"calibrate: {len(cache.histograms)} activation histograms with their {args.method} ranges in "
              f"{len(pages)} page(s) in {args.plot}")
    if args.eval is not None:
        if args.eval:
            held_out = read_recordings(args.eval, layout=args.layout, mapping=args.mapping)
        elif args.synthetic:
            held_out = synthetic_recordings(args.synthetic, seed=args.seed + 1000, minutes=args.synthetic_minutes)
        else:
            raise UserError("--eval needs held-out recordings (or --synthetic for synthetic ones)")
        windows = sample_windows([prepare_recording(r, spec) for r in held_out], spec, args.eval_windows,
                                 seed=args.seed + 1)
        qat_convert.set_quantization(qat, True)
        report = ptq.agreement(model, qat, windows, classes=CLASSES)
        report.update(method=args.method, calibration_seconds=round(seconds, 2))
        for tag in ("float", "int8"):
            if report.get(f"map_{tag}") is not None:
                per = ", ".join(f"{k} {v:.3f}" for k, v in report[f"ap_{tag}"].items() if v is not None)
                print(f"  {tag:5s}: mAP {report[f'map_{tag}']:.4f} ({per})")
        print(f"  probability error: max {report['max_abs_prob_error']:.4f}, "
              f"mean {report['mean_abs_prob_error']:.5f} over {report['windows']} held-out windows")
        if args.report:
            with open(args.report, "w") as fh:
                json.dump(report, fh, indent=1)
    return 0
