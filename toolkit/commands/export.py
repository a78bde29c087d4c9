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
from deploy.contract import STREAM_NORMALIZATIONS
from toolkit.api import export
from toolkit.cli import UserError
from toolkit.commands._events import add_event_arguments, event_overrides
from toolkit.commands._options import add_file_layout, add_model_arguments, add_quiet, model_and_weights, named_preset
from toolkit.export.streaming import BUDGET_S

HELP = "export a model to a checked, verified deployment bundle (ONNX, INT8, engine or build kit)"
TENSOR_LAYOUTS = ("BCT", "BTC")


def prepare_argv(argv: list[str]) -> list[str]:
    """`--layout BCT|BTC` was export's tensor layout before --layout meant a file layout everywhere: still read so."""
    out = list(argv)
    for i, arg in enumerate(out[:-1]):
        if arg == "--layout" and out[i + 1] in TENSOR_LAYOUTS:
            out[i] = "--input-layout"
    return [("--input-layout=" + a.split("=", 1)[1]) if a.startswith("--layout=") and a.split("=", 1)[1]
            in TENSOR_LAYOUTS else a for a in out]


def add_arguments(p) -> None:
    what = p.add_argument_group("model")
    add_model_arguments(what)
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
    spec.add_argument("--input-layout", choices=TENSOR_LAYOUTS,
                      help="the model's tensor layout: BCT (B, patch*3, n_patches) or BTC (B, n, patch*3)")
    spec.add_argument("--normalization", choices=("recording", "window", "running"))
    shape = p.add_argument_group("static shape")
    shape.add_argument("--batch", type=int, default=1, help="static batch size (default 1)")
    shape.add_argument("--n-patches", type=int, help="patches per window (default: the preset's; a preset's shipped "
                       "weights fit their own only)")
    what.add_argument("--untrained", action="store_true",
                      help="export the preset's architecture with random initial weights on purpose (needed with an "
                           "--n-patches its shipped weights do not fit)")
    tgt = p.add_argument_group("target")
    tgt.add_argument("--target", default="jetson", help="deployment target (see `toolkit targets`; default jetson)")
    tgt.add_argument("--out", required=True, help="bundle folder to create")
    tgt.add_argument("--precision", choices=("int8", "fp16", "fp32", "fastest"),
                     help="default: the target's; fastest (cpu target only): time fp32 and int8 on onnxruntime "
                          "and keep int8 only when >= 1.10x faster")
    tgt.add_argument("--opset", type=int, help="ONNX opset (default: the target's)")
    tgt.add_argument("--recurrence", choices=("auto", "fused", "unrolled"), default="auto",
                     help="INT8 plan of the recurrence: unrolled into INT8 MatMuls, or one fused LSTM/GRU node in "
                          "FP16 (never quantized); auto: unrolled while the unrolled graph stays under 5,000 nodes")
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
    cal.add_argument("--calib-windows", type=int,
                     help="calibration windows (default: 8,192 patches' worth, 4 to 64: 64 for fog-small, 9 for fog-1st-place)")
    cal.add_argument("--calib-data", nargs="+", help="recordings to calibrate on (default synthetic windows)")
    add_file_layout(cal)
    cal.add_argument("--verify-windows", type=int,
                     help="verification windows (default: 2,048 patches' worth, 4 to 16: 16 for fog-small)")
    st = p.add_argument_group("streaming fidelity (the daemon's pipeline vs offline, recorded in the manifest)")
    st.add_argument("--stream-normalization", default="auto", choices=("auto",) + STREAM_NORMALIZATIONS,
                    help="how the device normalizes the stream (default auto: the declared one when it streams "
                         "exactly, else the option measured closest to offline)")
    st.add_argument("--fidelity-data", nargs="+", help="recordings to measure on (default synthetic)")
    st.add_argument("--fidelity-mapping", help="column mapping for --fidelity-data (e.g. mobgap)")
    st.add_argument("--no-fidelity", action="store_true", help="skip the streaming-fidelity step")
    st.add_argument("--fidelity-budget-s", type=float, default=BUDGET_S,
                    help="skip the step (and say so) when one timed inference puts it over this many seconds "
                         f"(default {BUDGET_S:g})")
    add_event_arguments(p.add_argument_group("event defaults written into the manifest"))
    p.add_argument("--threads", type=int, default=1,
                   help="torch/onnxruntime threads of the export's own work (default 1: a shared machine)")
    add_quiet(p)


def _user_preprocess(args) -> dict:
    keys = {"rate_hz": args.rate_hz, "units": args.units, "patch": args.patch, "layout": args.input_layout,
            "normalization": args.normalization}
    return {k: v for k, v in keys.items() if v is not None}


def _model(args) -> tuple[str, str | None]:
    """--model, or a checkpoint given as --weights alone (it names its preset), else fog-small with --weights."""
    model, weights = model_and_weights(args)
    if model is None and weights and not args.tsai and named_preset(weights):
        return weights, None
    return model or "fog-small", weights


def run(args) -> int:
    if args.batch < 1 or (args.n_patches is not None and args.n_patches < 1):
        raise UserError("--batch and --n-patches must be at least 1")
    try:
        factory_kwargs = json.loads(args.factory_kwargs)
    except json.JSONDecodeError as exc:
        raise UserError(f"--factory-kwargs is not JSON ({exc}); e.g. '{{\"hidden\": 64}}'") from None
    model, weights = _model(args)
    result = export(model, args.target, args.out, weights=weights, n_patches=args.n_patches, tsai=args.tsai,
                    preprocess=_user_preprocess(args), classes=args.classes.split(",") if args.classes else None,
                    activation=args.activation, factory_kwargs=factory_kwargs, background=args.background_class,
                    any_fog=args.any_fog, calibration=args.calibration, calib_data=args.calib_data,
                    calib_layout=args.layout,
                    fidelity_data=args.fidelity_data, fidelity_layout=args.layout, fidelity_mapping=args.fidelity_mapping,
                    events=event_overrides(args), quiet=args.quiet, batch=args.batch, precision=args.precision,
                    opset=args.opset, calib_windows=args.calib_windows, calib_method=args.calib_method,
                    verify_windows=args.verify_windows, dla_core=args.dla_core,
                    build_engine="never" if args.no_engine else "auto", force=args.force,
                    stream_normalization=args.stream_normalization, fidelity=not args.no_fidelity,
                    fidelity_budget_s=args.fidelity_budget_s,
                    recurrence=args.recurrence, threads=args.threads, untrained=args.untrained)
    print(result.summary())
    print(f"bundle digest {result.digest}  (pin it on the device: bundle_digest in the daemon's config)")
    return 0
