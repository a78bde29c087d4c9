"""How much the daemon adds to the engine, and what the look-ahead buys.

    python benchmarks/bench_daemon.py                      # stand-in bundle shaped like fog-small
    python benchmarks/bench_daemon.py --bundle BUNDLE      # a real bundle from `toolkit export`

Part 1 runs `python -m deploy` (no torch in that process) replaying synthetic signal as fast as possible and reports
wall time / summed engine time (target <= 1.25), RSS (target <= 150 MB with onnxruntime) and hop latency p50/p99.
Part 2 streams the same signal at several look-aheads and reports each setting's decision delay and how far its
probabilities are from whole-window overlap averaging (the offline reference).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FOG_SMALL = {"rate_hz": 64, "units": "g", "patch": 8, "n_patches": 128, "normalization": "window", "scale": 1.0,
             "layout": "BCT"}


def make_standin(folder: Path) -> Path:
    # built in a child process so this process (and the daemon) never holds torch
    code = ("from tests.helpers_bundle import make_bundle; import json, sys; "
            f"make_bundle(sys.argv[1], preprocess=json.loads(sys.argv[2]), hidden=64, gru=64)")
    subprocess.run([sys.executable, "-c", code, str(folder), json.dumps(FOG_SMALL)], check=True, cwd=REPO)
    return folder


def overhead(bundle: Path, recording: Path, threads: int) -> dict:
    cmd = [sys.executable, "-m", "deploy", str(bundle), "--replay", str(recording), "--sink", "file:/dev/null",
           "--hop-s", "0.5", "--lookahead-s", "0.5", "--threads", str(threads), "--log-level", "warning",
           "--status-interval", "0"]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=1800)
    if result.returncode:
        raise SystemExit(result.stderr)
    c = json.loads([l for l in result.stderr.splitlines() if l.startswith('{"counters"')][-1])["counters"]
    return {"hops": c["hops_run"], "wall_s": c["uptime_s"], "engine_s": c["engine_s"],
            "ratio": round(c["uptime_s"] / c["engine_s"], 3), "peak_rss_mb": c["peak_rss_mb"],
            "hop_latency_ms": c["hop_latency_ms"], "engine_ms": c["engine_ms"]}


def lookahead_tradeoff(bundle_dir: Path, recs, threads: int) -> list[dict]:
    from deploy.bundle import Bundle
    from deploy.engines import open_engine
    from deploy.offline import contribution, predict_recording
    from deploy.preprocess import PreprocessSpec
    bundle = Bundle.load(bundle_dir)
    spec = PreprocessSpec.from_dict(bundle.manifest["input"]["preprocess"])
    engine = open_engine(bundle, backend="onnxruntime", threads=threads)
    infer = lambda b: np.concatenate([engine.infer(x[None]).copy() for x in b])  # noqa: E731
    hop = int(0.5 * spec.rate_hz)
    full = [predict_recording(r, spec, infer, hop, None) for r in recs]
    rows = []
    for look_s in (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, None):
        look = None if look_s is None else int(look_s * spec.rate_hz)
        got = [predict_recording(r, spec, infer, hop, look) for r in recs]  # == the daemon's output (tested)
        diff = np.concatenate([np.abs(g - f).ravel() for g, f in zip(got, full)])
        keep = contribution(spec.window, hop, look)
        rows.append({"lookahead_s": "full" if look_s is None else look_s,
                     "max_decision_delay_s": round(keep / spec.rate_hz, 3),
                     "mean_abs_diff_vs_full": round(float(diff.mean()), 4),
                     "p99_abs_diff_vs_full": round(float(np.percentile(diff, 99)), 4)})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", help="bundle folder (default: a stand-in shaped like fog-small)")
    ap.add_argument("--minutes", type=float, default=10.0, help="signal to replay (default 10)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from deploy.recording import write_recording
    from deploy.synth import synth_recording
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bundle = Path(args.bundle) if args.bundle else make_standin(tmp / "bundle")
        rate = json.loads((bundle / "manifest.json").read_text())["input"]["preprocess"]["rate_hz"]
        rec = synth_recording(minutes=args.minutes, seed=11, rate_hz=rate)
        write_recording(rec, tmp / "rec.npz", "npz")
        runs = [overhead(bundle, tmp / "rec.npz", args.threads) for _ in range(args.repeats)]
        best = sorted(runs, key=lambda r: r["ratio"])[len(runs) // 2]
        print(json.dumps({"overhead_median_run": best, "ratios": [r["ratio"] for r in runs]}, indent=1))
        recs = [synth_recording(minutes=3.0, seed=s, rate_hz=rate) for s in (21, 22)]
        for row in lookahead_tradeoff(bundle, recs, args.threads):
            print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
