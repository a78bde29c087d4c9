"""Benchmark: read the Stanford IMU FOG study's original workbooks (.xlsx, 128 Hz, 69 columns) as recordings.

  python benchmarks/bench_read_xlsx.py [FOLDER]      (default ../shared/data/stanford-imu-fog)
Reads every workbook once with deploy.recording.read_recording (openpyxl, read-only mode, streaming rows) and prints
the median wall-clock and CPU seconds per workbook, and the totals (on a busy machine the wall time includes waiting
for a core). Nearly all of it is openpyxl parsing the sheet's XML, about 2 us per cell (a workbook holds ~500 000).
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from deploy.recording import read_recording  # noqa: E402


def main() -> int:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "data" / "stanford-imu-fog"
    files = sorted(folder.glob("*.xlsx"))
    if not files:
        print(f"no workbooks in {folder}", file=sys.stderr)
        return 1
    wall, cpu, samples = [], [], 0
    for path in files:
        start, start_cpu = time.perf_counter(), time.process_time()
        samples += read_recording(path).n_samples
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    print(f"{len(files)} workbooks ({samples} samples, {samples / 128 / 60:.1f} min at 128 Hz): per workbook median "
          f"{statistics.median(wall):.2f} s wall (min {min(wall):.2f}, max {max(wall):.2f}), "
          f"{statistics.median(cpu):.2f} s CPU; all {sum(wall):.1f} s wall, {sum(cpu):.1f} s CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
