"""ONNX Runtime on CPU, tuned for one small static-shape model called many times a second.

Tuning: a fixed thread count (intra-op = cores unless told), all graph optimizations but the ones measured slower
here (deploy.engines.session.device_settings), sequential execution, and I/O binding to pre-allocated buffers so
each `infer` allocates nothing: the input OrtValue wraps `input_buffer` and ONNX Runtime writes the result straight
into `output_buffer`.

A bundle whose manifest names a staged plan for the model (`onnxruntime.staged`, the cpu target's dynamic plan) runs
as stages instead, the two directions of each LSTM side by side (deploy.engines.staged).

Threads: `threads` given to `from_bundle` (and so to `open_engine` and the daemon) is a *budget*. A bundle whose
manifest carries a thread cap for the model's role (`onnxruntime.thread_cap.<role>`, measured by `toolkit export` on
the export machine: the fewest intra-op threads within a small margin of the fastest) runs at min(budget, cap):
on tiny ops a second thread costs more than it brings (fog-small's dynamic plan: 1.13 ms at 1 thread, ~1.48 ms at 2).
`thread_cap=False` ignores the cap; a bundle without one runs at the budget, as before. `engine.threads` is the
count the engine actually uses.
"""
from __future__ import annotations

import logging
import os

import numpy as np

from deploy.engines.precision import onnx_for
from deploy.engines.session import DEVICE_OPTIMIZERS_OFF, device_settings, open_session
from deploy.engines.staged import StagedEngine, check_plan
from deploy.errors import BundleError
from deploy.lazy import lazy_import, require

log = logging.getLogger("deploy.engines.onnxruntime")

# Graph fusions that make this CPU path slower (measured: deploy.engines.session).
DISABLED_OPTIMIZERS = DEVICE_OPTIMIZERS_OFF


onnxruntime = lazy_import("onnxruntime", "device", "the onnxruntime engine")


def _static_shape(arg, path) -> tuple[int, ...]:
    shape = tuple(arg.shape)
    if not all(isinstance(d, int) and d > 0 for d in shape):
        raise BundleError(f"{path}: {arg.name} has a dynamic shape {shape}; bundles carry static shapes "
                          "(re-export with `toolkit export`)")
    return shape


def threads_within(budget: int | None, cap: int | None) -> int:
    """The intra-op threads an engine uses: the budget (all cores when None), no more than the cap when there is one."""
    budget = int(budget or os.cpu_count() or 1)
    return min(budget, cap) if cap else budget


def open_role(folder, settings, role: str, path, threads: int | None, staged_ok: bool = True):
    """The engine the device runs for the model `role` of the bundle in `folder` whose manifest's `onnxruntime`
    section is `settings` (deploy.contract.runtime.OnnxRuntimeSection): its stages when `settings.staged` names the
    role (and `staged_ok`: the stages are cut from the bundle's own graph, not another batch size's), else one
    session on `path`. `toolkit export` times this very engine to measure the thread cap."""
    staged = settings.staged_plan(role) if staged_ok else None
    if staged:
        check_plan(folder, staged)
        return StagedEngine(folder, staged, threads=threads, precision=role,
                            preoptimized=bool(staged.get("preoptimized")), disabled_optimizers=DISABLED_OPTIMIZERS)
    return OnnxRuntimeEngine(path, threads=threads, precision=role,
                             preoptimized=role in settings.preoptimized)


class OnnxRuntimeEngine:
    backend = "onnxruntime"
    thread_cap = None   # the manifest's cap this engine honours (from_bundle), else None

    def __init__(self, model_path, *, threads: int | None = None, precision: str = "fp32",
                 optimized_model_path=None, preoptimized: bool = False):
        """`optimized_model_path`: also write the graph ONNX Runtime actually runs there (for inspection).
        `preoptimized`: the file is a graph ONNX Runtime already optimized at export (the manifest's
        `onnxruntime.preoptimized`): load it as it is, without redoing the optimizations."""
        ort = require(onnxruntime)
        self.threads = int(threads or os.cpu_count() or 1)
        settings = device_settings(self.threads, preoptimized)
        if optimized_model_path is not None:
            settings = settings.but(save_optimized_to=str(optimized_model_path))
        self.session = open_session(model_path, settings)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise BundleError(f"{model_path}: expected one input and one output, found "
                              f"{[i.name for i in inputs]} -> {[o.name for o in outputs]}")
        self.precision = precision
        self.model_path = model_path
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.input_shape = _static_shape(inputs[0], model_path)
        self.output_shape = _static_shape(outputs[0], model_path)
        self.input_buffer = np.zeros(self.input_shape, np.float32)
        self.output_buffer = np.zeros(self.output_shape, np.float32)
        self._binding = self.session.io_binding()
        self._binding.bind_ortvalue_input(self.input_name, ort.OrtValue.ortvalue_from_numpy(self.input_buffer))
        self._binding.bind_ortvalue_output(self.output_name, ort.OrtValue.ortvalue_from_numpy(self.output_buffer))

    @classmethod
    def from_bundle(cls, bundle, precision: str, threads: int | None = None, thread_cap: bool = True,
                    batch: int | None = None, **_ignored):
        """The engine for the bundle's `precision` model (open_role) at `threads` (a budget: all cores when None),
        no more than the manifest's measured thread cap for that model unless `thread_cap` is False; `batch`: the
        graph of that batch size (deploy.contract.batching), None: the bundle's own."""
        used, path = onnx_for(bundle, precision, cpu=True, batch=batch)
        settings = bundle.onnxruntime   # its thread caps checked as it is read, even when ignored
        cap = settings.cap(used)
        own = batch is None or batch == bundle.batching.sizes[0]
        engine = open_role(bundle.folder, settings, used, path, threads_within(threads, cap if thread_cap else None),
                           staged_ok=own)
        engine.thread_cap = cap if thread_cap else None
        if engine.thread_cap and engine.threads < threads_within(threads, None):
            log.info("%s: %d intra-op thread(s) of a budget of %d: the cap the export measured (thread_cap=False "
                     "ignores it)", used, engine.threads, threads_within(threads, None))
        expected = bundle.input.name
        if expected != engine.input_name:
            raise BundleError(f"{path}: input is named {engine.input_name!r}, manifest says {expected!r}; "
                              "re-export the bundle")
        return engine

    def infer(self, x: np.ndarray) -> np.ndarray:
        if x is not self.input_buffer:
            np.copyto(self.input_buffer, x, casting="same_kind")
        self.session.run_with_iobinding(self._binding)
        return self.output_buffer

    def close(self) -> None:
        self._binding = None
        self.session = None
