"""Run the streaming daemon on a bundle: `toolkit serve --bundle DIR --udp-port 5005 --sink -`.

The same as `fog-daemon` (which needs only the device install: numpy + onnxruntime); see docs/daemon.md.
"""
from __future__ import annotations

from deploy.daemon import run_args
from deploy.daemon_args import add_arguments as daemon_arguments
from deploy.daemon_args import attach_sink_values

HELP = "run the streaming FOG detector on a bundle (same as fog-daemon)"


def add_arguments(p) -> None:
    daemon_arguments(p)


def prepare_argv(argv: list[str]) -> list[str]:
    """What fog-daemon does to its arguments before parsing (`--sink -?probs`)."""
    return attach_sink_values(argv)


def run(args) -> int:
    return run_args(args, prog="toolkit serve")
