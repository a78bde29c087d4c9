"""The cpu target's INT8 plans, built from the float graph with onnxruntime's own tools, and chosen by measurement.

- `dynamic`: onnxruntime's dynamic quantization (`quantize_dynamic`): int8 weights per output channel for every
  MatMul/Gemm (MatMulInteger, fused by onnxruntime into DynamicQuantizeMatMul) and for the fused LSTM
  (DynamicQuantizeLSTM: int8 input and recurrent weights, activations quantized per call); everything else FP32,
  and so is the input projection (FP32_INPUT_PROJECTION says why).
  At batch 1 the recurrence is a matrix-vector product per step over the recurrent weights, bound by memory
  bandwidth: int8 weights are a quarter of the bytes. The plan may also be kept as *stages*: each bidirectional
  LSTM split into a forward and a reverse node (toolkit.export.lstm_split, exact), the graph cut around them
  (toolkit.export.cpu_stages), and the device runs both directions side by side (deploy.engines.staged):
  onnxruntime runs a CPU graph's nodes one at a time, so one BiLSTM node leaves a second core idle. `dynamic_plan`
  keeps the stages only when they measure faster than the whole graph at STAGED_THREADS threads.
  Both start from the float graph as toolkit.export.cpu_graph rewrites it: torch's self-attention fused into
  onnxruntime's MultiHeadAttention and batch 1's unit-dimension transposes as reshapes (exact, checked; on
  fog-1st-place, quiet machine: 1.04-1.1x at 1 thread, 1.05-1.1x for the stages at 2); with attention fused there
  are no activation x activation MatMuls left, so the ACTIVATIONS candidate is not built.
- `qdq`: the precision plan's static Q/DQ graph (toolkit.export.plan), run on onnxruntime's integer kernels.

`head_to_head` times the candidates interleaved (toolkit.timing) and `choose` keeps an INT8 plan only when it is at
least INT8_MIN_SPEEDUP faster than FP32. `save_optimized` writes the graph onnxruntime optimized at export, so the
device loads it without redoing the work (deploy.engines.onnxruntime reads `preoptimized` from the manifest).
"""
from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from deploy.engines.onnxruntime import OnnxRuntimeEngine
from deploy.engines.session import SessionSettings, open_session
from deploy.engines.staged import StagedEngine
from deploy.lazy import lazy_import
from toolkit.export import cpu_graph, cpu_stages, lstm_split
from toolkit.timing import BUDGET_S, interleaved

ort_quant = lazy_import("onnxruntime.quantization", "workstation", "onnxruntime's dynamic quantization")
onnx = lazy_import("onnx", "workstation", "reading ONNX graphs")

DYNAMIC_FILE = "model_int8_dynamic.onnx"
STAGE_PREFIX = "model_int8_stage"
# The device threads at which stages are measured against the whole graph (a Jetson CPU / small x86 box has >= 2),
# and by how much they must win to be kept.
STAGED_THREADS = 2
STAGED_MIN_SPEEDUP = 1.05
# The stages may also quantize attention's activation x activation MatMuls (quantize_dynamic's MatMulConstBOnly off:
# both operands quantized per call). A third candidate in the staged head-to-head, kept when this much faster than the
# plain stages. Measured at 2 threads, interleaved, fog-1st-place (864 patches): median 1.06x over 9 runs, but
# 0.84-1.10x (faster by >= 1.05x in 5, slower in 3), so a marginal gain kept only where export measures it clearly;
# fog-small (128 patches, whole graph) 0.80-1.00x, 0.91x at 1 thread (docs/bench.md, "Two threads"). On trained
# fog-small-wide, real windows: p99 |diff| 0.016 (0.014 without), agreement 0.9999.
ACTIVATIONS = "staged-activations"
ACTIVATION_PREFIX = "model_int8_stage_aa"
ACTIVATION_MIN_SPEEDUP = 1.05
# onnxruntime session settings every stage runs with (deploy.engines.staged says why).
STAGED_SESSION_CONFIG = {"session.intra_op.allow_spinning": "0"}
# Operators the dynamic plan quantizes: the GEMMs and the fused recurrence (GRU has no dynamic int8 kernel in
# onnxruntime: it stays FP32, as do attention's activation-by-activation MatMuls, unless ACTIVATIONS is kept).
DYNAMIC_OPS = ("MatMul", "Gemm", "LSTM")
INT8_OPS = ("MatMulInteger", "DynamicQuantizeLSTM", "DynamicQuantizeLinear", "DynamicQuantizeMatMul")
# What stays FP32 and is listed in the precision plan: GEMMs left unquantized, recurrences without an int8 kernel,
# and the fused attention (toolkit.export.cpu_graph), whose products multiply two activations.
FLOAT_OPS = ("MatMul", "Gemm", "LSTM", "GRU", "RNN", "MultiHeadAttention")
FUSED_ATTENTION = "torch's self-attention fused into onnxruntime's MultiHeadAttention (toolkit.export.cpu_graph, " \
    "exact): FP32, its products multiply two activations; the in- and out-projections around it are int8"
# The graph's first weighted GEMM, the input projection (fog presets: the patch embedding of the z-scored window), stays
# FP32: per-channel int8 weights there made nearly all of the plan's error on real windows (fog-small-wide, trained,
# 96 Daphnet windows: p99 |diff| 0.153 with it quantized, 0.014 with it FP32; the LSTMs alone 0.010). It holds a
# tiny share of the MACs (24 x 192 per patch there), so it costs no measurable time.
FP32_INPUT_PROJECTION = "the input projection (the graph's first weighted layer, a MatMul/Gemm): int8 weights there " \
    "made nearly all of the dynamic plan's error on real windows; a tiny share of the MACs"


def quantize_dynamic_int8(fp32_path, out_path, rewrite: bool = True) -> dict:
    """The dynamic plan of `fp32_path` into `out_path`, as one graph (its bidirectional LSTMs whole: split, the
    same weights give the same outputs, and run in one session no faster), from the float graph as
    toolkit.export.cpu_graph rewrites it (fused attention) unless `rewrite` is off (the caller already did);
    returns what it holds (op counts)."""
    start = time.perf_counter()
    with _source(fp32_path, rewrite) as (source, rewrote):
        kept = input_projection(onnx.load(str(source), load_external_data=False))
        quantize_stage(source, out_path, kept)
    names: dict[str, list[str]] = {}
    for node in onnx.load(str(out_path), load_external_data=False).graph.node:
        if node.name not in kept:   # listed as kept_fp32 below
            names.setdefault(node.op_type, []).append(node.name)
    int8 = {k: v for k, v in names.items() if k in INT8_OPS}
    left = {k: v for k, v in names.items() if k in FLOAT_OPS}
    return {"plan": "dynamic", "file": Path(out_path).name, "seconds": time.perf_counter() - start,
            "int8_ops": {k: len(v) for k, v in int8.items()}, "float_ops_left": {k: len(v) for k, v in left.items()},
            "nodes": {**int8, **left}, "rewrite": rewrote,
            "kept_fp32": {"nodes": kept, "why": FP32_INPUT_PROJECTION} if kept else None,
            "how": "onnxruntime.quantization.quantize_dynamic: int8 weights per channel (MatMul/Gemm/LSTM), "
                   "activations quantized per call, FP32 elsewhere, the input projection included"}


@contextmanager
def _source(fp32_path, rewrite: bool):
    if not rewrite:
        yield Path(fp32_path), None
        return
    with cpu_graph.rewritten(fp32_path) as found:
        yield found


WEIGHTED_OPS = ("MatMul", "Gemm", "Conv", "ConvTranspose", "LSTM", "GRU", "RNN")


def input_projection(model) -> list[str]:
    """[name] of the graph's first layer with a constant weight (nodes are in topological order) when it is a
    MatMul/Gemm, else []: the layer the dynamic plan keeps FP32 (FP32_INPUT_PROJECTION)."""
    weights = {i.name for i in model.graph.initializer}
    first = next((n for n in model.graph.node if n.op_type in WEIGHTED_OPS and set(n.input[:3]) & weights), None)
    return [first.name] if first is not None and first.op_type in ("MatMul", "Gemm") else []


def quantize_stage(path, out_path, keep_fp32=(), activations: bool = False) -> None:
    """onnxruntime's dynamic quantization of `path` into `out_path`: DYNAMIC_OPS, int8 weights per channel, the
    nodes named in `keep_fp32` left as they are (names not in this graph are ignored); with `activations`, the
    MatMuls of two activations too (both operands quantized per call)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)   # its "consider pre-processing" advice is logged once per call: 15 lines a bench
    try:
        ort_quant.quantize_dynamic(str(path), str(out_path), weight_type=ort_quant.QuantType.QInt8,
                                   per_channel=True, op_types_to_quantize=list(DYNAMIC_OPS),
                                   nodes_to_exclude=list(keep_fp32),
                                   extra_options={"MatMulConstBOnly": not activations,
                                                  # tensors behind a contrib op (fused attention) have no inferred
                                                  # type; every tensor these plans quantize is float
                                                  "DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.setLevel(level)


def dynamic_plan(fp32_path, folder, example, disabled_optimizers=(), rewrite: bool = True) -> dict:
    """The dynamic plan in `folder`: the whole graph (DYNAMIC_FILE, the bundle's int8 model) and, when running it
    in stages measures faster at STAGED_THREADS threads (interleaved, on `example`), its stages (STAGE_PREFIX_<n>,
    pre-optimized; or ACTIVATION_PREFIX_<n>, the stages with attention's products in int8 too, when those measure
    ACTIVATION_MIN_SPEEDUP faster still), which the device then runs; all from the float graph as
    toolkit.export.cpu_graph rewrites it. Returns the info; "staged" holds the stage plan or None, "staging" the
    figures and the reason, "rewrite" what the rewrite did (None with `rewrite` off: the caller did it)."""
    with _source(fp32_path, rewrite) as (source, rewrote):
        return {**_dynamic_plan(source, folder, example, disabled_optimizers), "rewrite": rewrote}


def _dynamic_plan(fp32_path, folder, example, disabled_optimizers) -> dict:
    info = quantize_dynamic_int8(fp32_path, Path(folder) / DYNAMIC_FILE, rewrite=False)
    if (os.cpu_count() or 1) < STAGED_THREADS:
        return {**info, "staged": None, "staging": {"reason": f"not measured: fewer than {STAGED_THREADS} cores"}}
    plans = {"staged": staged_dynamic(fp32_path, folder, STAGE_PREFIX, True, disabled_optimizers, rewrite=False)}
    if not cpu_stages.parallel_steps(plans["staged"]):
        remove_stages(folder, plans["staged"])
        return {**info, "staged": None, "staging": {"reason": "no bidirectional recurrence to run side by side"}}
    if activation_matmuls(onnx.load(str(fp32_path), load_external_data=False)):
        plans[ACTIVATIONS] = staged_dynamic(fp32_path, folder, ACTIVATION_PREFIX, True, disabled_optimizers,
                                            activations=True, rewrite=False)
    latency = staged_head_to_head(folder, Path(folder) / DYNAMIC_FILE, plans, example, disabled_optimizers)
    best = ACTIVATIONS if latency.get(ACTIVATIONS, float("inf")) * ACTIVATION_MIN_SPEEDUP <= latency["staged"] \
        else "staged"
    wins = latency[best] * STAGED_MIN_SPEEDUP <= latency["whole"]
    for name, plan in plans.items():
        if not (wins and name == best):
            remove_stages(folder, plan)
    figures = ", ".join(f"{name} {ms:.2f} ms" for name, ms in latency.items())
    return {**info, "staged": plans[best] if wins else None,
            "staging": {"latency_ms": latency, "threads": STAGED_THREADS, "kept": wins,
                        "activations_int8": wins and best == ACTIVATIONS,
                        "reason": f"{best if wins else 'whole graph'}: {figures} at {STAGED_THREADS} threads "
                                  f"(interleaved, this machine; stages kept when {STAGED_MIN_SPEEDUP:.2f}x faster "
                                  f"than the whole graph, {ACTIVATIONS} when {ACTIVATION_MIN_SPEEDUP:.2f}x faster "
                                  "than the plain stages)"}}


def activation_matmuls(model) -> int:
    """MatMuls of `model` with no constant input (attention's products): what ACTIVATIONS would quantize too."""
    weights = {i.name for i in model.graph.initializer}
    return sum(1 for n in model.graph.node if n.op_type == "MatMul" and not set(n.input) & weights)


def staged_head_to_head(folder, whole_path, plans: dict, example, disabled_optimizers=()) -> dict[str, float]:
    """Median wall ms per call of the whole graph and of each stage plan in `plans` ({name: plan}) at STAGED_THREADS
    threads, interleaved; {"whole": ms, name: ms, ...}."""
    engines = {"whole": OnnxRuntimeEngine(whole_path, threads=STAGED_THREADS)}
    for name, plan in plans.items():
        engines[name] = StagedEngine(folder, plan, threads=STAGED_THREADS, preoptimized=plan["preoptimized"],
                                     disabled_optimizers=disabled_optimizers)
    try:
        timings = interleaved({name: (lambda e=e: e.infer(example)) for name, e in engines.items()},
                              blocks=8, block_s=0.05, budget_s=BUDGET_S)
    finally:
        for engine in engines.values():
            engine.close()
    return {name: 1e3 * t.median for name, t in timings.items()}


def remove_stages(folder, plan: dict | None) -> None:
    for name in stage_files(plan) if plan else []:
        (Path(folder) / name).unlink(missing_ok=True)


def remove_dynamic(folder, info: dict) -> None:
    """Delete the dynamic plan's files from `folder` (it lost, or failed verification)."""
    (Path(folder) / DYNAMIC_FILE).unlink(missing_ok=True)
    remove_stages(folder, info.get("staged"))


def stage_files(plan: dict) -> list[str]:
    return [stage["file"] for step in plan["steps"] for stage in step]


def run_dynamic(folder, info: dict, batches, threads: int = STAGED_THREADS) -> np.ndarray:
    """The dynamic plan's outputs for `batches` (concatenated), on the engine the device opens for it: its stages
    when `info["staged"]` holds a plan, else the whole graph."""
    plan = info.get("staged")
    engine = StagedEngine(folder, plan, threads=threads, preoptimized=plan["preoptimized"]) if plan else \
        OnnxRuntimeEngine(Path(folder) / info["file"], threads=threads)
    try:
        return np.concatenate([engine.infer(b).copy() for b in batches])
    finally:
        engine.close()


def layer_rows(info: dict) -> list[dict]:
    """The dynamic plan as precision-plan rows, a row per node of the quantized graph (its node names)."""
    nodes = info.get("nodes") or {}
    rows = [{"layer": name, "op": op, "shape": "", "precision": "int8",
             "reason": "int8 weights per output channel, activations quantized dynamically per call"}
            for op in info["int8_ops"] if op != "DynamicQuantizeLinear" for name in nodes.get(op, [])]
    kept = (info.get("kept_fp32") or {}).get("nodes") or []
    rows += [{"layer": name, "op": "MatMul/Gemm", "shape": "", "precision": "fp32", "reason": FP32_INPUT_PROJECTION}
             for name in kept]
    products = bool((info.get("staged") or {}).get("activations_int8"))  # the kept stages quantize them
    rows += [{"layer": name, "op": op, "shape": "", "precision": "int8" if products and op == "MatMul" else "fp32",
              "reason": "activation x activation: both operands quantized per call in the kept stages (ACTIVATIONS)"
              if products and op == "MatMul" else FUSED_ATTENTION if op == "MultiHeadAttention" else
              "no weight to quantize (activation x activation) or no int8 kernel in onnxruntime"}
             for op in info["float_ops_left"] for name in nodes.get(op, [])]
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
    start = time.perf_counter()
    open_session(path, SessionSettings(optimization="extended", save_optimized_to=str(out_path),
                                       disabled_optimizers=tuple(disabled_optimizers)))
    optimizing = time.perf_counter() - start
    start = time.perf_counter()
    open_session(out_path, SessionSettings(optimization="none"))
    return {"load_with_optimization_s": optimizing, "load_preoptimized_s": time.perf_counter() - start}


def staged_dynamic(fp32_path, out_dir, prefix: str = "int8_stage", preoptimize: bool = True,
                   disabled_optimizers=(), activations: bool = False, rewrite: bool = True,
                   quantize: bool = True) -> dict:
    """The dynamic plan as stages (toolkit.export.cpu_stages): the float graph (rewritten by toolkit.export.cpu_graph
    unless `rewrite` is off) with its bidirectional LSTMs split per direction, cut around them, each stage
    dynamically quantized (the same per-channel int8 weights as the whole graph's; with `activations`, attention's
    activation x activation MatMuls in int8 too; FP32 stages without `quantize`, for comparisons) and, with
    `preoptimize`, saved as onnxruntime optimizes it.
    Returns the plan for the manifest's `onnxruntime.staged` (deploy.engines.staged runs it)."""
    with _source(fp32_path, rewrite) as (source, _):
        model = onnx.load(str(source))
    kept, products = input_projection(model), activation_matmuls(model)
    split = lstm_split.split_bidirectional_lstms(model)
    plan = cpu_stages.cut(model, out_dir, prefix)
    for step in plan["steps"]:
        for stage in step:
            path = Path(out_dir) / stage["file"]
            if quantize:
                quantize_stage(path, path, kept, activations)
            if preoptimize:
                save_optimized(path, path, disabled_optimizers)
    return {**plan, "split_lstms": split, "preoptimized": preoptimize, "session_config": STAGED_SESSION_CONFIG,
            "activations_int8": activations, "activation_matmuls": products,
            "why": "bidirectional LSTMs split per direction; the device runs both directions concurrently when "
                   "it has two threads (onnxruntime runs a CPU graph's nodes one at a time)"}
