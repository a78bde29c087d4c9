"""Issue 17's CPU bars, repeated: the project's best engine against the naive export and PyTorch eager.

`toolkit bench --model MODEL --ratio` runs the interleaved batch-1 head-to-head once. On a shared machine one run is one
draw, so this builds the benched model once (every export is done once) and repeats the head-to-head `--runs` times per
thread count, alternating the thread counts, then prints each run and the medians of the ratios. The best
project engine is the fastest of the given project backends in that run (what `--precision fastest` would keep).

  PYTHONPATH=$PWD python benchmarks/cpu_ratios.py fog-1st-place --threads 1,2 --runs 3 \
      --backends pytorch-eager,onnxruntime-naive,onnxruntime-dynamic,onnxruntime-staged
"""
from __future__ import annotations

import argparse
import os
import statistics

from toolkit.bench.backends import NAIVE
from toolkit.bench.run import head_to_head, load_benched

EAGER = "pytorch-eager"


def one_run(benched, backends, threads: int) -> dict:
    ms = head_to_head(benched, backends, threads)
    project = {b: v for b, v in ms.items() if b not in (EAGER, NAIVE)}
    best = min(project, key=project.get)
    return {"ms": ms, "best": best, "vs_naive": ms[NAIVE] / ms[best] if NAIVE in ms else None,
            "vs_eager": ms[EAGER] / ms[best] if EAGER in ms else None}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a registry preset or a bundle folder")
    parser.add_argument("--threads", default="1,2", help="comma list of thread counts (default 1,2)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backends", default=f"{EAGER},{NAIVE},onnxruntime-dynamic,onnxruntime-staged")
    args = parser.parse_args(argv)
    benched = load_benched(args.model)
    backends = args.backends.split(",")
    counts = [int(t) for t in args.threads.split(",")]
    results: dict[int, list[dict]] = {t: [] for t in counts}
    for run in range(args.runs):
        for threads in counts:
            print(f"run {run + 1}/{args.runs}, {threads} thread(s), load {os.getloadavg()[0]:.1f} ...", flush=True)
            results[threads].append(one_run(benched, backends, threads))
    for threads, runs in results.items():
        print(f"\n{args.model}, {threads} thread(s), batch 1, interleaved; ms per call per run:")
        for backend in runs[0]["ms"]:
            print(f"  {backend:34s} " + " / ".join(f"{r['ms'][backend]:9.2f}" for r in runs))
        for key, label in (("vs_naive", "best vs naive export"), ("vs_eager", "best vs PyTorch eager")):
            values = [r[key] for r in runs if r[key] is not None]
            if values:
                print(f"  {label:34s} median {statistics.median(values):.2f}x  ("
                      + ", ".join(f"{v:.2f}" for v in values) + ")  best: " + ", ".join(r["best"] for r in runs))


if __name__ == "__main__":
    main()
