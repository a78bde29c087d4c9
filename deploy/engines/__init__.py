"""Inference engines behind one small interface (load once, `infer` many times).

An `Engine` owns pre-allocated input and output buffers: `infer(x)` copies `x` into the input buffer (or skips the
copy when `x` *is* `engine.input_buffer`, which lets the stream write a window straight into it) and returns the
output buffer. The returned array is reused by the next call: copy it if you keep it.

Backends are imported lazily, so `import deploy.engines` costs nothing and never needs tensorrt.
"""
from __future__ import annotations

import importlib.util
import logging
from typing import Protocol, runtime_checkable

import numpy as np

from deploy.errors import BundleError, FogError

log = logging.getLogger("deploy.engines")

BACKENDS = ("auto", "onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")


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


def resolve_precision(bundle, precision: str | None) -> str:
    precision = precision or bundle.manifest.get("precision") or "fp32"
    if precision not in PRECISIONS:
        raise FogError(f"precision {precision!r} is not one of {PRECISIONS}; pick one the bundle carries "
                       f"(models: {sorted(k for k, v in bundle.manifest['models'].items() if v)})")
    return precision


def onnxruntime_precision(bundle, requested: str | None) -> str:
    """What onnxruntime runs when no precision is asked for.

    A bundle for a TensorRT target names the precision TensorRT should run (often int8). Its int8 graph is laid out for
    TensorRT (recurrence unrolled into thousands of Q/DQ nodes), which onnxruntime on a CPU runs several times slower
    than the fused fp32 graph (docs/bench.md), so without TensorRT the fp32 graph runs unless int8 is asked for.
    A `cpu` target's precision was chosen for onnxruntime at export, and is kept.
    """
    if requested:
        return resolve_precision(bundle, requested)
    chosen = resolve_precision(bundle, None)
    if bundle.manifest.get("target", {}).get("runtime", "tensorrt") == "tensorrt" and chosen != "fp32" \
            and bundle.path("fp32") is not None:
        log.info("bundle precision %s is for TensorRT; onnxruntime runs the faster fused fp32 graph "
                 "(ask for precision int8 to run the Q/DQ graph)", chosen)
        return "fp32"
    return chosen


def onnx_for(bundle, precision: str, *, cpu: bool) -> tuple[str, "object"]:
    """The ONNX file to run at `precision`: (precision actually used, path).

    On CPU an fp16 graph is slower than fp32 (no fp16 kernels), so onnxruntime runs the fp32 model instead.
    """
    if cpu and precision == "fp16":
        log.info("fp16 requested on onnxruntime CPU: running the fp32 model (CPU has no fp16 kernels)")
        precision = "fp32"
    path = bundle.path(precision)
    if path is None:
        fallback = bundle.path("fp32")
        if fallback is None:
            raise BundleError(f"{bundle.folder}: the manifest lists no '{precision}' or 'fp32' model; "
                              "re-export the bundle")
        log.warning("bundle has no %s model; running fp32 instead", precision)
        return "fp32", fallback
    return precision, path


def open_engine(bundle, backend: str = "auto", precision: str | None = None, **options) -> Engine:
    """Open the bundle's model on `backend` ('auto' prefers TensorRT when it imports, else onnxruntime).

    `options` go to the backend (onnxruntime: `threads`; tensorrt: `cache_dir`).
    """
    if backend not in BACKENDS:
        raise FogError(f"backend {backend!r} is not one of {BACKENDS}")
    if backend == "auto":
        backend = "tensorrt" if _tensorrt_usable() else "onnxruntime"
        log.info("backend auto -> %s", backend)
    if backend == "tensorrt":
        from deploy.engines.tensorrt import TensorRTEngine
        return TensorRTEngine.from_bundle(bundle, resolve_precision(bundle, precision), **options)
    from deploy.engines.onnxruntime import OnnxRuntimeEngine
    return OnnxRuntimeEngine.from_bundle(bundle, onnxruntime_precision(bundle, precision), **options)
