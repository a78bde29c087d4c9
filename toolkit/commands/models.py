"""List the model registry: each preset's family (every family of the zoo has one), class, parameter count, input
and output shapes and preprocessing.

Shapes are for batch 1, taken from the preset's data (Preset.io_shapes) rather than a forward pass, which would take
seconds for fog-1st-place. The presets are per-patch models: input (1, patch*3, n_patches) -> logits
(1, n_patches, classes). `toolkit models NAME` shows one preset in full.
"""
from __future__ import annotations

import json

from deploy.lazy import lazy_import
from toolkit.cli import UserError
from toolkit.commands._options import add_json

models = lazy_import("models", "workstation", "the model registry")

HELP = "list the model presets (parameters, input/output shapes, preprocessing)"


def add_arguments(p) -> None:
    p.add_argument("name", nargs="?", help="show one preset in full (e.g. fog-small)")
    add_json(p)


def _describe(name: str) -> dict:
    preset = models.get_preset(name)
    model = models.create_model(name).eval()
    spec = preset.preprocess
    shape, output_shape = preset.io_shapes(batch=1)
    return {"name": name, "family": preset.family, "class": preset.factory.__name__,
            "parameters": sum(p.numel() for p in model.parameters()),
            "input_shape": list(shape), "output_shape": list(output_shape), "classes": list(preset.classes),
            "kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in preset.kwargs.items()},
            "preprocess": dict(spec), "description": preset.description}


def run(args) -> int:
    if args.name and args.name not in models.list_presets():
        raise UserError(f"unknown preset {args.name!r}; presets: {', '.join(models.list_presets())}")
    rows = [_describe(n) for n in ([args.name] if args.name else models.list_presets())]
    if args.json:
        print(json.dumps(rows if not args.name else rows[0], indent=2))
        return 0
    if args.name:
        for key, value in rows[0].items():
            print(f"{key:<13} {value}")
        return 0
    print(f"{'preset':<20} {'family':<19} {'class':<20} {'params':>11}  {'input':<15} {'output':<15} {'window':<13} "
          "description")
    for r in rows:
        spec = r["preprocess"]
        window = f"{spec['patch'] * spec['n_patches'] / spec['rate_hz']:g} s@{spec['rate_hz']:g}Hz"
        print(f"{r['name']:<20} {r['family']:<19} {r['class']:<20} {r['parameters']:>11,}  "
              f"{_shape(r['input_shape']):<15} {_shape(r['output_shape']):<15} {window:<13} {r['description']}")
    print("\nzoo classes (models.*): TransformerRNNPlus/LSTMPlus/GRUPlus, RNNAttentionPlus/LSTMAttentionPlus/"
          "GRUAttentionPlus, RNN/GRU/LSTM, RecurrentClassifier, SCRN; see docs/models.md")
    return 0


def _shape(shape) -> str:
    return "(" + ", ".join(str(n) for n in shape) + ")"
