"""ONNX Runtime on CPU, tuned for one small static-shape model called many times a second.

Tuning: a fixed thread count (intra-op = cores unless told), all graph optimizations but one (below), sequential
execution, and I/O binding to pre-allocated buffers so each `infer` allocates nothing: the input OrtValue wraps
`input_buffer` and ONNX Runtime writes the result straight into `output_buffer`.

Measured on the bundled default (fog-small, docs/bench.md "Where onnxruntime spends its time"): ONNX Runtime's
SkipLayerNormFusion turns each residual Add + LayerNormalization into its contrib SkipLayerNormalization, whose CPU
kernel is 2.5x slower than the pair it replaces at these shapes (72 vs 29 us at (128, 1, 64), onnxruntime 1.31);
disabling that one fusion makes the whole model 12-16 % faster. The model file is untouched (TensorRT gets the same
graph); an onnxruntime that does not know the name ignores it.

A bundle whose manifest names a staged plan for the model (`onnxruntime.staged`, the cpu target's dynamic plan) runs
as stages instead, the two directions of each LSTM side by side (deploy.engines.staged).
"""
from __future__ import annotations

import logging
import os

import numpy as np

from deploy.engines.precision import onnx_for
from deploy.engines.staged import StagedEngine, check_plan
from deploy.errors import BundleError
from deploy.lazy import lazy_import, require

log = logging.getLogger("deploy.engines.onnxruntime")

# Graph fusions that make this CPU path slower (measured; see the module docstring).
DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)


onnxruntime = lazy_import("onnxruntime", "device", "the onnxruntime engine")


def _static_shape(arg, path) -> tuple[int, ...]:
    shape = tuple(arg.shape)
    if not all(isinstance(d, int) and d > 0 for d in shape):
        raise BundleError(f"{path}: {arg.name} has a dynamic shape {shape}; bundles carry static shapes "
                          "(re-export with `toolkit export`)")
    return shape


class OnnxRuntimeEngine:
    backend = "onnxruntime"

    def __init__(self, model_path, *, threads: int | None = None, precision: str = "fp32",
                 optimized_model_path=None, preoptimized: bool = False):
        """`optimized_model_path`: also write the graph ONNX Runtime actually runs there (for inspection).
        `preoptimized`: the file is a graph ONNX Runtime already optimized at export (the manifest's
        `onnxruntime.preoptimized`): load it as it is, without redoing the optimizations."""
        ort = require(onnxruntime)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or os.cpu_count() or 1)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_DISABLE_ALL if preoptimized
                                         else ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        opts.log_severity_level = 3
        if optimized_model_path is not None:
            opts.optimized_model_filepath = str(optimized_model_path)
        try:
            self.session = ort.InferenceSession(str(model_path), sess_options=opts, providers=["CPUExecutionProvider"],
                                                disabled_optimizers=list(DISABLED_OPTIMIZERS))
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise BundleError(f"{model_path}: onnxruntime cannot load this model ({exc}); "
                              "re-export the bundle") from None
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
    def from_bundle(cls, bundle, precision: str, threads: int | None = None, **_ignored):
        """The engine for the bundle's `precision` model: its stages (deploy.engines.staged) when the manifest's
        `onnxruntime.staged` names that role, else one session on its file."""
        used, path = onnx_for(bundle, precision, cpu=True)
        settings = bundle.manifest.get("onnxruntime") or {}
        staged = (settings.get("staged") or {}).get(used)
        if staged:
            check_plan(bundle.folder, staged)
            engine = StagedEngine(bundle.folder, staged, threads=threads, precision=used,
                                  preoptimized=bool(staged.get("preoptimized")), disabled_optimizers=DISABLED_OPTIMIZERS)
        else:
            engine = cls(path, threads=threads, precision=used, preoptimized=used in settings.get("preoptimized", []))
        expected = bundle.manifest.get("input", {}).get("name")
        if expected and expected != engine.input_name:
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
