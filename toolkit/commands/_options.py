"""The options several commands share, defined once so they read the same everywhere (name, dest, help).

- model selection: `--model` (a preset, a checkpoint of this project, or module:factory for export) and `--weights`;
  the older spellings `--preset` (= --model) and `--checkpoint` (= --weights) still work and are not shown;
- output: `--json` is a switch (print JSON on stdout) wherever it appears; a file is `--json-out PATH`;
- `--quiet` hides the progress bars (they also hide themselves when stderr is not a terminal);
- `--plot DIR` writes the command's pictures into a folder;
- `--layout` is always a file layout (calibration.data, deploy.layouts); a model's tensor layout is
  `export --input-layout`. The event flags live in `_events.py`, the recording inputs in `_recordings.py`;
- a bundle is `--bundle DIR` in every command that reads one (inspect, bench, evaluate, score, serve; fog-daemon
  too): the folder given first, without the flag, as inspect, bench and serve took it, still works and is not shown.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from calibration.checkpoint import DEFAULT_PRESET, checkpoint_info, read_weights
from deploy.bundle import BUNDLE_HELP
from deploy.errors import FogError
from deploy.layouts import FILE_LAYOUT_HELP

MODEL_HELP = ("the model: a preset name (`toolkit models`), a checkpoint written by `toolkit train` (model.pt, it "
              "names its preset), or package.module:factory (export); default: the preset --weights names, else "
              f"{DEFAULT_PRESET}")
WEIGHTS_HELP = ("weights for --model: a state_dict .pt (a tsai checkpoint with --tsai; a fastai/tsai learn.save file); "
                "default: the weights the project ships for the preset, if any")
QUIET_HELP = "no progress bars (they are also off when stderr is not a terminal)"
JSON_HELP = "print JSON on stdout instead of a table"
JSON_OUT_HELP = "also write the full report as JSON to this file"
PLOT_HELP = "write the command's plots (PNG) into this folder"


def add_model_arguments(group, *, weights: bool = True) -> None:
    """--model and --weights (with the hidden old spellings --preset and --checkpoint); default None: the command
    decides (see `model_and_weights`)."""
    group.add_argument("--model", default=None, help=MODEL_HELP)
    group.add_argument("--preset", dest="model", default=None, help=argparse.SUPPRESS)
    if weights:
        group.add_argument("--weights", default=None, help=WEIGHTS_HELP)
        group.add_argument("--checkpoint", dest="weights", default=None, help=argparse.SUPPRESS)


def model_and_weights(args) -> tuple[str | None, str | None]:
    """(preset or model spec, weights file): `--model run/model.pt` alone is a checkpoint, i.e. (None, that file)."""
    model, weights = getattr(args, "model", None), getattr(args, "weights", None)
    if model and weights is None and Path(model).is_file():
        return None, model
    return model, weights


def named_preset(weights) -> str | None:
    """The preset a weights file names (inside, or in the JSON beside it); None for a bare state_dict."""
    if not weights:
        return None
    return checkpoint_info(weights).get("preset") or read_weights(weights)[1].get("preset")


def add_bundle(p, *, required: bool = False, positional: bool = False) -> None:
    """`--bundle DIR`; with `positional`, also the older spelling (the folder as the first argument), hidden."""
    p.add_argument("--bundle", metavar="DIR", required=required, help=BUNDLE_HELP)
    if positional:
        p.add_argument("bundle_given", nargs="?", metavar="BUNDLE", help=argparse.SUPPRESS)


def bundle_of(args) -> str | None:
    """The bundle folder from --bundle or the hidden positional spelling (refused when both name different ones)."""
    flag, given = getattr(args, "bundle", None), getattr(args, "bundle_given", None)
    if flag and given and flag != given:
        raise FogError(f"two bundles given: {given} and --bundle {flag}; give one")
    return flag or given


def add_quiet(p) -> None:
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)


def add_json(p, *, out: bool = False) -> None:
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    if out:
        p.add_argument("--json-out", metavar="PATH", help=JSON_OUT_HELP)


def output_file(path, flag: str, example: str = "out"):
    """An output file's path, checked before any work: not a folder, its folder made if missing (a UserError naming
    `flag` otherwise), so a long run never ends in a traceback over where to write."""
    from pathlib import Path

    from toolkit.cli import UserError
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder: give a file path, e.g. {path / example}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{flag} {path}: cannot make its folder ({e.strerror}): give a path in a folder you can "
                        "write") from None
    return path


def add_plot(p, what: str = "") -> None:
    p.add_argument("--plot", metavar="DIR", help=PLOT_HELP + (f": {what}" if what else ""))


def add_file_layout(p, **kw) -> None:
    p.add_argument("--layout", help=FILE_LAYOUT_HELP, **kw)


def add_signing_arguments(p, flag: str = "--key") -> None:
    """The private key and its passphrase (shared with `toolkit export --sign-key`)."""
    p.add_argument(flag, metavar="KEY", required=flag == "--key", help="private key file (`toolkit keygen`)")
    p.add_argument("--passphrase-env", metavar="VAR",
                   help="environment variable holding the key's passphrase (when it is encrypted)")
    p.add_argument("--signer", help="who signs, recorded beside the signature (informational)")
