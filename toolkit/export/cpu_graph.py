"""The float graph the cpu target's dynamic plan starts from: exact rewrites that onnxruntime's CPU runs faster.

- torch's self-attention fused into onnxruntime's MultiHeadAttention (toolkit.export.attention_fusion);
- a Transpose that moves only dimensions of size 1 is a Reshape, which copies nothing: at batch 1 every
  (length, 1, width) <-> (1, length, width) around the attentions and the LSTMs. onnxruntime runs them as
  transposes (fog-1st-place's encoder: 22 of them, 5.8 of 88 ms in its profile at 2 threads).

Measured on fog-1st-place's dynamic plan, quiet machine, pairs interleaved (docs/bench.md, "Fused attention"):
the fusion 1.02-1.12x for the whole graph at 2 threads, 1.01-1.03x for its stages, ~1.04x at 1 thread (under
load); the reshapes 1.03-1.05x more at 1 and 2 threads. fog-small at 1 thread: both 1.04-1.09x over the plain plan.

`rewrite_file` applies both, then runs the original and the rewritten graph in onnxruntime on one random input and
keeps the rewrite only when the outputs match (max |diff| <= TOLERANCE). TensorRT's graphs never get it.
"""
from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from deploy.lazy import lazy_import
from toolkit.export import attention_fusion, verify
from toolkit.export.checks import static_shapes

onnx = lazy_import("onnx", "workstation", "rewriting ONNX graphs")

# The rewritten graph's outputs may differ from the original's by this much (float32 summation order).
TOLERANCE = 1e-4


def unit_transposes_to_reshapes(model, shapes: dict[str, list[int]]) -> int:
    """Replace each Transpose whose non-unit dimensions keep their order by a Reshape to its output shape (the same
    bytes in the same order); returns how many."""
    replaced = 0
    for index, node in enumerate(list(model.graph.node)):
        dims = shapes.get(node.input[0]) if node.op_type == "Transpose" else None
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        if not dims or perm is None or 0 in dims or sorted(perm) != list(range(len(dims))):
            continue
        moved = [axis for axis in perm if dims[axis] != 1]
        if moved != sorted(moved):
            continue
        target = f"{node.output[0]}_as_shape"
        model.graph.initializer.append(onnx.numpy_helper.from_array(np.array([dims[a] for a in perm], np.int64),
                                                                    target))
        model.graph.node.remove(node)
        model.graph.node.insert(index, onnx.helper.make_node("Reshape", [node.input[0], target], list(node.output),
                                                             name=f"{node.name or node.output[0]}/as_reshape"))
        replaced += 1
    return replaced


def rewrite_file(path, out_path) -> dict:
    """`path` rewritten into `out_path` when a rewrite applies and the outputs match; returns {"file": out_path or
    None (use `path` as it is), "attention_fused", "transposes_as_reshapes", "max_abs_diff", "why"}."""
    model = onnx.load(str(path))
    fused = attention_fusion.fuse(model, static_shapes(model))
    reshaped = unit_transposes_to_reshapes(model, static_shapes(model))
    counts = {"attention_fused": fused, "transposes_as_reshapes": reshaped}
    if not fused and not reshaped:
        return {"file": None, **counts, "why": "nothing to rewrite"}
    onnx.save(model, str(out_path))
    diff = _max_diff(path, out_path)
    if diff > TOLERANCE:
        Path(out_path).unlink(missing_ok=True)
        return {"file": None, "attention_fused": 0, "transposes_as_reshapes": 0, "max_abs_diff": diff,
                "why": f"the rewritten graph differs by {diff:.2e} (> {TOLERANCE:g}): kept as exported"}
    return {"file": str(out_path), **counts, "max_abs_diff": diff,
            "why": f"{fused} self-attention blocks fused into {attention_fusion.CONTRIB}.MultiHeadAttention, "
                   f"{reshaped} unit-dimension transposes as reshapes (max |diff| {diff:.1e} against the graph as "
                   "exported)"}


def _max_diff(original, rewritten) -> float:
    """Max |diff| of the two graphs' outputs in onnxruntime on one random input."""
    session = verify.ort_session(original)
    dims = [d if isinstance(d, int) else 1 for d in session.get_inputs()[0].shape]
    batch = [np.random.default_rng(0).standard_normal(dims).astype(np.float32)]
    return float(np.abs(verify.ort_run(session, batch) - verify.ort_run(rewritten, batch)).max())


@contextmanager
def rewritten(path):
    """(the graph to quantize from, the rewrite's info) for the float graph at `path`: the rewritten copy, in a
    temporary folder removed on exit, or `path` itself when nothing was rewritten."""
    with tempfile.TemporaryDirectory(prefix="fog-cpu-graph-") as folder:
        info = rewrite_file(path, Path(folder) / Path(path).name)
        yield Path(info["file"] or path), {"applied": info["file"] is not None,
                                           **{k: v for k, v in info.items() if k != "file"}}


def rewrite_in_place(path) -> dict:
    """Rewrite the float graph at `path` in place when rewrite_file keeps the rewrite; returns its info (as
    `rewritten` gives it). The cpu target's fp32 model, so that fp32 and the int8 plans race on the same graph."""
    with rewritten(path) as (source, info):
        if info["applied"]:
            shutil.copyfile(source, path)
    return info
