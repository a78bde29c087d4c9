"""Benchmark: calibrating 512 windows of the fog-small preset (the acceptance budget is < 60 s on 2 cores).

  python benchmarks/bench_calibration.py [--windows 512] [--methods entropy,percentile,mse,max] [--threads 2]

Times, per calibrator, the whole `calibration.ptq.calibrate` call (forward passes of the QAT variant in
calibration mode, histogram collection, range computation) on windows drawn from seeded synthetic recordings.
Window preparation (synthesis, preprocessing) is timed separately. Prints one JSON object; repeats give medians.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    import torch

    from calibration.checkpoint import load_model
    from calibration.data import WindowReader, synthetic_recordings
    from calibration.ptq import calibrate
    from models import get_preset
    from models.qat import to_qat

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="fog-small")
    p.add_argument("--windows", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--methods", default="entropy,percentile,mse,max")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: on the shared 2-core box 2 threads ran 3-6x slower)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    model, preset, checkpoint = load_model(args.preset)
    spec = get_preset(preset).preprocess
    started = time.perf_counter()
    reader = WindowReader(synthetic_recordings(8, seed=0, minutes=5.0), spec, limit=args.windows,
                          batch_size=args.batch_size)
    prep_seconds = time.perf_counter() - started
    results = {"preset": preset, "checkpoint": str(checkpoint) if checkpoint else None, "windows": args.windows,
               "batch_size": args.batch_size, "threads": args.threads, "prepare_windows_s": round(prep_seconds, 2),
               "calibrate_s": {}}
    for method in args.methods.split(","):
        times = []
        for _ in range(args.repeats):
            qat = to_qat(model, batch_size=args.batch_size, seq_len=spec["n_patches"])
            t = time.perf_counter()
            cache = calibrate(qat, reader, method, preset=preset, progress=False)
            times.append(time.perf_counter() - t)
        results["calibrate_s"][method] = round(statistics.median(times), 2)
        results["quantizers"] = len(cache.amax)
        print(f"{method}: {statistics.median(times):.1f} s", file=sys.stderr, flush=True)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
