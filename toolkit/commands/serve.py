"""Run the streaming daemon on a bundle: `toolkit serve BUNDLE --udp-port 5005 --sink -`.

The same as `fog-daemon` (which needs only the device install: numpy + onnxruntime); see docs/daemon.md.
"""
from __future__ import annotations

HELP = "run the streaming FOG detector on a bundle (same as fog-daemon)"


def add_arguments(p) -> None:
    from deploy.daemon import add_arguments as daemon_arguments
    daemon_arguments(p)


def run(args) -> int:
    from deploy.daemon import run_args
    return run_args(args, prog="toolkit serve")
