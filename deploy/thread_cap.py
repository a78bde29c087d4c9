"""The thread cap measured where the daemon runs: how many onnxruntime intra-op threads this bundle's engine profits
from on this machine.

Why here and not only at export: the export measures on the workstation (`onnxruntime.thread_cap` in the manifest,
toolkit.export.threads), which is another CPU, and often a busy one: there the cap is dropped when other processes
use the cores ("not capped: other processes used 1.71 cores"), though one thread measured faster. So at its first
start the daemon opens the bundle's own engine at 1..N threads (N = min(budget, cores, MAX_THREADS)), times a few
dozen inferences of each, interleaved (so a burst of other work hits every count alike), keeps the fewest threads
within MARGIN of the fastest, and writes the result beside its state (`thread_cap.json` in the folder of
`stream.state_file`). Later starts reuse it while the bundle digest, the graph, the thread budget and the machine
(architecture, cores, CPU model, onnxruntime version) are the same; anything else measures again. The manifest's
figure is only a hint, logged beside the device's.

The `thread_cap` setting: "measure" (the default; `true` is the same), "bundle" (the export's figure, no
measurement), "off" (`false`, --no-thread-cap: every thread of the budget) or a whole number (that many threads at
most, no measurement). Without a state file the measurement runs at each start and is not kept.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from deploy.engines import onnxruntime_graph, open_engine, resolve_backend
from deploy.errors import ConfigError
from deploy.lazy import lazy_import, require

onnxruntime = lazy_import("onnxruntime", "device", "the onnxruntime engine")

log = logging.getLogger("deploy.thread_cap")

MAX_THREADS = 4        # a Jetson's CPU cluster; more are not worth a start's seconds
MARGIN = 0.03          # fewer threads are kept when within this fraction of the fastest (the noise of one run)
ROUNDS = 24            # inferences per thread count ("a few dozen"), fewer for a slow model (BUDGET_S)
MIN_ROUNDS = 5
BUDGET_S = 3.0         # the measurement's share of a start, about
FILE = "thread_cap.json"
clock = time.perf_counter   # what the measurement reads (a test puts a virtual clock here)
MODES = ("measure", "bundle", "off")


def check_setting(value, name: str = "thread_cap"):
    """The `thread_cap` setting: "measure" | "bundle" | "off" | a whole number >= 1 (true = measure, false = off)."""
    if value is True:
        return "measure"
    if value is False:
        return "off"
    if isinstance(value, int) and value >= 1:
        return value
    if isinstance(value, str) and value in MODES:
        return value
    raise ConfigError(f"{name} = {value!r}: use \"measure\" (time 1..N threads on this device at first start and keep "
                      "the fastest), \"bundle\" (the export's figure), \"off\" (every thread of the budget) or a "
                      "whole number of threads")


def fewest_within(latency_ms: dict, margin: float = MARGIN) -> int:
    """The fewest threads whose time is within `margin` of the fastest ({threads: ms}, keys int or text): the one
    rule of export's and the device's caps."""
    fastest = min(latency_ms.values())
    return min(int(k) for k, ms in latency_ms.items() if ms <= fastest * (1 + margin))


def machine() -> dict:
    """What makes one machine's figures another's: architecture, cores, CPU model, onnxruntime's version."""
    return {"arch": platform.machine(), "cores": os.cpu_count(), "cpu": _cpu_model(),
            "onnxruntime": require(onnxruntime).__version__}


def _cpu_model() -> str:
    for path, keys in (("/proc/device-tree/model", None), ("/proc/cpuinfo", ("model name", "Hardware", "CPU part"))):
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            continue
        if keys is None:
            return text.strip("\x00\n ")
        for line in text.splitlines():
            if line.split(":")[0].strip() in keys:
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def counts(budget: int | None) -> list[int]:
    """1..N threads to time: N = min(the budget, the cores, MAX_THREADS)."""
    most = min(int(budget or os.cpu_count() or 1), os.cpu_count() or 1, MAX_THREADS)
    return list(range(1, max(1, most) + 1))


def time_interleaved(engines: dict, example, timer=None, rounds: int | None = None) -> dict[int, float]:
    """{threads: median ms per inference}: one warm-up each, then rounds in which every engine runs once, the order
    rotating. `rounds` defaults to ROUNDS, fewer when the warm-ups say that would take more than BUDGET_S.
    `timer` (default `clock`) is injectable: tests count on a virtual clock."""
    timer = timer or clock
    order = list(engines)
    first = {}
    for k in order:
        t0 = timer()
        engines[k].infer(example)
        first[k] = timer() - t0
    if rounds is None:
        one_round = sum(first.values())
        rounds = max(MIN_ROUNDS, min(ROUNDS, int(BUDGET_S / one_round) if one_round > 0 else ROUNDS))
    calls = {k: [] for k in order}
    for r in range(rounds):
        for k in order[r % len(order):] + order[:r % len(order)]:
            t0 = timer()
            engines[k].infer(example)
            calls[k].append(timer() - t0)
    return {k: 1e3 * statistics.median(v) for k, v in calls.items()}


class Kept:
    """The measurement kept in `folder/thread_cap.json`, valid for one bundle, graph, budget and machine."""

    def __init__(self, folder):
        self.path = Path(folder) / FILE if folder else None

    def load(self, identity: dict) -> dict | None:
        if self.path is None or not self.path.is_file():
            return None
        try:
            kept = json.loads(self.path.read_text())
        except (OSError, ValueError):
            log.warning("%s is unreadable: measuring the thread cap again", self.path)
            return None
        return kept if isinstance(kept, dict) and kept.get("identity") == identity else None

    def save(self, identity: dict, threads: int, latency_ms: dict) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"identity": identity, "threads": threads, "latency_ms": latency_ms,
                                       "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=2) + "\n")
            tmp.replace(self.path)
        except OSError as exc:
            log.warning("could not keep the thread cap in %s (%s): it is measured again at the next start",
                        self.path, exc)


def choose(open_at, budget: int | None, identity: dict, folder, hint: int | None = None, timer=None,
           example=None):
    """(the engine to run, what was decided as a sentence): the kept figure for this identity when there is one;
    else each count opened with `open_at(threads)`, timed interleaved, the fewest within MARGIN of the fastest kept
    (and written to `folder`), the others closed."""
    kept = Kept(folder)
    options = counts(budget)
    found = kept.load(identity)
    if found is not None and found.get("threads") in options:
        return open_at(found["threads"]), (f"measured on this device at {found.get('measured_at', '?')}, kept in "
                                           f"{kept.path}")
    if len(options) == 1:
        return open_at(1), "a budget of one"
    engines = {k: open_at(k) for k in options}
    try:
        x = example if example is not None else np.random.default_rng(0).standard_normal(
            next(iter(engines.values())).input_shape).astype(np.float32)
        latency = time_interleaved(engines, x, timer)
        threads = fewest_within(latency)
    except BaseException:
        for engine in engines.values():
            engine.close()
        raise
    for k, engine in engines.items():
        if k != threads:
            engine.close()
    figures = ", ".join(f"{k}: {ms:.3f} ms" for k, ms in latency.items())
    kept.save(identity, threads, {str(k): ms for k, ms in latency.items()})
    where = f"kept in {kept.path}" if kept.path else "not kept: no stream.state_file"
    hint_note = f"; the export machine's figure was {hint}" if hint else ""
    return engines[threads], (f"measured on this device: {figures}, the fewest within {MARGIN:.0%} of the fastest; "
                              f"{where}{hint_note}")


def open_for_daemon(bundle, config: dict):
    """The daemon's engine with its intra-op threads decided as `config["thread_cap"]` says (see the module
    docstring); `engine.threads_reason` says how, for the log and the ready line."""
    backend, mode, budget = resolve_backend(config["backend"]), check_setting(config["thread_cap"]), config["threads"]

    def open_at(threads, cap=False):
        return open_engine(bundle, backend=backend, precision=config["precision"], threads=threads, thread_cap=cap)
    if backend != "onnxruntime" or mode in ("bundle", "off"):
        engine = open_at(budget, cap=mode == "bundle")
        reason = "the bundle's cap" if getattr(engine, "thread_cap", None) else "no cap" if backend == \
            "onnxruntime" else ""
    elif isinstance(mode, int):
        engine, reason = open_at(min(counts(budget)[-1], mode)), f"thread_cap = {mode}"
    else:
        graph = onnxruntime_graph(bundle, config["precision"])
        identity = {"bundle_digest": bundle.digest, "graph": graph, "budget": counts(budget)[-1],
                    "machine": machine()}
        state = (config.get("stream") or {}).get("state_file")
        engine, reason = choose(open_at, budget, identity, Path(state).parent if state else None,
                                hint=bundle.onnxruntime.cap(graph))
        log.info("intra-op threads: %d, %s", engine.threads, reason)
    engine.threads_reason = reason
    return engine
