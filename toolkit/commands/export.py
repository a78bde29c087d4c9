"""Turn a model into a verified deployment bundle for a target device.

  toolkit export --target jetson --out bundles/default              # the bundled default (preset fog-small-x3)
  toolkit export --model fog-1st-place --target jetson-xavier --out b/xavier
  toolkit export --model checkpoints/run1.pt --target cpu --out b/cpu
  toolkit export --model fog-1st-place --tsai --weights tsai_model.pth --target jetson --out b/tsai
  toolkit export --model mypkg.models:build --weights w.pt --rate-hz 50 --units m/s^2 --classes A,B,C --out b/mine

The bundle holds manifest.json, the float ONNX (input x, output probs), the INT8 Q/DQ ONNX where the target has
INT8, and the engine (when TensorRT and a GPU are here) or the on-device build kit. `toolkit targets` lists targets.
"""
from __future__ import annotations

from calibration.checkpoint import DEFAULT_PRESET
from toolkit.api import export
from toolkit.commands._options import add_model_arguments, add_signing_arguments, model_and_weights, named_preset
from toolkit.export import options
from toolkit.export.signer import load_private_key, passphrase_from, sign_bundle

HELP = "export a model to a checked, verified deployment bundle (ONNX, INT8, engine or build kit)"


def prepare_argv(argv: list[str]) -> list[str]:
    """`--layout BCT|BTC` was export's tensor layout before --layout meant a file layout everywhere: still read so."""
    out = list(argv)
    for i, arg in enumerate(out[:-1]):
        if arg == "--layout" and out[i + 1] in options.TENSOR_LAYOUTS:
            out[i] = "--input-layout"
    return [("--input-layout=" + a.split("=", 1)[1]) if a.startswith("--layout=") and a.split("=", 1)[1]
            in options.TENSOR_LAYOUTS else a for a in out]


def add_arguments(p) -> None:
    """--model/--weights (as every command has them), --target and --out, and the signing flags `toolkit sign` has
    (signing follows the export, here as there); every other flag is made from toolkit.export.ExportOptions, the
    options the Python API takes too."""
    groups = {title: p.add_argument_group(title) for title in options.group_titles()}
    add_model_arguments(groups[options.MODEL])
    groups[options.TARGET].add_argument("--target", default="jetson",
                                        help="deployment target (see `toolkit targets`; default jetson)")
    groups[options.TARGET].add_argument("--out", required=True, help="bundle folder to create")
    add_signing_arguments(p.add_argument_group("signing (toolkit keygen makes a key; docs/daemon.md: threat model)"),
                          flag="--sign-key")
    options.add_arguments(p, groups=groups)


def _model(args) -> tuple[str, str | None]:
    """--model, or a checkpoint given as --weights alone (it names its preset), else the bundled default's preset
    (calibration.checkpoint.DEFAULT_PRESET) with --weights."""
    model, weights = model_and_weights(args)
    if model is None and weights and not args.tsai and named_preset(weights):
        return weights, None
    return model or DEFAULT_PRESET, weights


def run(args) -> int:
    model, weights = _model(args)
    # the key is read before the long work: a wrong passphrase is said now, not after minutes of export
    key = load_private_key(args.sign_key, passphrase_from(args.passphrase_env)) if args.sign_key else None
    result = export(model, args.target, args.out, weights=weights, options=options.from_args(args))
    print(result.summary())
    print(f"bundle digest {result.digest}  (pin it on the device: bundle_digest in the daemon's config)")
    if key is not None:
        entry = sign_bundle(args.out, key, signer=args.signer)
        print(f"signed with key {entry['key_id']} ({args.out}/signature.json): a device that lists this key in "
              "trusted_keys runs it")
    return 0
