"""The `toolkit` command line.

Each subcommand lives in its own module under `toolkit/commands/` and exposes
`HELP` (one line), `add_arguments(parser)` and `run(args) -> int` (and may define `prepare_argv(argv) -> argv`, applied
to its own arguments before parsing); they are found by name (COMMANDS), so this
module imports none of them. A command module imports the project's modules at its top and torch, onnx and the
like through `deploy.lazy.lazy_import`, so building the parser (`toolkit --help`) never imports torch.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from deploy.errors import FogError, reader_gone
from toolkit import __version__

# name -> module; order is the order shown in --help.
COMMANDS = {
    "models": "toolkit.commands.models",
    "targets": "toolkit.commands.targets",
    "synth": "toolkit.commands.synth",
    "evaluate": "toolkit.commands.evaluate",
    "score": "toolkit.commands.score",
    "train": "toolkit.commands.train",
    "calibrate": "toolkit.commands.calibrate",
    "export": "toolkit.commands.export",
    "inspect": "toolkit.commands.inspect",
    "keygen": "toolkit.commands.keygen",
    "sign": "toolkit.commands.sign",
    "serve": "toolkit.commands.serve",
    "bench": "toolkit.commands.bench",
}


class UserError(FogError):
    """A problem with what the user asked for: printed as one clear message, exit code 2."""


def _available() -> dict[str, str]:
    return {name: mod for name, mod in COMMANDS.items() if importlib.util.find_spec(mod) is not None}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="toolkit",
        description="FOG edge toolkit: freezing-of-gait models from PyTorch to Jetson, verified and streamed.",
    )
    parser.add_argument("--version", action="version", version=f"toolkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, modname in _available().items():
        module = importlib.import_module(modname)
        p = sub.add_parser(name, help=module.HELP, description=getattr(module, "__doc__", None) or module.HELP,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def _prepared(argv: list[str]) -> list[str]:
    """The command's own `prepare_argv`, if it has one, applied to the arguments after its name."""
    modname = COMMANDS.get(argv[0]) if argv else None
    prepare = getattr(importlib.import_module(modname), "prepare_argv", None) if modname else None
    return [argv[0], *prepare(argv[1:])] if prepare else argv


def main(argv: list[str] | None = None) -> int:
    try:
        status = _main(argv)
        sys.stdout.flush()          # a closed pipe fails here, inside, not in Python's flush at exit
        return status
    except BrokenPipeError:
        return reader_gone()


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(_prepared(list(sys.argv[1:] if argv is None else argv)))
    if not getattr(args, "_module", None):
        parser.print_help()
        return 2
    try:
        return int(args._module.run(args) or 0)
    except FogError as exc:
        print(f"toolkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"toolkit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
