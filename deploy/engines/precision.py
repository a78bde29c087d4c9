"""Which model file a backend runs, and at which precision: the bundle names a precision for its target, and a CPU
falls back where its kernels would be slower."""
from __future__ import annotations

import logging

from deploy.errors import BundleError, FogError

log = logging.getLogger("deploy.engines")

PRECISIONS = ("fp32", "fp16", "int8")


def resolve_precision(bundle, precision: str | None) -> str:
    precision = precision or bundle.precision
    if precision not in PRECISIONS:
        raise FogError(f"precision {precision!r} is not one of {PRECISIONS}; pick one the bundle carries "
                       f"(models: {sorted(bundle.models.present)})")
    return precision


def onnxruntime_precision(bundle, requested: str | None) -> str:
    """What onnxruntime runs when no precision is asked for.

    A bundle for a TensorRT target names the precision TensorRT should run (often int8). Without TensorRT its fp32
    graph runs unless int8 is asked for, for the reason the cpu target runs fp32 (deploy.contract.CPU_FP32_REASON).
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


def onnx_for(bundle, precision: str, *, cpu: bool, batch: int | None = None) -> tuple[str, "object"]:
    """The ONNX file to run at `precision` (and at batch size `batch`, one the manifest's `batching` lists; None:
    the bundle's own graphs): (precision actually used, path).

    On CPU an fp16 graph is slower than fp32 (no fp16 kernels), so onnxruntime runs the fp32 model instead.
    """
    if cpu and precision == "fp16":
        log.info("fp16 requested on onnxruntime CPU: running the fp32 model (CPU has no fp16 kernels)")
        precision = "fp32"
    path_of = bundle.path if batch is None else (lambda role: bundle.path_at(role, batch))
    path = path_of(precision) if bundle.path(precision) is not None else None
    if path is None:
        fallback = path_of("fp32") if bundle.path("fp32") is not None else None
        if fallback is None:
            raise BundleError(f"{bundle.folder}: the manifest lists no '{precision}' or 'fp32' model; "
                              "re-export the bundle")
        log.warning("bundle has no %s model; running fp32 instead", precision)
        return "fp32", fallback
    return precision, path
