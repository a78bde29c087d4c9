"""A thread cap measured at export: how many intra-op threads the engine the device opens actually profits from.

Why: at batch 1, small graphs are made of tiny ops, and onnxruntime's second intra-op thread can cost more in
hand-offs than it brings: fog-small's dynamic plan ran 1.13 ms at 1 thread and ~1.48 ms at 2 on a quiet 2-core
machine (docs/bench.md, "Quiet machine, after the merge"), while the large preset's stages need both cores.
So the export times that engine (deploy.engines.onnxruntime.open_role: the whole graph or its stages, as the bundle
will open it) at 1..N threads, interleaved, and records the fewest threads within MARGIN of the fastest in the
manifest (`onnxruntime.thread_cap.<role>`); the device then treats its `threads` as a budget and uses
min(budget, cap) (deploy.engines.onnxruntime). `toolkit bench` applies `measure_threads` to the backends it
re-exports, within its `--threads` budget, so bench and export decide the same way.
"""
from __future__ import annotations

import os
import platform
from typing import Callable

from deploy.contract import FP32_FILE
from deploy.engines.onnxruntime import open_role
from toolkit.export.manifest import onnxruntime_section
from toolkit.timing import interleaved

MAX_THREADS = 4     # a Jetson's CPU cluster / a small x86 box; more cores than this are not worth an export's seconds
MARGIN = 0.03       # fewer threads are kept when within this fraction of the fastest (the noise of one run)
BLOCKS, BLOCK_S, BUDGET_S = 12, 0.05, 3.0   # interleaved blocks: ~1.2 s for fog-small, ~3 s for fog-1st-place


def thread_counts(budget: int | None = None) -> list[int]:
    """1..N intra-op threads to measure: N = min(cores, MAX_THREADS, `budget` when given)."""
    most = min(os.cpu_count() or 1, MAX_THREADS, budget or MAX_THREADS)
    return list(range(1, max(1, most) + 1))


def choose_threads(latency_ms: dict[str, float], margin: float = MARGIN) -> dict:
    """The cap from measured {threads (as text): wall ms per call}: the fewest threads within `margin` of the
    fastest (never more threads than were measured), with a reason quoting the figures."""
    if not latency_ms:
        raise ValueError("choose_threads needs at least one measured thread count")
    fastest = min(latency_ms.values())
    threads = min(int(k) for k, ms in latency_ms.items() if ms <= fastest * (1 + margin))
    figures = ", ".join(f"{k} thread{'s' if int(k) > 1 else ''} {ms:.3f} ms" for k, ms in latency_ms.items())
    return {"threads": threads, "latency_ms": dict(latency_ms), "margin": margin,
            "reason": f"{threads} thread{'s' if threads > 1 else ''}: {figures} (wall median per call, interleaved; "
                      f"the fewest threads within {margin:.0%} of the fastest)"}


def measure_threads(open_at: Callable[[int], object], example, budget: int | None = None) -> dict:
    """Time the engine `open_at(threads)` returns at each of thread_counts(budget), interleaved on `example`, and
    choose the cap (choose_threads). The one measuring function of export and bench."""
    engines = {}
    try:
        for k in thread_counts(budget):
            engines[str(k)] = open_at(k)
        timings = interleaved({k: (lambda e=e: e.infer(example)) for k, e in engines.items()},
                              blocks=BLOCKS, block_s=BLOCK_S, budget_s=BUDGET_S)
    finally:
        for engine in engines.values():
            engine.close()
    return choose_threads({k: 1e3 * t.median for k, t in timings.items()})


def bundle_thread_cap(p) -> dict:
    """{role: cap} for the models the export `p` (an ExportPipeline past its cpu plan) ships for onnxruntime: the
    one the device opens by default (the bundle's precision) and the fp32 model, each engine opened as the bundle
    will open it and timed here; the manifest's `onnxruntime.thread_cap`."""
    default = p.precision if p.precision in ("fp32", "int8") else "fp32"
    settings = onnxruntime_section(p)
    where = f"{platform.machine()}, {os.cpu_count()} cores"
    caps = {}
    for role in dict.fromkeys((default, "fp32")):
        path = p.work / (p.int8_file if role == "int8" else FP32_FILE)
        cap = measure_threads(lambda k: open_role(p.work, settings, role, path, k), p.ver_batches[0])
        caps[role] = {**cap, "measured_on": f"the export machine ({where}); re-export on the device's class of CPU "
                                            "for its own figures"}
    return caps


def describe(caps: dict) -> str:
    """"thread cap: int8 1 thread, fp32 2 threads" for the export's step line."""
    return "thread cap: " + ", ".join(f"{role} {cap['reason'].split(':')[0]}" for role, cap in caps.items())
