"""Where the time goes: the split between encoder and recurrence per backend, and the recurrence's memory bound.

At batch 1 a recurrent layer is a matrix-vector product per step over its recurrent weights: it reads every weight
byte once per step and direction (unless they stay in cache), so its floor is weight bytes per step x steps /
memory bandwidth, whatever the MACs say. `memory_bandwidth` measures the bandwidth with a numpy copy of a buffer
larger than the caches; `recurrent_bytes` counts the recurrent weight bytes of an ONNX graph (FP32 R of LSTM/GRU/
RNN, int8 of DynamicQuantizeLSTM); `onnxruntime_split` reads onnxruntime's own profile (node times by op) and
`eager_split` torch's profiler, each for a few calls.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from deploy.engines.session import SessionSettings, open_session
from deploy.lazy import lazy_import

onnx = lazy_import("onnx", "workstation", "counting recurrent weights")
torch = lazy_import("torch", "workstation", "profiling PyTorch eager")

RECURRENT_OPS = {"LSTM", "GRU", "RNN", "DynamicQuantizeLSTM"}
_RECURRENT_ATEN = ("lstm", "gru", "rnn_tanh", "rnn_relu")


def memory_bandwidth(mib: int = 96, repeats: int = 3) -> float:
    """Bytes per second a numpy copy moves (read + write), best of `repeats` over a buffer beyond the caches."""
    src = np.ones(mib << 18, np.float32)  # mib MiB
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    return 2 * src.nbytes / best


def recurrent_bytes(path) -> dict:
    """{"bytes_per_step": recurrent weight bytes read per step (all directions and layers), "steps": T}."""
    model = onnx.load(str(path))
    inits = {t.name: t for t in model.graph.initializer}
    shapes = {}
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
        for vi in list(inferred.graph.value_info) + list(inferred.graph.input):
            shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    except Exception:  # no steps known: the bound is then not reported
        pass
    per_step, steps = 0, None
    for node in model.graph.node:
        if node.op_type not in RECURRENT_OPS:
            continue
        r = inits.get(node.input[2])
        if r is not None:
            itemsize = onnx.helper.tensor_dtype_to_np_dtype(r.data_type).itemsize
            per_step += int(np.prod(r.dims)) * itemsize
        x = shapes.get(node.input[0])
        steps = x[0] if x else steps
    return {"bytes_per_step": per_step, "steps": steps}


def memory_bound_ms(weights: dict, bandwidth: float) -> float | None:
    if not weights["bytes_per_step"] or not weights["steps"]:
        return None
    return 1e3 * weights["bytes_per_step"] * weights["steps"] / bandwidth


def onnxruntime_split(path, x: np.ndarray, threads: int, calls: int = 3, workdir=None) -> dict:
    """Milliseconds per call in recurrent nodes and in the rest, from onnxruntime's profile (after one warm call)."""
    prefix = str(Path(workdir) / "ort-profile") if workdir is not None else "onnxruntime_profile_"
    session = open_session(path, SessionSettings(threads=threads, profile_prefix=prefix))
    name = session.get_inputs()[0].name
    session.run(None, {name: x})
    for _ in range(calls):
        session.run(None, {name: x})
    ops = kernel_ms_by_op(json.loads(Path(session.end_profiling()).read_text()), calls + 1)
    recurrent = sum(ms for op, ms in ops.items() if op in RECURRENT_OPS)
    return _split(recurrent, sum(ops.values()) - recurrent)


def kernel_ms_by_op(events: list, runs: int) -> dict[str, float]:
    """{op type: kernel ms per call} from the events of an onnxruntime profile covering `runs` calls."""
    ops: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name")
            ops[op] = ops.get(op, 0.0) + e["dur"] / 1e3 / runs
    return ops


def eager_split(model, x: np.ndarray, calls: int = 2) -> dict:
    """Milliseconds per call in torch's recurrent kernels and in the rest (torch.profiler, CPU self time)."""
    xt = torch.from_numpy(x)
    with torch.inference_mode():
        model(xt)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(calls):
                model(xt)
    recurrent = total = 0.0
    for event in prof.key_averages():
        total += event.self_cpu_time_total
        if any(event.key.endswith(k) or event.key == f"aten::{k}" for k in _RECURRENT_ATEN) or "_rnn" in event.key:
            recurrent += event.self_cpu_time_total
    return _split(recurrent / calls / 1e3, (total - recurrent) / calls / 1e3)


def _split(recurrent_ms: float, rest_ms: float) -> dict:
    total = recurrent_ms + rest_ms
    return {"recurrence_ms": recurrent_ms, "encoder_ms": rest_ms,
            "recurrence_share": recurrent_ms / total if total else None}
