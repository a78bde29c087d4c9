"""The timing harness of `toolkit bench` and `toolkit export --precision fastest`: warm-up, interleaved blocks,
robust statistics, peak memory, and the one seam to the device's onnxruntime engine. It sits below both rooms
(toolkit.bench and toolkit.export import it; it imports neither).

Why CPU time for the normalized figure: with one thread, onnxruntime and torch run on the calling thread, so
`time.thread_time` counts the cycles the model itself used and nothing of the time the OS gave to other processes.
On a shared machine that removes preemption, the largest noise; what stays (caches and memory bandwidth shared
with neighbours) the reference workload absorbs. Wall time is still what the latency figures report.

Why interleaved blocks: on a shared machine the speed of the CPU drifts by tens of percent within seconds. Timing
the model and a fixed reference workload in alternating short blocks exposes both to the same drift, so the ratio
(the *normalized latency*) stays steady even when the raw milliseconds do not. Per block we keep the median of many
short repetitions (robust to a single preemption), and the ratio of the model's and the reference's block medians;
the figure reported is the median of those per-block ratios.
"""
from __future__ import annotations

import ctypes
import gc
import os
import resource
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

from deploy.engines.onnxruntime import OnnxRuntimeEngine

Work = Callable[[], object]
BUDGET_S = 3.0    # timed seconds per workload in a head-to-head (the regression protocol's budget per backend)


@dataclass
class Timing:
    """Per-call wall times (seconds) of one workload, and the median of each block."""

    calls: list[float] = field(default_factory=list)
    block_medians: list[float] = field(default_factory=list)
    cpu_calls: list[float] = field(default_factory=list)          # thread CPU time of the same calls
    cpu_block_medians: list[float] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        return percentile(self.calls, q)

    @property
    def median(self) -> float:
        return statistics.median(self.calls)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_calls)

    def summary_ms(self) -> dict:
        """Wall-clock median/p90/p99 (what a caller waits) and the thread-CPU median (what one call costs)."""
        return {"median_ms": 1e3 * self.median, "p90_ms": 1e3 * self.percentile(90),
                "p99_ms": 1e3 * self.percentile(99), "cpu_median_ms": 1e3 * self.cpu_median, "calls": len(self.calls)}


def percentile(values, q: float) -> float:
    """Linear-interpolated percentile (numpy's default), without needing numpy here."""
    data = sorted(values)
    if not data:
        raise ValueError("no values")
    pos = (len(data) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def time_calls(work: Work, reps: int) -> tuple[list[float], list[float]]:
    """Wall and thread-CPU seconds of `reps` calls."""
    wall, cpu = [], []
    for _ in range(reps):
        start, start_cpu = time.perf_counter(), time.thread_time()
        work()
        cpu.append(time.thread_time() - start_cpu)
        wall.append(time.perf_counter() - start)
    return wall, cpu


def warm_up(work: Work, calls: int = 2, seconds: float = 0.2) -> float:
    """First calls pay for allocation, kernel selection and caches; never time them. Returns the fastest warm-up
    call (seconds): the last calls are already warm, and the fastest is not one the OS preempted."""
    work()  # the cold call: not even a candidate for the fastest
    deadline = time.perf_counter() + seconds
    fastest = float("inf")
    for i in range(1, max(calls, 2) * 100):
        fastest = min(fastest, time_calls(work, 1)[0][0])
        if i >= calls - 1 and time.perf_counter() >= deadline:
            break
    return fastest


def reps_for(one_call_s: float, budget_s: float, min_reps: int = 1, max_reps: int = 200) -> int:
    """How many calls of `one_call_s` seconds fit in a block of `budget_s`."""
    return max(min_reps, min(max_reps, int(budget_s / max(one_call_s, 1e-6))))


def interleaved(workloads: dict[str, Work], blocks: int, block_s: float = 0.05,
                reps: dict[str, int] | None = None, budget_s: float | None = None,
                min_blocks: int = 5) -> dict[str, Timing]:
    """Time every workload in `blocks` alternating blocks of about `block_s` seconds each.

    The order inside a block rotates so that no workload always runs right after the same other one. With
    `budget_s`, a workload slower than a block (one call per block) gets fewer blocks, never fewer than
    `min_blocks`: a 1.5 s model still gets a median over five blocks, in about ten seconds.
    """
    names = list(workloads)
    reps = dict(reps or {})
    one_block = 0.0
    for name in names:
        fastest = warm_up(workloads[name])
        reps.setdefault(name, reps_for(fastest, block_s))
        one_block += reps[name] * fastest
    if budget_s is not None:
        blocks = max(min_blocks, min(blocks, int(budget_s / max(one_block, 1e-6))))
    timings = {name: Timing() for name in names}
    for b in range(blocks):
        order = names[b % len(names):] + names[:b % len(names)]
        for name in order:
            wall, cpu = time_calls(workloads[name], reps[name])
            t = timings[name]
            t.calls.extend(wall)
            t.block_medians.append(statistics.median(wall))
            t.cpu_calls.extend(cpu)
            t.cpu_block_medians.append(statistics.median(cpu))
    return timings


def block_ratios(model: Timing, reference: Timing, cpu: bool = True) -> list[float]:
    """Per block: model block median / reference block median (CPU time by default, see above)."""
    if cpu:
        return [m / r for m, r in zip(model.cpu_block_medians, reference.cpu_block_medians)]
    return [m / r for m, r in zip(model.block_medians, reference.block_medians)]


def normalized(model: Timing, reference: Timing, cpu: bool = True) -> float:
    """Median over blocks of the per-block ratios: the normalized latency."""
    return statistics.median(block_ratios(model, reference, cpu))


# --- memory -------------------------------------------------------------------------------------------------

_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"


def _status_kb(key: str) -> int | None:
    try:
        with open(_STATUS) as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakMemory:
    """Peak resident memory added while the block runs (MiB), as the OS sees it (numpy, torch and onnxruntime
    allocate outside Python, so tracemalloc would miss them).

    On Linux the process's high-water mark (VmHWM) is reset at entry (writing 5 to /proc/self/clear_refs), so
    each backend's peak is its own. Elsewhere we fall back to ru_maxrss, which only grows: then the figure is
    an upper bound and `exact` is False.
    """

    def __enter__(self) -> "PeakMemory":
        _release_freed_memory()
        self.exact = False
        try:
            with open(_CLEAR_REFS, "w") as fh:
                fh.write("5")
            self.exact = _status_kb("VmHWM") is not None
        except OSError:
            pass
        self.start_kb = _status_kb("VmRSS") or _maxrss_kb()
        self.peak_mib = None
        return self

    def __exit__(self, *exc) -> None:
        peak_kb = _status_kb("VmHWM") if self.exact else _maxrss_kb()
        self.peak_mib = max(0.0, (peak_kb - self.start_kb) / 1024.0)


def _release_freed_memory() -> None:
    """Hand memory freed earlier back to the OS (glibc keeps it), so a backend that reuses it, e.g. onnxruntime
    loading weights into space an earlier onnx.load freed, still shows as growth."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the figure may then be a lower bound
        pass


def _maxrss_kb() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss // 1024 if os.uname().sysname == "Darwin" else rss


# --- the device's onnxruntime engine, timed -------------------------------------------------------------------

def onnxruntime_engine(path, threads: int | None):
    """The one seam to onnxruntime: the device's own engine (fixed threads, I/O binding)."""
    return OnnxRuntimeEngine(path, threads=threads)


def onnx_head_to_head(paths: dict, example, threads: int = 1, blocks: int = 8) -> dict[str, float]:
    """Median ms per call of ONNX files on the device's onnxruntime engine, interleaved (thread CPU time at one
    thread, else wall). `toolkit export --precision fastest` decides the cpu target's precision from this."""
    runners = {}
    for name, path in paths.items():
        engine = onnxruntime_engine(path, threads)
        runners[name] = (lambda e: lambda: e.infer(example))(engine)
    timings = interleaved(runners, blocks=blocks, block_s=0.05, budget_s=BUDGET_S)
    return {name: 1e3 * (t.cpu_median if threads == 1 else t.median) for name, t in timings.items()}
