"""`toolkit export --batch 1,8,32`: the bundle's graphs at more batch sizes, each checked and verified, for a gateway
that runs the windows of many wearers together (deploy.batching, deploy.gateway).

For each extra size B, the model roles the device may run are exported again at B: the float graph (rewritten for
the CPU as the bundle's own one is), and the INT8 Q/DQ graph (the QAT variant at B with the same ranges). Each is
checked like the bundle's own graph and verified twice:
- numerically, PyTorch against ONNX Runtime at B (the bundle's own thresholds);
- row by row: each row of a batch of B different windows equals, bit for bit, the same window run through the
  bundle's own graph on the device's engine, and a batch padded with zeros leaves its real row unchanged. This is
  what lets a gateway promise that a wearer's events never depend on who else is connected; the manifest records
  it (`batching.row_exact`), and a gateway runs a bundle whose rows are not exact at its own size only.
onnxruntime runs static graphs (one file per size): measured on fog-small at 1 thread, a static batch-8/32 graph ran
0.876/0.887 ms a window against 0.932/1.013 ms for one graph with a dynamic batch axis, whose rows also differ from
the static batch-1 graph's in the last bits (docs/bench.md "The gateway"). A TensorRT target also gets one float
graph with a dynamic batch axis and the optimization profile its engine is built with (min = the smallest size,
opt = max = the largest): one engine for every size where the graph allows it (the unrolled INT8 graph does not:
its steps are static, so it gets one engine per size).
The cpu target's dynamic INT8 plan is not batched: onnxruntime's dynamic quantization scales over the whole batch,
so a row would depend on the others.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from calibration.data import synthetic_windows
from deploy.contract import FP32_FILE, INPUT_NAME, INT8_FILE
from deploy.contract.batching import BatchingSection
from deploy.engines.onnxruntime import DISABLED_OPTIMIZERS, OnnxRuntimeEngine
from deploy.lazy import lazy_import
from toolkit.export import cpu_graph, cpu_plans, verify
from toolkit.export.onnx import export_float, export_graph, with_activation

onnx = lazy_import("onnx", "workstation", "exporting ONNX")
qat_convert = lazy_import("models.qat", "workstation", "the quantization-aware variant of a model")
fp16 = lazy_import("toolkit.export.fp16", "workstation", "the FP16 recurrence")
onnx_export = lazy_import("models.onnx_export", "workstation", "exporting a zoo model to ONNX")
torch = lazy_import("torch", "workstation", "exporting a PyTorch model")

DYNAMIC_FILE = "model_fp32_dynamic.onnx"


def batch_file(own: str, size: int) -> str:
    """'model_fp32.onnx' at batch 8 -> 'model_fp32_b8.onnx'."""
    stem, _, suffix = own.rpartition(".")
    return f"{stem}_b{size}.{suffix}"


@dataclass
class Batches:
    """What the step found: the manifest's `batching` section, the checks of every graph, notes for people."""
    section: BatchingSection
    checks: list = field(default_factory=list)
    notes: list = field(default_factory=list)


def rows_exact(own_path, batch_path, x: np.ndarray, preoptimized: bool = False) -> dict:
    """Each row of `x` (B windows) through the batch-B graph against the same window through the bundle's own graph
    (the rest of its batch zeros), on the device's engine; and a batch of row 0 and zeros. {rows_equal, padded_equal,
    max_abs, windows, passed}."""
    own = OnnxRuntimeEngine(own_path, threads=1, preoptimized=preoptimized)
    wide = OnnxRuntimeEngine(batch_path, threads=1, preoptimized=preoptimized)
    alone = []
    for row in x:
        own.input_buffer[:] = 0.0
        own.input_buffer[0] = row
        alone.append(own.infer(own.input_buffer)[0].copy())
    together = wide.infer(x).copy()
    equal = sum(bool(np.array_equal(a, b)) for a, b in zip(alone, together))
    padded = np.zeros_like(x)
    padded[0] = x[0]
    padded_equal = bool(np.array_equal(wide.infer(padded)[0], alone[0]))
    worst = float(max(np.max(np.abs(a.astype(np.float64) - b)) for a, b in zip(alone, together)))
    return {"rows_equal": f"{equal}/{len(x)}", "padded_equal": padded_equal, "max_abs": worst, "windows": len(x),
            "passed": equal == len(x) and padded_equal}


class BatchExport:
    """The step, given the pipeline `p` (its source, target, work folder, options, checks) and what the steps
    before found."""

    def __init__(self, p, int8, cpu, precision: str):
        self.p, self.int8, self.cpu, self.precision = p, int8, cpu, precision
        self.sizes = p.opt.batch_sizes
        self.files: dict[str, dict] = {}
        self.out = Batches(BatchingSection(sizes=self.sizes))

    def run(self) -> Batches:
        if len(self.sizes) == 1:
            return self.out
        verification, exact = {}, True
        for size in self.sizes[1:]:
            x = synthetic_windows(self.p.source.preprocess, size, size, seed=3)[0]
            figures = {"fp32": self._float(size, x)}
            if self._int8_role():
                figures["int8"] = self._qdq(size, x)
            verification[str(size)] = figures
            exact = exact and all(f["rows"]["passed"] for f in figures.values())
        tensorrt = self._dynamic() if self.p.target.runtime == "tensorrt" else None
        if self.cpu is not None and self.cpu.int8_file == cpu_plans.DYNAMIC_FILE:
            self.out.notes.append("the int8 plan (onnxruntime's dynamic quantization) runs at batch "
                                  f"{self.sizes[0]} only: it scales over the whole batch, so a row would depend on "
                                  "the others")
        self.out.section = BatchingSection(sizes=self.sizes, files=self.files, row_exact=exact,
                                           verification=verification, tensorrt=tensorrt)
        return self.out

    def _int8_role(self) -> bool:
        """The INT8 Q/DQ graph ships (TensorRT's, or the cpu target's static plan when it won)."""
        if self.int8 is None:
            return False
        return self.cpu is None or (self.cpu.precision == "int8" and self.cpu.int8_file == INT8_FILE)

    def _check(self, path, precision: str, label: str, **kw) -> None:
        model = onnx.load(str(path), load_external_data=False)
        self.out.checks += self.p._checks(model, precision, path.name, label, **kw)

    def _float(self, size: int, x) -> dict:
        p = self.p
        path = p.work / batch_file(FP32_FILE, size)
        export_float(p.source, p.source.input_shape(size), path, p.opset, size, p.target)
        if self.cpu is not None and self.cpu.record.get("float_rewrite", {}).get("applied"):
            cpu_graph.rewrite_in_place(path)   # the same rewrite as the bundle's own float graph
        float_precision = self.precision if self.precision in ("fp16", "fp32") else \
            ("fp16" if p.target.fp16 else "fp32")
        self._check(path, float_precision, f"the float model at batch {size}")
        self.files.setdefault("fp32", {})[str(size)] = path.name
        reference = verify.torch_run(with_activation(p.source.module, p.source.activation), [x])
        pair = verify.compare("torch_vs_ort_fp32", reference, verify.ort_run(path, [x], p.opt.threads))
        verify.assert_verified({f"torch_vs_ort_fp32 at batch {size}": pair})
        return {"torch_vs_ort": pair, "rows": rows_exact(p.work / FP32_FILE, path, x)}

    def _qdq(self, size: int, x) -> dict:
        p, int8 = self.p, self.int8
        recurrence = int8.plan.recurrence
        qat = qat_convert.to_qat(p.source.module, batch_size=size, seq_len=p.n_steps, recurrence=recurrence).eval()
        qat.load_state_dict(int8.qat.state_dict())   # the same ranges: they do not depend on the batch
        qat_convert.set_quantization(qat, True)
        path = p.work / batch_file(INT8_FILE, size)
        export_graph(with_activation(qat, p.source.activation), p.source.input_shape(size), path, p.opset)
        if int8.plan.strongly_typed:
            graph = onnx.load(str(path), load_external_data=False)
            fp16.cast_fused_recurrence(graph)
            onnx.save(graph, str(path))
        self._check(path, "int8", f"the INT8 model at batch {size}", int8_graph=True, recurrence=recurrence)
        reference = verify.torch_run(with_activation(qat, p.source.activation), [x])
        written = verify.ort_run(verify.ort_session(path, as_written=True, threads=p.opt.threads), [x])
        pair = verify.compare("torch_qat_vs_ort_int8", reference, written)
        verify.assert_verified({f"torch_qat_vs_ort_int8 at batch {size}": pair})
        preoptimized = self.cpu is not None
        if preoptimized:   # as the bundle's own cpu int8 file: the graph onnxruntime optimized at export
            cpu_plans.save_optimized(path, path, DISABLED_OPTIMIZERS)
        self.files.setdefault("int8", {})[str(size)] = path.name
        return {"torch_vs_ort": pair, "rows": rows_exact(p.work / INT8_FILE, path, x, preoptimized)}

    def _dynamic(self) -> dict | None:
        """TensorRT: the float graph with a dynamic batch axis and its optimization profile, checked at the
        largest size; None (and a note) when the graph does not export that way."""
        p = self.p
        path = p.work / DYNAMIC_FILE
        largest = p.source.input_shape(self.sizes[-1])
        try:
            onnx_export.export_onnx(with_activation(p.source.module, p.source.activation),
                                    torch.zeros(largest), path, opset=p.opset,
                                    input_names=(INPUT_NAME,), output_names=("probs",), dynamic_batch=True)
        except Exception as exc:   # the exporter's own errors: static graphs per size only
            self.out.notes.append(f"no dynamic-batch float graph for TensorRT ({str(exc).splitlines()[0][:160]}); "
                                  "one engine per batch size")
            path.unlink(missing_ok=True)
            return None
        fixed = fixed_batch(onnx.load(str(path)), self.sizes[-1])
        self.out.checks += [dict(c, model=f"{DYNAMIC_FILE} (at batch {self.sizes[-1]})")
                            for c in self.p._checks(fixed, "fp32", DYNAMIC_FILE, "the dynamic-batch float model")]
        rest = list(largest[1:])
        return {"file": DYNAMIC_FILE, "input": INPUT_NAME, "min": [self.sizes[0], *rest],
                "opt": [self.sizes[-1], *rest], "max": [self.sizes[-1], *rest]}


def fixed_batch(model, size: int):
    """A copy of a dynamic-batch graph with its batch axis set to `size` (what TensorRT's profile runs at most), so
    the static checks apply to it."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in list(fixed.graph.input) + list(fixed.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_value = size
    return fixed
