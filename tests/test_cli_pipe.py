"""`toolkit targets | head` ends quietly (issue 27): every command, and fog-daemon, stop without a traceback when the
reader of their output goes away, with the status a shell shows for a filter stopped by its reader (141)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _with_reader_gone(args: list[str]) -> tuple[int, str]:
    """Run `python -m ...` with stdout a pipe whose reading end is closed before the program writes a byte."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, "-m", *args], stdout=write, stderr=subprocess.PIPE, text=True,
                              timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    finally:
        os.close(write)
    return done.returncode, done.stderr


@pytest.mark.parametrize("args", [["toolkit.cli", "targets"], ["toolkit.cli", "models"],
                                  ["toolkit.cli", "evaluate", "--synthetic", "1", "--baseline-only", "--quiet"]],
                         ids=["targets", "models", "evaluate"])
def test_output_to_a_reader_that_went_away_ends_quietly(args):
    status, stderr = _with_reader_gone(args)
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr[-1500:]
    assert status == 141


@pytest.mark.parametrize("args", [["toolkit.cli", "--help"], ["toolkit.cli", "score", "--help"], ["deploy", "--help"]],
                         ids=["toolkit", "score", "fog-daemon"])
def test_help_to_a_reader_that_went_away_ends_quietly(args):
    status, stderr = _with_reader_gone(args)      # argparse drops what it cannot write: exit 0 is quiet too
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr and status in (0, 141), stderr[-1500:]
