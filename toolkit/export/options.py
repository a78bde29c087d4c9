"""Every option of an export, once: `ExportOptions`. The pipeline reads it, `toolkit.api.export(model, target, out,
**fields)` takes its fields and nothing else, and `toolkit export`'s flags are made from it (`add_arguments`,
`from_args`): a field's metadata holds its flag, help, group and how the flag's text becomes the value, so a new
export option is one field here (tests/test_export_options.py checks the command line against it).

Not options: what is exported, for which target and where (the API's `model`, `weights`, `target` and `out`; the
command's --model/--weights, --target and --out).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field, fields

from calibration.calibrators import CALIBRATORS, DEFAULT_METHOD
from deploy.contract import (EVENT_FLAG_ALIASES, EVENT_KEYS, STREAM_NORMALIZATIONS, event_flag, event_flag_kind,
                             event_help)
from deploy.contract.events import check_layer
from deploy.errors import FogError, did_you_mean
from deploy.layouts import FILE_LAYOUT_HELP
from toolkit.export.plan import RECURRENCE_CHOICES
from toolkit.export.streaming import BUDGET_S

MODEL, SPEC, SHAPE = "model", "input spec (user models; presets bring their own)", "static shape"
TARGET, CALIBRATION = "target", "calibration and verification"
STREAMING = "streaming fidelity (the daemon's pipeline vs offline, recorded in the manifest)"
EVENTS = "event defaults written into the manifest"
TENSOR_LAYOUTS = ("BCT", "BTC")


def option(default, help: str, group: str | None = None, *, flag: str | None = None, parse=None, parts=None,
           **argparse_kw):
    """A field of ExportOptions: its default, what it means (`help`, also the flag's), its flag (default
    --field-name) and argparse keywords; `parse(text value) -> value`; `parts`: a dict field made of one flag per
    key ({key: argparse keywords, and optionally its own flag, dest and hidden aliases})."""
    meta = {"help": help, "group": group, "flag": flag, "parse": parse, "parts": parts, "argparse": argparse_kw}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def _json_object(text) -> dict:
    if isinstance(text, dict):
        return text
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FogError(f"--factory-kwargs is not JSON ({exc}); e.g. '{{\"hidden\": 64}}'") from None
    if not isinstance(value, dict):
        raise FogError(f"--factory-kwargs must be a JSON object of keyword arguments, not {text!r}")
    return value


def _batch_sizes(text):
    """'1,8,32' -> (1, 8, 32); '8' or 8 -> 8 (a whole number >= 1 each: checked by ExportOptions)."""
    if isinstance(text, str):
        try:
            sizes = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise FogError(f"--batch {text!r}: give batch sizes as whole numbers, e.g. 1 or 1,8,32") from None
        return sizes[0] if len(sizes) == 1 else tuple(sizes)
    return text


def _names(text):
    return text.split(",") if isinstance(text, str) else text


EVENT_PARTS = {key: {**event_flag_kind(key), "flag": event_flag(key), "help": event_help(key),
                     "aliases": [EVENT_FLAG_ALIASES[key]] if key in EVENT_FLAG_ALIASES else []} for key in EVENT_KEYS}
EVENT_PARTS["mode"]["help"] = ("'any': one any-FOG event per freeze; 'per_class': one event stream per event class "
                               "(default: from what the checkpoint was trained on: any when it learnt from untyped "
                               "freezes such as Daphnet's, per_class when all its freezes were typed or it does not "
                               "say; manifest events.mode)")
SPEC_PARTS = {"rate_hz": {"type": float}, "units": {"choices": ("g", "m/s^2")},
              "patch": {"type": int, "help": "samples per patch (1 = per-sample model)"},
              "layout": {"flag": "--input-layout", "dest": "input_layout", "choices": TENSOR_LAYOUTS,
                         "help": "the model's tensor layout: BCT (B, patch*3, n_patches) or BTC (B, n, patch*3)"},
              "normalization": {"choices": ("recording", "window", "running")}}


@dataclass(frozen=True)
class ExportOptions:
    """The options of one export (see the module docstring); fixed once made."""
    tsai: bool = option(False, "the weights come from tsai: build with tsai_compat=True", MODEL, action="store_true")
    factory_kwargs: dict = option({}, "JSON keyword arguments for module:factory", MODEL, parse=_json_object)
    activation: str | None = option(None, "output activation (default sigmoid)", MODEL,
                                    choices=("sigmoid", "softmax", "none"))
    classes: list | None = option(None, "comma-separated class names (user models; default the three FOG classes)",
                                  MODEL, parse=_names)
    background: list | None = option(None, "a class that is not an event (e.g. NoEvent); repeat for more (default: "
                                     "the model's `background_classes` attribute, else none)", MODEL,
                                     flag="--background-class", action="append", metavar="NAME")
    any_fog: str | None = option(None, "any-FOG from the event classes (default: sum for softmax with a background "
                                 "class, else max)", MODEL, choices=("sum", "max"))
    preprocess: dict = option({}, "the model's input (user models; a preset brings its own): rate_hz, units, patch, "
                              "layout, normalization (and, from Python, any PreprocessSpec key)", SPEC,
                              parts=SPEC_PARTS)
    batch: int | tuple = option(1, "static batch size, or several, comma separated (1,8,32): graphs at each size, "
                                "each verified, for a gateway that runs many wearers' windows together (the first "
                                "is the bundle's own; default 1)", SHAPE, parse=_batch_sizes)
    n_patches: int | None = option(None, "patches per window (default: the preset's; a preset's shipped weights fit "
                                   "their own only)", SHAPE, type=int)
    untrained: bool = option(False, "export the preset's architecture with random initial weights on purpose (needed "
                             "with an --n-patches its shipped weights do not fit)", MODEL, action="store_true")
    precision: str | None = option(None, "default: the target's; fastest (cpu target only): time fp32 and int8 on "
                                   "onnxruntime and keep int8 only when >= 1.10x faster", TARGET,
                                   choices=("int8", "fp16", "fp32", "fastest"))
    opset: int | None = option(None, "ONNX opset (default: the target's)", TARGET, type=int)
    recurrence: str = option("auto", "INT8 plan of the recurrence: unrolled into INT8 MatMuls, or one fused LSTM/GRU "
                             "node in FP16 (never quantized); auto: unrolled while the unrolled graph stays under "
                             "5,000 nodes", TARGET, choices=RECURRENCE_CHOICES)
    dla_core: int | None = option(None, "build for this DLA core with GPU fallback (targets with DLA)", TARGET,
                                  type=int)
    build_engine: str = option("auto", "write the build kit only, even if TensorRT is here", TARGET,
                               flag="--no-engine", action="store_const", const="never")
    force: bool = option(False, "replace an existing --out folder", TARGET, action="store_true")
    allow_degenerate: bool = option(False, "export a detector the checks call degenerate (a class named like 'no "
                                    "event' counted as FOG, FOG called on most FOG-free time) with a warning in the "
                                    "manifest's checks instead of a refusal (toolkit.export.detector)", TARGET,
                                    action="store_true")
    calibration: str | None = option(None, "ship the ranges of this calibration cache (`toolkit calibrate --out`) "
                                     "instead of calibrating; refused unless made for these weights. A QAT result "
                                     "(`toolkit train --qat`) ships its own learnt ranges without this flag",
                                     CALIBRATION, metavar="CAL_JSON")
    calib_method: str = option(DEFAULT_METHOD, f"activation range calibrator (default {DEFAULT_METHOD}, chosen by "
                               "measurement: docs/calibration.md)", CALIBRATION, choices=tuple(CALIBRATORS))
    calib_windows: int | None = option(None, "calibration windows (default: 8,192 patches' worth, 4 to 64: 64 for "
                                       "fog-small, 9 for fog-1st-place)", CALIBRATION, type=int)
    # recordings: paths, and from Python also Recording objects
    calib_data: list | None = option(None, "recordings to calibrate on (default synthetic windows)", CALIBRATION,
                                     nargs="+")
    calib_mapping: str | None = option(None, "column mapping for --calib-data (e.g. mobgap)", CALIBRATION)
    layout: str | None = option(None, FILE_LAYOUT_HELP, CALIBRATION)   # of --calib-data and --fidelity-data
    verify_windows: int | None = option(None, "verification windows (default: 2,048 patches' worth, 4 to 16: 16 for "
                                        "fog-small)", CALIBRATION, type=int)
    stream_normalization: str = option("auto", "how the device normalizes the stream (default auto: the declared one "
                                       "when it streams exactly, else the option measured closest to offline)",
                                       STREAMING, choices=("auto",) + STREAM_NORMALIZATIONS)
    fidelity_data: list | None = option(None, "recordings to measure on (default synthetic)", STREAMING, nargs="+")
    fidelity_mapping: str | None = option(None, "column mapping for --fidelity-data (e.g. mobgap)", STREAMING)
    fidelity: bool = option(True, "skip the streaming-fidelity step", STREAMING, flag="--no-fidelity",
                            action="store_false")
    fidelity_budget_s: float = option(BUDGET_S, "skip the step (and say so) when one timed inference puts it over "
                                      f"this many seconds (default {BUDGET_S:g})", STREAMING, type=float)
    events: dict = option({}, "manifest event keys over the model's and the defaults (deploy.contract.EVENT_KEYS)",
                          EVENTS, parts=EVENT_PARTS)
    on_threshold_from: str | None = option(None, "write the operating point `toolkit evaluate --at-fa-per-hour RATE "
                                           "--json-out EVAL_JSON` chose for this model (its on/off and the event "
                                           "settings it was scored with); the manifest records the choice and the "
                                           "recordings that made it (export.events_chosen)", EVENTS,
                                           metavar="EVAL_JSON")
    threads: int = option(1, "torch/onnxruntime threads of the export's own work (default 1: a shared machine)",
                          type=int)
    quiet: bool = option(False, "no progress bars (they are also off when stderr is not a terminal)",
                         action="store_true")

    def __post_init__(self):
        for name in ("factory_kwargs", "preprocess", "events"):   # None from Python: not given
            if getattr(self, name) is None:
                object.__setattr__(self, name, {})
        for name in ("threads",) + (("n_patches",) if self.n_patches is not None else ()):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise FogError(f"{_dashed(name)} must be a whole number >= 1, got {getattr(self, name)!r}")
        sizes = list(self.batch) if isinstance(self.batch, (list, tuple)) else [self.batch]
        if not sizes or any(isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= 1024 for s in sizes):
            raise FogError(f"--batch must be a whole number >= 1 (or several, e.g. 1,8,32; at most 1024), got "
                           f"{self.batch!r}")
        check_layer(self.events, "events")   # a bad flag is refused before any work

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        """Every batch size asked for, ascending (`--batch 1,8,32`)."""
        return tuple(sorted(set(self.batch))) if isinstance(self.batch, (list, tuple)) else (self.batch,)

    @property
    def own_batch(self) -> int:
        """The bundle's own graphs' batch size: the smallest asked for."""
        return self.batch_sizes[0]

    @classmethod
    def build(cls, options: "ExportOptions | None" = None, **given) -> "ExportOptions":
        """`options` with `given` fields over it; an unknown name raises TypeError naming the nearest."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise TypeError(f"export() got unknown option(s) {unknown} ({did_you_mean(unknown[0], known)})")
        return dataclasses.replace(options or cls(), **given)


def _dashed(name: str) -> str:
    """The flag of a name: --calib-windows for calib_windows (deploy.contract.event_flag spells event keys alike)."""
    return "--" + name.replace("_", "-")


def _dest(key: str, part: dict) -> str:
    """The argparse dest of a part of a dict field: its key, as other commands name the same flag (--hop-s is
    hop_s in evaluate too), unless the part names another."""
    return part.get("dest") or key


def _flag(f) -> str:
    return f.metadata["flag"] or _dashed(f.name)


def group_titles(cls=ExportOptions) -> list[str]:
    """The argument groups of the options, in the order of their first field."""
    return list(dict.fromkeys(f.metadata["group"] for f in fields(cls) if f.metadata["group"]))


def add_arguments(parser, cls=ExportOptions, groups: dict | None = None) -> None:
    """One flag per field (per part of a dict field), in the fields' groups (`groups`: {title: argument group}
    already made), defaults the fields'."""
    groups = dict(groups or {})
    for f in fields(cls):
        meta = f.metadata
        if meta["group"] is not None and meta["group"] not in groups:
            groups[meta["group"]] = parser.add_argument_group(meta["group"])
        where = parser if meta["group"] is None else groups[meta["group"]]
        for key, kw in (meta["parts"] or {}).items():
            kw = dict(kw)
            flag, aliases, dest = kw.pop("flag", None) or _dashed(key), kw.pop("aliases", []), _dest(key, kw)
            kw.pop("dest", None)
            where.add_argument(flag, dest=dest, default=None, **kw)
            for alias in aliases:
                where.add_argument(alias, dest=dest, default=None, **{**kw, "help": argparse.SUPPRESS})
        if not meta["parts"]:
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            if meta["parse"] is _json_object:
                default = json.dumps(default)
            where.add_argument(_flag(f), dest=f.name, default=default, help=meta["help"], **meta["argparse"])


def from_args(args, cls=ExportOptions) -> ExportOptions:
    """The options the parsed command line gives (`add_arguments`' flags)."""
    values = {}
    for f in fields(cls):
        meta = f.metadata
        if meta["parts"]:
            given = {key: getattr(args, _dest(key, kw)) for key, kw in meta["parts"].items()}
            values[f.name] = {key: value for key, value in given.items() if value is not None}
        else:
            value = getattr(args, f.name)
            values[f.name] = meta["parse"](value) if meta["parse"] and value is not None else value
    return cls(**values)


def flags(cls=ExportOptions) -> dict[str, str]:
    """{flag: the field it sets} of every option (parts and hidden aliases included)."""
    out = {}
    for f in fields(cls):
        for key, kw in (f.metadata["parts"] or {}).items():
            for flag in [kw.get("flag") or _dashed(key), *kw.get("aliases", [])]:
                out[flag] = f.name
        if not f.metadata["parts"]:
            out[_flag(f)] = f.name
    return out

