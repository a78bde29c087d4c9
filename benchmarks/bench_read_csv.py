"""Benchmark: read one hour of 100 Hz defog CSV (360 000 rows) with deploy.recording.read_recording.

  python benchmarks/bench_read_csv.py [--minutes 60] [--repeats 5]
Prints the median wall-clock time of the repeats and the median CPU time (on a busy machine the wall time includes
waiting for a core); the acceptance figure is under 2 s for one hour.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy.recording import read_recording, write_recording  # noqa: E402
from deploy.synth import synth_recording  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hour.csv"
        write_recording(synth_recording(args.minutes, seed=0, rate_hz=100, units="g"), path, "defog")
        times, cpu = [], []
        for _ in range(args.repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            rec = read_recording(path)
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        size = path.stat().st_size / 1e6
    print(f"read_recording: {rec.n_samples} rows ({args.minutes:g} min at 100 Hz, defog layout, {size:.1f} MB): "
          f"median {statistics.median(times):.2f} s over {args.repeats} runs (min {min(times):.2f}, "
          f"max {max(times):.2f}); CPU time median {statistics.median(cpu):.2f} s (wall > CPU means other processes "
          f"were competing for the cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
