"""A thread cap measured at export: how many intra-op threads the engine the device opens actually profits from.

Why: at batch 1, small graphs are made of tiny ops, and onnxruntime's second intra-op thread can cost more in
hand-offs than it brings: fog-small's dynamic plan ran 1.13 ms at 1 thread and ~1.48 ms at 2 on a quiet 2-core
machine (docs/bench.md, "Quiet machine, after the merge"), while the large preset's stages need both cores.
So the export times that engine (deploy.engines.onnxruntime.open_role: the whole graph or its stages, as the bundle
will open it) at 1..N threads, interleaved, and records the fewest threads within MARGIN of the fastest in the
manifest (`onnxruntime.thread_cap.<role>`). That figure is a hint: the daemon measures its own at first start on
the device's CPU, by the same rule (deploy.thread_cap), and keeps it beside its state; `thread_cap = "bundle"`
makes the device use min(budget, this cap) instead (deploy.engines.onnxruntime). `toolkit bench` applies `measure_threads` to the backends it
re-exports, within its `--threads` budget, so bench and export decide the same way.

A busy machine cannot show what a thread brings: a second thread waiting for a core another process holds only
costs. Measured under load (2 cores, load 3-5 from other jobs), fog-1st-place's stages ran 600 ms at 1 thread and
622 ms at 2 (153 ms at 2 on the quiet machine, 247 at 1): a cap of 1 would have made the device 1.6x slower. So the
CPU other processes use during the measurement is measured too (/proc/stat less this process's own time); beyond
BUSY_CORES on average no cap is set (the most threads measured, as without a cap), and the reason says so.
"""
from __future__ import annotations

import os
import platform
import time
from typing import Callable

from deploy.contract import FP32_FILE
from deploy.engines.onnxruntime import open_role
from deploy.thread_cap import MARGIN, fewest_within
from toolkit.timing import interleaved

MAX_THREADS = 4     # a Jetson's CPU cluster / a small x86 box; more cores than this are not worth an export's seconds
BLOCKS, BLOCK_S, BUDGET_S = 12, 0.05, 3.0   # interleaved blocks: ~1.2 s for fog-small, ~3 s for fog-1st-place
BUSY_CORES = 0.25   # cores other processes may use on average while we measure before the figures are not trusted


def _cpu_seconds() -> tuple[float, float] | None:
    """(CPU seconds every process on the machine has used, CPU seconds of this process), None without /proc/stat."""
    try:
        with open("/proc/stat") as fh:
            ticks = [int(v) for v in fh.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
    except (OSError, ValueError):
        return None
    own = os.times()
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK"), own.user + own.system


class OtherProcesses:
    """`with OtherProcesses() as others:` ... `others.cores`: the cores other processes used on average meanwhile
    (None where the OS does not say)."""

    def __init__(self, clock=time.perf_counter):
        self.clock = clock

    def __enter__(self):
        self.start, self.wall, self.cores = _cpu_seconds(), self.clock(), None
        return self

    def __exit__(self, *exc) -> None:
        end, wall = _cpu_seconds(), self.clock() - self.wall
        if self.start and end and wall > 0:
            self.cores = max(0.0, ((end[0] - self.start[0]) - (end[1] - self.start[1])) / wall)


def thread_counts(budget: int | None = None) -> list[int]:
    """1..N intra-op threads to measure: N = min(cores, MAX_THREADS, `budget` when given)."""
    most = min(os.cpu_count() or 1, MAX_THREADS, budget or MAX_THREADS)
    return list(range(1, max(1, most) + 1))


def choose_threads(latency_ms: dict[str, float], margin: float = MARGIN, others_cores: float | None = None) -> dict:
    """The cap from measured {threads (as text): wall ms per call}: the fewest threads within `margin` of the
    fastest (never more threads than were measured), with a reason quoting the figures. When other processes used
    more than BUSY_CORES meanwhile (`others_cores`), the most threads measured: the figures cannot show a gain."""
    if not latency_ms:
        raise ValueError("choose_threads needs at least one measured thread count")
    figures = ", ".join(f"{k} thread{'s' if int(k) > 1 else ''} {ms:.3f} ms" for k, ms in latency_ms.items())
    # rounded once, as recorded: the reason quotes the recorded figure, so the cap re-derives from its own fields
    others_cores = None if others_cores is None else round(others_cores, 3)
    busy = others_cores is not None and others_cores > BUSY_CORES
    threads = max(int(k) for k in latency_ms) if busy else fewest_within(latency_ms, margin)
    plural = "s" if threads > 1 else ""
    reason = (f"{threads} thread{plural}, not capped: other processes used {others_cores:.2f} cores on average while "
              f"this was measured ({figures}); a thread waiting for a busy core shows nothing of what it brings: "
              "the device measures its own at first start (deploy.thread_cap)") if busy else \
        (f"{threads} thread{plural}: {figures} (wall median per call, interleaved; the fewest threads within "
         f"{margin:.0%} of the fastest)")
    return {"threads": threads, "latency_ms": dict(latency_ms), "margin": margin, "reason": reason,
            "others_cores": others_cores}


def measure_threads(open_at: Callable[[int], object], example, budget: int | None = None) -> dict:
    """Time the engine `open_at(threads)` returns at each of thread_counts(budget), interleaved on `example`, and
    choose the cap (choose_threads). The one measuring function of export and bench."""
    engines = {}
    try:
        for k in thread_counts(budget):
            engines[str(k)] = open_at(k)
        with OtherProcesses() as others:
            timings = interleaved({k: (lambda e=e: e.infer(example)) for k, e in engines.items()},
                                  blocks=BLOCKS, block_s=BLOCK_S, budget_s=BUDGET_S)
    finally:
        for engine in engines.values():
            engine.close()
    return choose_threads({k: 1e3 * t.median for k, t in timings.items()}, others_cores=others.cores)


def bundle_thread_cap(work, settings, precision: str, int8_file: str | None, example) -> dict:
    """{role: cap} for the models an export in the folder `work` ships for onnxruntime: the one the device opens by
    default (the bundle's `precision`) and the fp32 model, each engine opened as the bundle will open it (`settings`:
    the manifest's onnxruntime section so far) and timed on `example`; the manifest's `onnxruntime.thread_cap`."""
    default = precision if precision in ("fp32", "int8") else "fp32"
    where = f"{platform.machine()}, {os.cpu_count()} cores"
    caps = {}
    for role in dict.fromkeys((default, "fp32")):
        path = work / (int8_file if role == "int8" else FP32_FILE)
        cap = measure_threads(lambda k: open_role(work, settings, role, path, k), example)
        caps[role] = {**cap, "measured_on": f"the export machine ({where}); re-export on the device's class of CPU "
                                            "for its own figures"}
    return caps


def describe(caps: dict) -> str:
    """"thread cap: int8 1 thread, fp32 2 threads" for the export's step line."""
    return "thread cap: " + ", ".join(f"{role} {cap['reason'].split(':')[0]}" for role, cap in caps.items())
