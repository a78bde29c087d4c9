"""Run the latency regression tests N times in a row and print the spread of every normalized latency.

    python benchmarks/latency_spread.py -n 10            # all latency tests, 10 runs
    python benchmarks/latency_spread.py -n 10 -k fog-small

This is how the tolerance in benchmarks/baselines/*.json is defended: the spread printed here (max/min - 1 over
the runs, and the worst run against the baseline) must sit well inside it, and no run may fail. Each run is a
fresh pytest process, as in CI.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--runs", type=int, default=10)
    parser.add_argument("-k", default=None, help="pytest -k expression (default: every latency test)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from toolkit.bench import baseline as bench_baseline

    baseline = bench_baseline.load(bench_baseline.baseline_path())
    record = Path(tempfile.mkdtemp(prefix="fog-spread-")) / "entries.jsonl"
    failures, durations = 0, []
    for run in range(1, args.runs + 1):
        cmd = [sys.executable, "-m", "pytest", "-q", "-m", "latency", "-p", "no:cacheprovider",
               str(REPO / "tests" / "test_latency.py")] + (["-k", args.k] if args.k else [])
        started = time.time()
        proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "FOG_LATENCY_RECORD": str(record)},
                              capture_output=True, text=True)
        durations.append(time.time() - started)
        summary = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
        failures += proc.returncode != 0
        print(f"run {run:2d}: exit {proc.returncode}, {durations[-1]:5.1f} s, {summary}", flush=True)
        if proc.returncode not in (0, 1):
            print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
    values = defaultdict(list)
    for line in record.read_text().splitlines() if record.exists() else []:
        row = json.loads(line)
        if row.get("normalized_latency") is not None:
            values[(row["label"], row["key"])].append(row["normalized_latency"])
    tolerance = baseline.get("tolerance")
    print(f"\n{'label':<36}{'entry':<34}{'n':>3}{'min':>8}{'median':>8}{'max':>8}{'spread':>8}{'base':>8}"
          f"{'worst/base':>11}")
    for (label, key), vals in sorted(values.items()):
        base = baseline.get("entries", {}).get(key, {}).get("normalized_latency")
        worst = f"{max(vals) / base - 1:+.1%}" if base else "-"
        print(f"{label:<36}{key:<34}{len(vals):>3}{min(vals):>8.3f}{statistics.median(vals):>8.3f}{max(vals):>8.3f}"
              f"{max(vals) / min(vals) - 1:>8.1%}{base if base else '-':>8}{worst:>11}")
    print(f"\n{args.runs} runs, {failures} failed; tolerance {tolerance}; run time median "
          f"{statistics.median(durations):.0f} s, max {max(durations):.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
