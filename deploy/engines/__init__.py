"""Inference engines behind one small interface (load once, `infer` many times).

An `Engine` owns pre-allocated input and output buffers: `infer(x)` copies `x` into the input buffer (or skips the
copy when `x` *is* `engine.input_buffer`, which lets the stream write a window straight into it) and returns the
output buffer. The returned array is reused by the next call: copy it if you keep it.

Which file and precision a backend runs is decided in `deploy.engines.precision`. The TensorRT backend is imported
when first asked for (it is the one that needs CUDA), so `import deploy.engines` never needs tensorrt.
"""
from __future__ import annotations

import importlib.util
import logging
from typing import Protocol, runtime_checkable

import numpy as np

from deploy.engines.onnxruntime import OnnxRuntimeEngine
from deploy.engines.precision import PRECISIONS, onnx_for, onnxruntime_precision, resolve_precision
from deploy.errors import FogError
from deploy.offline import batch_infer  # noqa: F401  (its home is deploy.offline; kept importable here)
from deploy.lazy import lazy_import

tensorrt_backend = lazy_import("deploy.engines.tensorrt", "tensorrt", "the TensorRT engine")

log = logging.getLogger("deploy.engines")

BACKENDS = ("auto", "onnxruntime", "tensorrt")
__all__ = ["BACKENDS", "PRECISIONS", "Engine", "batch_infer", "check_precision", "open_engine", "onnx_for",
           "onnxruntime_graph", "onnxruntime_precision", "resolve_backend", "resolve_precision"]


@runtime_checkable
class Engine(Protocol):
    backend: str
    input_name: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    input_buffer: np.ndarray

    def infer(self, x: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


def _tensorrt_usable() -> bool:
    return importlib.util.find_spec("tensorrt") is not None


def open_engine(bundle, backend: str = "auto", precision: str | None = None, *, exact: bool = False,
                **options) -> Engine:
    """Open the bundle's model on `backend` ('auto' prefers TensorRT when it imports, else onnxruntime).

    A `precision` the backend cannot run here falls back to the fp32 graph (logged), unless `exact`: then it is
    refused before anything opens (`check_precision`). `options` go to the backend (onnxruntime: `threads`;
    tensorrt: `cache_dir`).
    """
    backend = resolve_backend(backend)
    if exact:
        check_precision(bundle, backend, precision)
    if backend == "tensorrt":
        return tensorrt_backend.TensorRTEngine.from_bundle(bundle, resolve_precision(bundle, precision), **options)
    return OnnxRuntimeEngine.from_bundle(bundle, onnxruntime_precision(bundle, precision), **options)


def resolve_backend(backend: str) -> str:
    """'auto' -> tensorrt when it imports, else onnxruntime; anything else checked."""
    if backend not in BACKENDS:
        raise FogError(f"backend {backend!r} is not one of {BACKENDS}")
    if backend == "auto":
        backend = "tensorrt" if _tensorrt_usable() else "onnxruntime"
        log.info("backend auto -> %s", backend)
    return backend


def check_precision(bundle, backend: str, precision: str | None) -> None:
    """Refuse a `precision` that `backend` would not run on this bundle (evaluate's and score's figures are labelled
    with the graph asked for: an int8 figure must be int8's), naming the graph that would run and why."""
    if not precision:
        return
    backend = resolve_backend(backend)
    if backend == "tensorrt":
        return                          # TensorRT builds the precision asked for (resolve_precision checks it)
    asked = resolve_precision(bundle, precision)
    if onnxruntime_graph(bundle, asked) == asked:
        return
    why = "onnxruntime on a CPU has no fp16 kernels" if asked == "fp16" else \
        f"the bundle carries no {asked} graph (it has {', '.join(sorted(bundle.models.present))})"
    raise FogError(f"precision {asked}: {why}, so its fp32 graph would run instead; ask for fp32 (or give no "
                   "precision: the result names the graph used)"
                   + (", or run it where TensorRT is (--backend tensorrt)" if asked == "fp16" else
                      f", or export with --precision {asked}"))


def onnxruntime_graph(bundle, precision: str | None) -> str:
    """The graph onnxruntime runs for `precision` on this bundle (deploy.engines.precision.onnx_for's choice, said
    without opening anything): fp32 where the bundle lacks the graph or a CPU lacks the kernels (fp16)."""
    used = onnxruntime_precision(bundle, precision)
    return "fp32" if used == "fp16" or bundle.path(used) is None else used
