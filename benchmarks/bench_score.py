"""Cohort scoring figures (issue 16): hours of signal scored per second (local runner, Ray), per-engine throughput,
and peak RSS on long recordings read from Parquet.

    python benchmarks/bench_score.py throughput --bundle B [--subjects 4 --minutes 30] [--ray]
    python benchmarks/bench_score.py rss --bundle B --hours 24          # one long Parquet recording
    python benchmarks/bench_score.py rss --bundle B --hours 168 --nights  # a week at 100 Hz, 8 h a night off-body

Each run is `toolkit score` in its own process (peak RSS from the kernel's rusage of that child). Recordings are
synthetic (deploy.synth, defog-like: 100 Hz, g); a long one is a 2-hour synthetic block repeated, written in row
groups of 1 M rows, with `--nights` an 8-hour stretch of a sensor lying still each day (not worn). The machine has 2
shared cores: the load average is printed with each figure.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def write_long_parquet(path: Path, hours: float, nights: bool, block_h: float = 2.0, seed: int = 0) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from deploy.synth import synth_recording
    from toolkit.score.read import RATE_KEY, UNITS_KEY
    rate = 100.0
    block = synth_recording(block_h * 60, seed=seed, rate_hz=rate, units="g").acc
    rng = np.random.default_rng(seed)
    n_total = int(hours * 3600 * rate)
    day, night = int(86400 * rate), int(8 * 3600 * rate)      # the night: the last 8 h of each day
    schema = pa.schema([("Time", pa.int64()), ("AccV", pa.float64()), ("AccML", pa.float64()),
                        ("AccAP", pa.float64())], metadata={RATE_KEY: b"100.0", UNITS_KEY: b"g"})
    rows = 1_000_000
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, n_total, rows):
            idx = np.arange(start, min(n_total, start + rows))
            acc = block[idx % len(block)].copy()
            if nights:
                still = (idx % day) >= day - night
                acc[still] = np.array([0.02, -0.01, 0.99]) + rng.normal(0, 0.001, (int(still.sum()), 3))
            writer.write_table(pa.table({"Time": idx, "AccV": acc[:, 0], "AccML": acc[:, 1], "AccAP": acc[:, 2]},
                                        schema=schema))
    return path


def run_score(args_list: list[str]) -> dict:
    """`toolkit score ...` in a child process: wall time, peak RSS (MB), run.json."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    import tempfile
    with tempfile.TemporaryFile("w+") as fout, tempfile.TemporaryFile("w+") as ferr:   # files: no pipe to fill
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "toolkit.cli", "score", *args_list, "--quiet", "--no-resume"],
                                env=env, cwd=REPO, stdout=fout, stderr=ferr, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        fout.seek(0)
        ferr.seek(0)
        out, err = fout.read(), ferr.read()
    if status != 0:
        raise SystemExit(f"toolkit score failed:\n{err[-3000:]}")
    out_dir = Path(args_list[args_list.index("--out") + 1])
    run = json.loads((out_dir / "run.json").read_text())
    recs = [json.loads(p.read_text()) for p in (out_dir / "parts").glob("*.json")]
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "run": run,
            "compute_s": sum(r["compute_s"] for r in recs), "hours": sum(r["duration_s"] for r in recs) / 3600,
            "not_worn_h": sum(b - a for r in recs for a, b in r["not_worn"]) / 3600, "stdout": out}


def load() -> str:
    return "load %.1f" % os.getloadavg()[0]


def throughput(a) -> None:
    import tempfile

    from toolkit.score.read import write_parquet
    from deploy.synth import synth_recording
    tmp = Path(tempfile.mkdtemp(prefix="bench-score-"))
    data = tmp / "data"
    data.mkdir()
    for s in range(a.subjects):
        write_parquet(synth_recording(a.minutes, seed=100 + s, rate_hz=100.0, units="g"), data / f"s{s:02d}.parquet")
    hours = a.subjects * a.minutes / 60
    print(f"cohort: {a.subjects} recordings x {a.minutes:g} min = {hours:.2f} h at 100 Hz (Parquet); bundle {a.bundle}")
    runners = [("local", ["--jobs", "1"]), ("local", ["--jobs", "2"])]
    if a.ray:
        runners.append(("ray", ["--jobs", "2"]))
    for runner, extra in runners:
        r = run_score([str(data), "--bundle", a.bundle, "--out", str(tmp / f"out-{runner}-{extra[-1]}"),
                       "--runner", runner, *extra])
        per_engine = r["hours"] / r["compute_s"]
        print(f"{runner:5s} {' '.join(extra):8s}: {r['run']['hours_per_second']:.3f} h/s scoring "
              f"({r['run']['wall_s']:.1f} s), {r['hours'] / r['wall_s']:.3f} h/s with start-up ({r['wall_s']:.1f} s); "
              f"per engine {per_engine:.3f} h/s ({r['compute_s']:.1f} s of work); peak RSS of the driver "
              f"{r['peak_rss_mb']:.0f} MB; {load()}")


def rss(a) -> None:
    import tempfile
    tmp = Path(tempfile.mkdtemp(prefix="bench-score-rss-"))
    path = tmp / "data" / f"long-{a.hours:g}h.parquet"
    path.parent.mkdir()
    t0 = time.perf_counter()
    write_long_parquet(path, a.hours, a.nights)
    print(f"wrote {path.name}: {a.hours:g} h at 100 Hz = {int(a.hours * 360000):,} samples, "
          f"{path.stat().st_size / 1e6:.0f} MB, in {time.perf_counter() - t0:.0f} s")
    r = run_score([str(path), "--bundle", a.bundle, "--out", str(tmp / "out"), "--jobs", "1"])
    print(f"scored in {r['wall_s']:.0f} s ({r['hours'] / r['wall_s']:.2f} h/s), not worn {r['not_worn_h']:.1f} h, "
          f"peak RSS {r['peak_rss_mb']:.0f} MB; {load()}")
    print(r["stdout"].strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--bundle", required=True)
    t.add_argument("--subjects", type=int, default=4)
    t.add_argument("--minutes", type=float, default=30.0)
    t.add_argument("--ray", action="store_true", help="also --runner ray (needs ray[data])")
    r = sub.add_parser("rss")
    r.add_argument("--bundle", required=True)
    r.add_argument("--hours", type=float, default=24.0)
    r.add_argument("--nights", action="store_true", help="8 h a night lying still (not worn)")
    a = p.parse_args()
    throughput(a) if a.what == "throughput" else rss(a)


if __name__ == "__main__":
    main()
