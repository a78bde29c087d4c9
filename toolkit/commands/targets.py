"""List the deployment targets `toolkit export --target` knows, with the facts that drive export and checks."""
from __future__ import annotations

import json

from toolkit.export.targets import ALIASES, get_target, list_targets
from toolkit.commands._options import add_json

HELP = "list deployment targets (TensorRT version, opset window, precisions, DLA)"


def add_arguments(p) -> None:
    p.add_argument("name", nargs="?", help="show every fact of one target (e.g. jetson)")
    add_json(p)


def run(args) -> int:
    if args.name:
        target = get_target(args.name)
        print(json.dumps(target.to_dict(), indent=2))
        return 0
    if args.json:
        print(json.dumps({"targets": [t.to_dict() for t in list_targets()], "aliases": ALIASES}, indent=2))
        return 0
    aliases = {}
    for alias, name in ALIASES.items():
        aliases.setdefault(name, []).append(alias)
    print(f"{'target':<17} {'TensorRT':<10} {'JetPack':<8} {'opset':<7} {'export':<6} {'precisions':<15} "
          f"{'LN op':<5} {'DLA':<4} aliases")
    for t in list_targets():
        print(f"{t.name:<17} {t.tensorrt or 'onnxrt':<10} {t.jetpack or '-':<8} "
              f"{f'{t.opset_min}-{t.opset_max}':<7} {t.export_opset:<6} {','.join(t.precisions):<15} "
              f"{'yes' if t.layernorm_op else 'no':<5} {'yes' if t.dla else 'no':<4} "
              f"{', '.join(aliases.get(t.name, []))}")
    print("\ndefault precision: int8 on Orin/Xavier/Thor/x86-cuda, fp16 on Nano, the faster one on cpu. "
          "`toolkit targets NAME` shows every fact and note.")
    return 0
