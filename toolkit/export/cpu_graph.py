"""The float graph the cpu target's dynamic plan starts from: exact rewrites that onnxruntime's CPU runs faster.

Today one: torch's self-attention fused into onnxruntime's MultiHeadAttention (toolkit.export.attention_fusion).
Tried and dropped: Transposes that move only unit dimensions (batch 1) as Reshapes: no measurable gain (369 vs 367 ms
on fog-1st-place's dynamic plan at 1 thread), onnxruntime already handles them.

`rewrite_file` applies it, then runs the original and the rewritten graph in onnxruntime on one random input and
keeps the rewrite only when the outputs match (max |diff| <= TOLERANCE). TensorRT's graphs never get it.
"""
from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from deploy.lazy import lazy_import
from toolkit.export import attention_fusion

onnx = lazy_import("onnx", "workstation", "rewriting ONNX graphs")
ort = lazy_import("onnxruntime", "device", "checking the rewritten graph")

# The rewritten graph's outputs may differ from the original's by this much (float32 summation order).
TOLERANCE = 1e-4


def shapes_of(model) -> dict[str, list[int]]:
    """{tensor: dims} from ONNX shape inference (0 where a dim is unknown)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    return {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
            for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}


def rewrite_file(path, out_path) -> dict:
    """`path` rewritten into `out_path` when the rewrite applies and the outputs match; returns {"file": out_path or
    None (use `path` as it is), "attention_fused", "max_abs_diff", "why"}."""
    model = onnx.load(str(path))
    fused = attention_fusion.fuse(model, shapes_of(model))
    if not fused:
        return {"file": None, "attention_fused": 0, "why": "no torch self-attention to fuse"}
    onnx.save(model, str(out_path))
    diff = _max_diff(path, out_path)
    if diff > TOLERANCE:
        Path(out_path).unlink(missing_ok=True)
        return {"file": None, "attention_fused": 0, "max_abs_diff": diff,
                "why": f"the rewritten graph differs by {diff:.2e} (> {TOLERANCE:g}): kept as exported"}
    return {"file": str(out_path), "attention_fused": fused, "max_abs_diff": diff,
            "why": f"{fused} self-attention blocks fused into {attention_fusion.CONTRIB}.MultiHeadAttention "
                   f"(max |diff| {diff:.1e} against the graph as exported)"}


def _max_diff(original, rewritten) -> float:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    outputs = []
    for path in (original, rewritten):
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        arg = session.get_inputs()[0]
        x = np.random.default_rng(0).standard_normal([d if isinstance(d, int) else 1 for d in arg.shape])
        outputs.append(session.run(None, {arg.name: x.astype(np.float32)})[0])
    return float(np.abs(outputs[0] - outputs[1]).max())


@contextmanager
def rewritten(path):
    """(the graph to quantize from, the rewrite's info) for the float graph at `path`: the rewritten copy, in a
    temporary folder removed on exit, or `path` itself when nothing was rewritten."""
    with tempfile.TemporaryDirectory(prefix="fog-cpu-graph-") as folder:
        info = rewrite_file(path, Path(folder) / Path(path).name)
        yield Path(info["file"] or path), {"applied": info["file"] is not None,
                                           **{k: v for k, v in info.items() if k != "file"}}
