"""The cpu target's INT8 plans, built from the float graph with onnxruntime's own tools, and chosen by measurement.

- `dynamic`: onnxruntime's dynamic quantization (`quantize_dynamic`): int8 weights per output channel for every
  MatMul/Gemm (MatMulInteger, fused by onnxruntime into DynamicQuantizeMatMul) and for the fused LSTM
  (DynamicQuantizeLSTM: int8 input and recurrent weights, activations quantized per call); everything else FP32.
  At batch 1 the recurrence is a matrix-vector product per step over the recurrent weights, bound by memory
  bandwidth: int8 weights are a quarter of the bytes.
- `qdq`: the precision plan's static Q/DQ graph (toolkit.export.plan), run on onnxruntime's integer kernels.

`head_to_head` times the candidates interleaved (toolkit.timing) and `choose` keeps an INT8 plan only when it is at
least INT8_MIN_SPEEDUP faster than FP32. `save_optimized` writes the graph onnxruntime optimized at export, so the
device loads it without redoing the work (deploy.engines.onnxruntime reads `preoptimized` from the manifest).
"""
from __future__ import annotations

import time
from pathlib import Path

from deploy.lazy import lazy_import

ort_quant = lazy_import("onnxruntime.quantization", "workstation", "onnxruntime's dynamic quantization")
onnx = lazy_import("onnx", "workstation", "reading ONNX graphs")

DYNAMIC_FILE = "model_int8_dynamic.onnx"
# Operators the dynamic plan quantizes: the GEMMs and the fused recurrence (GRU has no dynamic int8 kernel in
# onnxruntime: it stays FP32, as do attention's activation-by-activation MatMuls, which have no weight).
DYNAMIC_OPS = ("MatMul", "Gemm", "LSTM")


def quantize_dynamic_int8(fp32_path, out_path) -> dict:
    """The dynamic plan of `fp32_path` into `out_path`; returns what it holds (op counts) for the manifest."""
    start = time.perf_counter()
    ort_quant.quantize_dynamic(str(fp32_path), str(out_path), weight_type=ort_quant.QuantType.QInt8,
                               per_channel=True, op_types_to_quantize=list(DYNAMIC_OPS))
    ops: dict[str, int] = {}
    for node in onnx.load(str(out_path), load_external_data=False).graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return {"plan": "dynamic", "file": Path(out_path).name, "seconds": time.perf_counter() - start,
            "int8_ops": {k: v for k, v in ops.items() if k in ("MatMulInteger", "DynamicQuantizeLSTM",
                                                               "DynamicQuantizeLinear", "DynamicQuantizeMatMul")},
            "float_ops_left": {k: v for k, v in ops.items() if k in ("MatMul", "Gemm", "LSTM", "GRU", "RNN")},
            "how": "onnxruntime.quantization.quantize_dynamic: int8 weights per channel (MatMul/Gemm/LSTM), "
                   "activations quantized per call, FP32 elsewhere"}


def layer_rows(info: dict) -> list[dict]:
    """The dynamic plan as precision-plan rows (per op type: the graph has no module names left)."""
    rows = [{"layer": f"{n} x {op}", "op": op, "shape": "", "precision": "int8",
             "reason": "int8 weights per output channel, activations quantized dynamically per call"}
            for op, n in info["int8_ops"].items() if op != "DynamicQuantizeLinear"]
    rows += [{"layer": f"{n} x {op}", "op": op, "shape": "", "precision": "fp32",
              "reason": "no weight to quantize (activation x activation) or no int8 kernel in onnxruntime"}
             for op, n in info["float_ops_left"].items()]
    return rows


def choose(latency_ms: dict[str, float], min_speedup: float) -> tuple[str, str]:
    """(winner, reason with the figures) among {"fp32": ms, "<int8 plan>": ms, ...}: the fastest INT8 plan when it
    beats FP32 by `min_speedup`, else fp32."""
    fp32 = latency_ms["fp32"]
    figures = ", ".join(f"{k} {v:.2f} ms" for k, v in latency_ms.items())
    int8 = {k: v for k, v in latency_ms.items() if k != "fp32"}
    best = min(int8, key=int8.get)
    ratio = fp32 / int8[best]
    if int8[best] * min_speedup <= fp32:
        return best, f"{best}: {ratio:.2f}x faster than fp32 ({figures}, interleaved, this machine)"
    if int8[best] < fp32:
        return "fp32", (f"fp32: {best} only {ratio:.2f}x faster ({figures}), under the {min_speedup:.2f}x that "
                        "would justify its accuracy cost")
    return "fp32", f"fp32: {best} {int8[best] / fp32:.2f}x slower ({figures})"


def save_optimized(path, out_path, disabled_optimizers=()) -> dict:
    """Write the graph onnxruntime runs (extended optimizations: fusions valid on any CPU, no layout changes
    specific to this one) to `out_path`; returns the load times before and after for the manifest."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(out_path)
    options.log_severity_level = 3
    start = time.perf_counter()
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"],
                         disabled_optimizers=list(disabled_optimizers))
    optimizing = time.perf_counter() - start
    plain = ort.SessionOptions()
    plain.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    plain.log_severity_level = 3
    start = time.perf_counter()
    ort.InferenceSession(str(out_path), plain, providers=["CPUExecutionProvider"])
    return {"load_with_optimization_s": optimizing, "load_preoptimized_s": time.perf_counter() - start}
