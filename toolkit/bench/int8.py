"""An INT8 (explicit Q/DQ) ONNX of a preset for benchmarking, when no bundle provides one.

Speed does not depend on how good the ranges are, so max calibration on a few random windows is enough here; a
deployable INT8 model comes from `toolkit export` with real calibration data. The graph is the one TensorRT needs:
unrolled recurrence, explicit attention, Q/DQ on every GEMM input (models.qat).
"""
from __future__ import annotations

from pathlib import Path

from deploy.lazy import lazy_import
from toolkit.export.onnx import export_like_bundle

torch = lazy_import("torch", "workstation", "an INT8 graph for the bench")
qat = lazy_import("models.qat", "workstation", "an INT8 graph for the bench")


def export_int8(model, example, path) -> Path:
    batch, seq_len = example.shape[0], example.shape[-1]
    variant = qat.to_qat(model, batch_size=batch, seq_len=seq_len).eval()
    generator = torch.Generator().manual_seed(0)
    qat.calibrate_max(variant, [torch.randn(example.shape, generator=generator) for _ in range(2)])
    return export_like_bundle(variant, example, path)
