"""Windows of one stream or of many, encoded into the engine's input and run together at the batch sizes the bundle
was exported for.

Triton's sequence batcher, in the small: per-stream state stays with each stream (deploy.stream.Pipeline, one per
wearer), the model is one shared `EngineSet`, and a `WindowBatcher` collects the windows that fall due, encodes each
straight into the next row of a staging batch, and runs them when the owner of the loop says so (`run`: the gateway
after taking in what arrived) or when the batch is full. Each row's output goes back to the stream that submitted it,
in submission order (`owner.window_done(row, engine_s)`).

Why a wearer's output never depends on who else is connected: every op of the bundled graphs works within its batch
row, so row i of a batch-B call equals, bit for bit, the same window run at batch 1 (export checks it for every batch
size, `toolkit.export.batches`; tests/test_batching.py checks that padding and the other rows change nothing). The
staged rows that pad a partial batch are zeroed.

The single-wearer daemon runs this same code: an `EngineSet` of its one engine, `immediate=True` (each window runs as
soon as it is submitted), and the staging batch is the engine's own input buffer (no copy).
"""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from deploy.errors import FogError
from deploy.preprocess import PreprocessSpec, patchify, window_frame, zscore_


class WindowEncoder:
    """(W, 3) prepared window -> one row of the engine input, in place, equal to `patchify`. Keeps no state between
    windows (only scratch), so one encoder serves every stream of a spec."""

    def __init__(self, spec: PreprocessSpec, row_shape: tuple):
        self.spec = spec
        # patchify with these settings only reorders
        layout_only = replace(spec, normalization="running", scale=1.0, gravity_align=False, horizontal="sensor",
                              min_std=0.0)
        order = patchify(np.arange(spec.window * 3, dtype=np.float64).reshape(1, spec.window, 3), layout_only)
        if order.size != int(np.prod(row_shape)):
            raise FogError(f"the model input has shape {tuple(row_shape)} per window, the bundle's preprocess spec "
                           f"makes {order.shape[1:]}; the manifest and the model disagree (re-export the bundle)")
        # work per axis on a (3, W) float64 copy: reductions along contiguous memory are several times faster
        flat = order.reshape(-1).astype(np.intp)            # index into the (W, 3) window, row-major
        self.order = (flat % 3) * spec.window + flat // 3   # the same element in the (3, W) copy
        self.scratch = np.zeros((3, spec.window))
        self.flat_scratch = self.scratch.reshape(-1)
        self.mean, self.inv_std = np.zeros((3, 1)), np.zeros((3, 1))   # scratch for deploy.preprocess.zscore_
        self.rotated = np.zeros((3, spec.window)) if spec.gravity_align else None
        self._self_check(row_shape)

    def encode(self, window: np.ndarray, target: np.ndarray) -> None:
        """`window`: (W, 3) prepared samples (any float dtype, e.g. a view into a ring buffer); `target`: one
        C-contiguous float32 row of an engine input (written in full)."""
        s = self.scratch
        np.copyto(s, window.T)
        if self.rotated is not None:   # as patchify: the window's own frame (gravity on -AccV ...), before the z-score
            np.matmul(window_frame(s, self.spec), s, out=self.rotated)
            np.copyto(s, self.rotated)
        if self.spec.normalization == "window":
            zscore_(s, 1, self.mean, self.inv_std, self.spec.min_std)
        if self.spec.scale != 1.0:
            np.divide(s, self.spec.scale, out=s)
        # reorder and cast to the engine's float32 in one pass; mode='clip' writes straight into the target
        np.take(self.flat_scratch, self.order, out=target.reshape(-1), mode="clip")

    def _self_check(self, row_shape) -> None:
        window = np.random.default_rng(0).normal(size=(self.spec.window, 3)).astype(np.float32)
        window[:, 1] = 0.25  # a flat axis exercises the zero-std rule
        target = np.zeros(row_shape, np.float32)
        self.encode(window, target)
        expected = patchify(window[None], self.spec).reshape(-1)
        worst = float(np.max(np.abs(target.reshape(-1) - expected)))
        if worst > 1e-5:
            raise FogError(f"streaming encoder differs from deploy.preprocess.patchify by {worst:g}; "
                           "this is a bug, please report it")


class EngineSet:
    """One model's engines at several static batch sizes ({size: engine}); `plan(n)` is the cheapest sequence of
    calls that runs n windows (n <= the largest size), by the cost of one call of each size (`measure`, else the
    size itself: exact fits, never padding)."""

    def __init__(self, engines: dict, costs: dict | None = None):
        if not engines:
            raise FogError("no engine to run windows on")
        self.engines = {int(size): engine for size, engine in sorted(engines.items())}
        for size, engine in self.engines.items():
            if int(engine.input_shape[0]) != size:
                raise FogError(f"the engine for batch size {size} takes batches of {engine.input_shape[0]}; "
                               "re-export the bundle")
        first = self.engines[self.sizes[0]]
        self.row_shape = tuple(first.input_shape[1:])
        self.output_shape = (1, *tuple(first.output_shape[1:]))    # one window's output, batch axis first
        self.backend = getattr(first, "backend", "?")
        self.set_costs(costs or {size: float(size) for size in self.sizes})

    @property
    def sizes(self) -> list[int]:
        return list(self.engines)

    @property
    def largest(self) -> int:
        return self.sizes[-1]

    def __getitem__(self, size: int):
        return self.engines[size]

    def set_costs(self, costs: dict) -> None:
        """Costs of one call per size -> the cheapest plan for every n up to the largest size (a small DP)."""
        self.costs = {int(k): float(v) for k, v in costs.items()}
        best, first = [0.0] + [np.inf] * self.largest, [0] * (self.largest + 1)
        for n in range(1, self.largest + 1):
            for size in self.sizes:
                cost = self.costs[size] + best[max(0, n - size)]
                if cost < best[n]:
                    best[n], first[n] = cost, size
        self._plans = [[]]
        for n in range(1, self.largest + 1):
            self._plans.append([first[n]] + self._plans[max(0, n - first[n])])

    def plan(self, n: int) -> list[int]:
        """Batch sizes of the calls that run n windows, largest first."""
        return sorted(self._plans[n], reverse=True)

    def measure(self, repeats: int = 5) -> dict:
        """Time one call of each size (thread CPU time, median of `repeats` after one warm-up: the machine's other
        load does not count) and plan by it; returns {size: seconds}."""
        costs = {}
        for size, engine in self.engines.items():
            engine.infer(engine.input_buffer)
            runs = []
            for _ in range(repeats):
                started = time.thread_time()
                engine.infer(engine.input_buffer)
                runs.append(time.thread_time() - started)
            costs[size] = float(np.median(runs))
        self.set_costs(costs)
        return costs

    def describe(self) -> str:
        return ", ".join(f"batch {s}" + (f" {self.costs[s] * 1e3:.2f} ms" if self.costs[s] != s else "")
                         for s in self.sizes)

    def close(self) -> None:
        for engine in self.engines.values():
            getattr(engine, "close", lambda: None)()


class WindowBatcher:
    """Collects due windows of any number of streams into a staging batch and runs them on an EngineSet.

    `submit(owner, window)` encodes the window into the next staging row (running the batch first when it is full);
    `run()` runs what is staged and hands each row's output to its owner (`owner.window_done(row, engine_s)`, in
    submission order; `engine_s` is the call's engine time shared by its real rows). `immediate=True`: each window
    runs as soon as it is submitted (the single-wearer daemon)."""

    def __init__(self, engines, spec: PreprocessSpec, immediate: bool = False):
        self.engines = engines if isinstance(engines, EngineSet) else EngineSet({engines.input_shape[0]: engines})
        self.encoder = WindowEncoder(spec, self.engines.row_shape)
        self.immediate = immediate
        self.capacity = self.engines.largest
        # the largest engine's own input is the staging batch: a full batch (and every call at batch 1 of the
        # single-wearer daemon) runs without a copy
        self.staging = self.engines[self.capacity].input_buffer
        self.owners: list = [None] * self.capacity
        self.count = 0
        self.first_staged = 0.0     # when the oldest staged window was submitted (monotonic)
        self.calls = {size: 0 for size in self.engines.sizes}   # engine calls per batch size
        self.windows_run = 0
        self.padded_rows = 0

    @property
    def output_shape(self) -> tuple:
        return self.engines.output_shape

    def submit(self, owner, window: np.ndarray) -> None:
        if self.count == self.capacity:
            self.run()
        if self.count == 0:
            self.first_staged = time.monotonic()
        self.encoder.encode(window, self.staging[self.count])
        self.owners[self.count] = owner
        self.count += 1
        if self.immediate:
            self.run()

    def run(self) -> None:
        """Run every staged window; each owner gets its row's output (valid during the call: copy to keep it)."""
        n, self.count = self.count, 0
        start = 0
        for size in self.engines.plan(n) if n else ():
            take = min(size, n - start)
            engine = self.engines[size]
            batch = engine.input_buffer
            if batch is not self.staging or start:
                np.copyto(batch[:take], self.staging[start:start + take])
            if take < size:
                batch[take:] = 0.0     # padding: zeros, whatever was there before
                self.padded_rows += size - take
            started = time.perf_counter()
            y = engine.infer(batch)
            engine_s = (time.perf_counter() - started) / take
            self.calls[size] += 1
            self.windows_run += take
            for i in range(take):
                owner = self.owners[start + i]
                self.owners[start + i] = None
                owner.window_done(y[i:i + 1], engine_s)   # (1, ...): one window's output, batch axis first
            start += take

    flush = run   # what a stream calls when it needs every window it submitted settled (a segment's end)

    def describe(self) -> str:
        return self.engines.describe()
