"""An onnxruntime target's step: what the device runs. The fp32 graph is rewritten for the CPU (toolkit.export
.cpu_graph); with an INT8 graph, the static Q/DQ plan, onnxruntime's dynamic plan (verified against the float model)
and fp32 race interleaved on this machine, and INT8 is kept only when it wins clearly (INT8_MIN_SPEEDUP) unless
--precision int8 asked for it. The winner's file is the bundle's int8 model, pre-optimized for onnxruntime."""
from __future__ import annotations

from deploy.contract import CPU_FP32_REASON, FP32_FILE, INT8_FILE
from deploy.contract.runtime import PrecisionPlan
from deploy.engines.onnxruntime import DISABLED_OPTIMIZERS
from toolkit.export import cpu_graph, cpu_plans, verify
from toolkit.export.steps import CpuChoice
from toolkit.timing import onnx_head_to_head

# INT8 costs accuracy (see the verification thresholds), so it must win clearly: at least this much faster than FP32
# in the interleaved head-to-head, else FP32 (a tie or the noise of a shared machine never picks the less accurate
# model).
INT8_MIN_SPEEDUP = 1.10
METHOD = "toolkit.timing.onnx_head_to_head: interleaved blocks, thread CPU time, 1 thread"


def dynamic_plan(work, example, batches, reference) -> tuple[dict | None, dict, dict]:
    """onnxruntime's dynamic quantization of the (rewritten) float graph, run as the device runs it and verified
    against the float model: (its info, or None when it failed verification and was removed; the manifest's
    export.cpu_dynamic_plan; the passed pair, or {})."""
    info = cpu_plans.dynamic_plan(work / FP32_FILE, work, example, DISABLED_OPTIMIZERS, rewrite=False)
    outputs = cpu_plans.run_dynamic(work, info, batches)
    pair = verify.compare("torch_vs_ort_int8_dynamic", reference, outputs)
    record = {**{k: v for k, v in info.items() if k != "staged"}, "verification": pair}
    if not pair["passed"]:
        cpu_plans.remove_dynamic(work, info)
        return None, record, {}
    return info, record, {"torch_vs_ort_int8_dynamic": pair}


def race(work, asked: str, example, dynamic: dict | None) -> tuple[str, str, dict]:
    """(winner, reason, {plan: ms}) of fp32 (unless int8 was asked for) and the INT8 plans, interleaved."""
    files = {"fp32": work / FP32_FILE, "int8-qdq": work / INT8_FILE}
    if dynamic is not None:
        files["int8-dynamic"] = work / cpu_plans.DYNAMIC_FILE
    if asked == "int8":
        files.pop("fp32")
    latency = onnx_head_to_head(files, example)
    if asked != "int8":
        return (*cpu_plans.choose(latency, INT8_MIN_SPEEDUP), latency)
    winner = min(latency, key=latency.get)
    return winner, (f"{winner}, the faster INT8 plan (" + ", ".join(f"{k} {v:.2f} ms" for k, v in latency.items())
                    + ")"), latency


def keep(work, winner: str, dynamic: dict | None) -> dict:
    """Keep the winner's INT8 file (and only it); {int8_file, plan, staged, preoptimized} of what is kept."""
    kept = {"int8_file": INT8_FILE, "plan": None, "staged": None, "preoptimized": None}
    if winner == "int8-dynamic":
        (work / INT8_FILE).unlink()
        kept.update(int8_file=cpu_plans.DYNAMIC_FILE, staged=dynamic["staged"], plan=PrecisionPlan(
            recurrence="fused", cpu_int8="dynamic", strongly_typed=False, reason=dynamic["how"],
            layers=tuple(cpu_plans.layer_rows(dynamic))))
    elif dynamic is not None:
        cpu_plans.remove_dynamic(work, dynamic)
    if winner != "fp32":
        path = work / kept["int8_file"]
        kept["preoptimized"] = cpu_plans.save_optimized(path, path, DISABLED_OPTIMIZERS)
    return kept


def choose_cpu_precision(work, asked: str, want_int8: bool, windows, verification) -> CpuChoice:
    """The step (see the module docstring): `asked` the precision asked for (or the target's default), `windows`
    and `verification` what the steps before found."""
    rewrite = cpu_graph.rewrite_in_place(work / FP32_FILE)
    record = {"asked": asked, "float_rewrite": rewrite}
    if not want_int8:
        return CpuChoice(precision=asked, record={
            "asked": asked, "precision": asked, "reason": f"fp32, the cpu target's default: {CPU_FP32_REASON}",
            "latency_ms": None, "plan": None, "float_rewrite": rewrite, "method": None})
    example = windows.verification[0]
    dynamic, dynamic_record, pairs = dynamic_plan(work, example, windows.verification, verification.reference)
    winner, reason, latency = race(work, asked, example, dynamic)
    kept = keep(work, winner, dynamic)
    precision = "fp32" if winner == "fp32" else "int8"
    record.update(precision=precision, reason=reason, latency_ms=latency,
                  plan=kept["int8_file"] if precision == "int8" else None, method=METHOD)
    return CpuChoice(precision=precision, record={k: record[k] for k in (
        "asked", "precision", "reason", "latency_ms", "plan", "float_rewrite", "method")},
        int8_file=kept["int8_file"], plan=kept["plan"], dynamic=dynamic_record, pairs=pairs,
        preoptimized=kept["preoptimized"], staged=kept["staged"])
