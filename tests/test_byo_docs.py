"""The bring-your-own example of docs/export.md, run as written (issue 27): the real 4th-place BiGRU exported with
the doc's own command gives a working detector: streamed by `fog-daemon` over real FOG-free walking (mobgap) it calls
FOG on < 2 % of the time. The same command without `--activation softmax --background-class NoEvent` (what the doc
said before) is refused, naming those flags. Skipped without ../shared."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from deploy.bundle import Bundle
from tests.conftest import SHARED, shared_path
from tests.daemon_harness import final_counters, run_daemon
from toolkit.cli import main as cli

DOC = Path(__file__).resolve().parents[1] / "docs" / "export.md"
FIXES = ("--activation softmax", "--background-class NoEvent")


def doc_command() -> str:
    """The docs' `toolkit export` command of the 4th-place model, one line (continuations joined)."""
    blocks = re.findall(r"```\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    (block,) = [b for b in blocks if "fourth-place-bigru" in b and b.startswith("toolkit export")]
    return " ".join(line.rstrip("\\").strip() for line in block.strip().splitlines())


def as_argv(command: str, out: Path) -> list[str]:
    """The command's arguments for `toolkit.cli.main`, with ../shared where it is here and the bundle in `out`."""
    argv = shlex.split(command.replace("../shared", str(SHARED)))
    assert argv[:2] == ["toolkit", "export"]
    argv = argv[1:]
    argv[argv.index("--out") + 1] = str(out)
    return argv + ["--quiet"]


def time_called(bundle: Path, recordings: list[Path]) -> tuple[float, float]:
    """(seconds inside the daemon's events, seconds of signal) over `recordings` replayed through fog-daemon."""
    called = total = 0.0
    for path in recordings:
        done = run_daemon([bundle, "--replay", path, "--layout", "mobgap", "--threads", "1"], timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        events = [m for m in map(json.loads, done.stdout.splitlines()) if m["type"] == "event"]
        spans = sorted((e["onset_s"], e["offset_s"]) for e in events)
        end = float("-inf")
        for a, b in spans:                       # the union: per-class events may overlap
            called += max(0.0, b - max(a, end))
            end = max(end, b)
        total += final_counters(done.stderr)["accepted"] / 100.0          # mobgap is 100 Hz
    return called, total


@pytest.mark.shared
def test_the_docs_byo_export_is_a_working_detector_on_real_walking(fourth_place_dir, mobgap_dir, tmp_path, capsys):
    command = doc_command()
    assert all(flag in command for flag in FIXES)
    naive = command
    for flag in FIXES:
        naive = naive.replace(" " + flag, "")
    assert cli(as_argv(naive, tmp_path / "naive")) == 2        # refused before any work, naming the fix
    assert "--background-class NoEvent --activation softmax" in capsys.readouterr().err
    assert not (tmp_path / "naive").exists()

    out = tmp_path / "bigru"
    assert cli(as_argv(command, out)) == 0
    manifest = Bundle.load(out).manifest
    detector = {c["name"]: c for c in manifest["checks"] if c["name"].startswith("detector:")}
    assert detector["detector: background classes"]["passed"] and detector["detector: FOG-free time called"]["passed"]
    assert "detector: fires" in detector     # on synthetic windows: a warning at most
    walking = sorted(shared_path("data", "mobgap-walking").rglob("*.csv"))
    called, total = time_called(out, walking)
    print(f"\nBYO bundle over {len(walking)} mobgap recordings ({total / 60:.1f} min): FOG called "
          f"{100 * called / total:.2f} % of the time")
    assert total > 500 and called / total < 0.02
