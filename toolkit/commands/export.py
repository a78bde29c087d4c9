"""Turn a model into a verified deployment bundle for a target device.

  toolkit export --target jetson --out bundles/fog-small            # the bundled default (preset fog-small)
  toolkit export --model fog-1st-place --target jetson-xavier --out b/xavier
  toolkit export --model checkpoints/run1.pt --target cpu --out b/cpu
  toolkit export --model fog-1st-place --tsai --weights tsai_model.pth --target jetson --out b/tsai
  toolkit export --model mypkg.models:build --weights w.pt --rate-hz 50 --units m/s^2 --classes A,B,C --out b/mine

The bundle holds manifest.json, the float ONNX (input x, output probs), the INT8 Q/DQ ONNX where the target has
INT8, and the engine (when TensorRT and a GPU are here) or the on-device build kit. `toolkit targets` lists targets.
"""
from __future__ import annotations

import json

from calibration.calibrators import DEFAULT_METHOD
from calibration.data import WindowReader
from deploy.recording import read_recordings
from deploy.wearer import STREAM_NORMALIZATIONS
from toolkit.cli import UserError
from toolkit.commands._events import add_event_arguments, event_overrides
from toolkit.export import ExportOptions, export_bundle, summary_table
from toolkit.export.ranges import given_ranges
from toolkit.export.source import resolve
from toolkit.export.targets import get_target

HELP = "export a model to a checked, verified deployment bundle (ONNX, INT8, engine or build kit)"


def add_arguments(p) -> None:
    what = p.add_argument_group("model")
    what.add_argument("--model", default="fog-small",
                      help="preset name, checkpoint file of this project, or module:factory (default fog-small)")
    what.add_argument("--weights", help="state_dict for a preset (with --tsai: a tsai checkpoint) or a factory")
    what.add_argument("--tsai", action="store_true", help="the weights come from tsai: build with tsai_compat=True")
    what.add_argument("--factory-kwargs", default="{}", help="JSON keyword arguments for module:factory")
    what.add_argument("--activation", choices=("sigmoid", "softmax", "none"),
                      help="output activation (default sigmoid)")
    what.add_argument("--classes", help="comma-separated class names (user models; default the three FOG classes)")
    what.add_argument("--background-class", action="append", metavar="NAME",
                      help="a class that is not an event (e.g. NoEvent); repeat for more (default: the model's "
                           "`background_classes` attribute, else none)")
    what.add_argument("--any-fog", choices=("sum", "max"),
                      help="any-FOG from the event classes (default: sum for softmax with a background class, else max)")
    spec = p.add_argument_group("input spec (user models; presets bring their own)")
    spec.add_argument("--rate-hz", type=float)
    spec.add_argument("--units", choices=("g", "m/s^2"))
    spec.add_argument("--patch", type=int, help="samples per patch (1 = per-sample model)")
    spec.add_argument("--layout", choices=("BCT", "BTC"), help="BCT (B, patch*3, n_patches) or BTC (B, n, patch*3)")
    spec.add_argument("--normalization", choices=("recording", "window", "running"))
    shape = p.add_argument_group("static shape")
    shape.add_argument("--batch", type=int, default=1, help="static batch size (default 1)")
    shape.add_argument("--n-patches", type=int, help="patches per window (default: the preset's)")
    tgt = p.add_argument_group("target")
    tgt.add_argument("--target", default="jetson", help="deployment target (see `toolkit targets`; default jetson)")
    tgt.add_argument("--out", required=True, help="bundle folder to create")
    tgt.add_argument("--precision", choices=("int8", "fp16", "fp32", "fastest"),
                     help="default: the target's; fastest (cpu target only): time fp32 and int8 on onnxruntime "
                          "and keep int8 only when >= 1.10x faster")
    tgt.add_argument("--opset", type=int, help="ONNX opset (default: the target's)")
    tgt.add_argument("--dla-core", type=int, help="build for this DLA core with GPU fallback (targets with DLA)")
    tgt.add_argument("--no-engine", action="store_true", help="write the build kit only, even if TensorRT is here")
    tgt.add_argument("--force", action="store_true", help="replace an existing --out folder")
    cal = p.add_argument_group("calibration and verification")
    cal.add_argument("--calibration", metavar="CAL_JSON",
                     help="ship the ranges of this calibration cache (`toolkit calibrate --out`) instead of "
                          "calibrating; refused unless made for these weights. A QAT result (`toolkit train --qat`) "
                          "ships its own learnt ranges without this flag")
    cal.add_argument("--calib-method", default=DEFAULT_METHOD, choices=("max", "percentile", "entropy", "mse"),
                     help=f"activation range calibrator (default {DEFAULT_METHOD}, chosen by measurement: "
                          "docs/calibration.md)")
    cal.add_argument("--calib-windows", type=int, default=64)
    cal.add_argument("--calib-data", nargs="+", help="recordings to calibrate on (default synthetic windows)")
    cal.add_argument("--verify-windows", type=int, default=16)
    st = p.add_argument_group("streaming fidelity (the daemon's pipeline vs offline, recorded in the manifest)")
    st.add_argument("--stream-normalization", default="auto", choices=("auto",) + STREAM_NORMALIZATIONS,
                    help="how the device normalizes the stream (default auto: the declared one when it streams "
                         "exactly, else the option measured closest to offline)")
    st.add_argument("--fidelity-data", nargs="+", help="recordings to measure on (default synthetic)")
    st.add_argument("--fidelity-mapping", help="column mapping for --fidelity-data (e.g. mobgap)")
    st.add_argument("--no-fidelity", action="store_true", help="skip the streaming-fidelity step")
    add_event_arguments(p.add_argument_group("event defaults written into the manifest"))
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def _user_preprocess(args) -> dict:
    keys = {"rate_hz": args.rate_hz, "units": args.units, "patch": args.patch, "layout": args.layout,
            "normalization": args.normalization}
    return {k: v for k, v in keys.items() if v is not None}


def run(args) -> int:
    target = get_target(args.target)
    if args.batch < 1 or (args.n_patches is not None and args.n_patches < 1):
        raise UserError("--batch and --n-patches must be at least 1")
    try:
        factory_kwargs = json.loads(args.factory_kwargs)
    except json.JSONDecodeError as exc:
        raise UserError(f"--factory-kwargs is not JSON ({exc}); e.g. '{{\"hidden\": 64}}'") from None
    source = resolve(args.model, weights=args.weights, n_patches=args.n_patches, tsai=args.tsai,
                     preprocess=_user_preprocess(args),
                     classes=args.classes.split(",") if args.classes else None, activation=args.activation,
                     factory_kwargs=factory_kwargs, background=args.background_class, any_fog=args.any_fog)
    given = given_ranges(source, args.calibration)
    if given and args.calib_data:
        raise UserError(f"--calib-data calibrates at export, but the {given.source} ranges of {given.path} are shipped "
                        "as they are: drop --calib-data (or --calibration)")
    reader = None
    if args.calib_data:
        reader = WindowReader(read_recordings(args.calib_data), source.preprocess, limit=args.calib_windows,
                              batch_size=16)
    events = event_overrides(args)
    options = ExportOptions(batch=args.batch, precision=args.precision, opset=args.opset,
                            calib_windows=args.calib_windows, calib_method=args.calib_method, calib_reader=reader,
                            ranges=given,
                            verify_windows=args.verify_windows, events=events, dla_core=args.dla_core,
                            build_engine="never" if args.no_engine else "auto", force=args.force, quiet=args.quiet,
                            stream_normalization=args.stream_normalization, fidelity=not args.no_fidelity,
                            fidelity_recordings=read_recordings(args.fidelity_data, mapping=args.fidelity_mapping)
                            if args.fidelity_data else None)
    manifest = export_bundle(source, target, args.out, options)
    print(summary_table(args.out, manifest))
    print(f"bundle digest {manifest['digest']}  (pin it on the device: bundle_digest in the daemon's config)")
    return 0
