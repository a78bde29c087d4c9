"""The precision plan of an INT8 export, as data: which layer runs in which precision on the target, and why.

The encoder's GEMMs (every Linear and attention MatMul) are INT8 behind symmetric Q/DQ. The recurrence is either
unrolled into INT8 MatMuls (one per step and direction; TensorRT then runs it in INT8) or kept as one fused ONNX
LSTM/GRU/RNN node that is never quantized (TensorRT's op tables list those ops as FP32/FP16 only) and runs in FP16:
under the builder's FP16 flag on a weakly typed TensorRT, between explicit FP16 Casts on a strongly typed one
(toolkit.export.fp16). `choose_recurrence` picks by graph size: unrolling a 1st-place-sized BiLSTM gave 55,751
nodes, a 332 s export and a 185 s onnxruntime load (docs/export.md), a launch-bound engine on a Jetson.
The plan goes into the manifest layer by layer (`layer_plan`).
"""
from __future__ import annotations

from deploy.errors import FogError
from deploy.lazy import lazy_import

torch = lazy_import("torch", "workstation", "reading a model's layers for the precision plan")

RECURRENCE_CHOICES = ("auto", "fused", "unrolled")
# Nodes one unrolled step of one direction adds (measured: fog-1st-place's 2 BiLSTM layers x 864 steps unrolled to
# 55,751 nodes, ~16 per step and direction; fog-small's 128-step BiLSTM to ~4,300 with its encoder).
UNROLLED_NODES_PER_STEP = 16
# Above this the unrolled recurrence is not the default (the graph budget of a large hybrid: under 5,000 nodes).
MAX_UNROLLED_NODES = 5000
FUSED_TYPES = ("LSTM", "GRU", "RNN")


class PlanError(FogError):
    """The asked precision plan cannot be built for this model or target."""


def recurrent_layers(module) -> list[tuple[str, object]]:
    """(name, module) of every nn.LSTM/GRU/RNN in `module`."""
    nn = torch.nn
    return [(name, m) for name, m in module.named_modules() if isinstance(m, (nn.LSTM, nn.GRU, nn.RNN))]


def unrolled_node_estimate(module, n_steps: int) -> int:
    """Nodes the unrolled recurrence would add: steps x directions x layers x UNROLLED_NODES_PER_STEP."""
    return sum(n_steps * (2 if m.bidirectional else 1) * m.num_layers * UNROLLED_NODES_PER_STEP
               for _, m in recurrent_layers(module))


def recurrence_of_ranges(module, n_steps: int, names) -> str | None:
    """The recurrence ("unrolled" | "fused") whose QAT variant has exactly the quantizers `names` (a QAT run's or
    a calibration cache's ranges), None when neither has."""
    from models.qat import quantizers, to_qat
    for recurrence in ("unrolled", "fused"):
        if set(quantizers(to_qat(module, 1, n_steps, recurrence))) == set(names):
            return recurrence
    return None


def choose_recurrence(module, n_steps: int, asked: str = "auto", given_names=None) -> tuple[str, str]:
    """("fused" | "unrolled", the reason with the figures). `asked` other than auto is kept, with its reason.
    `given_names`: the quantizers of ranges the user gave (QAT, --calibration); auto then takes the recurrence they
    were made on (a QAT run of a large model trains the unrolled variant: its ranges only fit that one)."""
    if asked not in RECURRENCE_CHOICES:
        raise PlanError(f"--recurrence {asked!r}: choose one of {', '.join(RECURRENCE_CHOICES)}")
    layers = recurrent_layers(module)
    if not layers:
        return "unrolled", "no LSTM/GRU/RNN layer: nothing to fuse (SCRN has no ONNX op and is unrolled)"
    estimate = unrolled_node_estimate(module, n_steps)
    figures = f"~{estimate:,} nodes if unrolled ({n_steps} steps, {UNROLLED_NODES_PER_STEP} nodes per step and direction)"
    if asked != "auto":
        return asked, f"{asked}, as asked (--recurrence); {figures}"
    made_on = recurrence_of_ranges(module, n_steps, given_names) if given_names else None
    if made_on is not None:
        return made_on, f"{made_on} (auto): the given ranges were made on the {made_on} recurrence; {figures}"
    if estimate <= MAX_UNROLLED_NODES:
        return "unrolled", (f"unrolled INT8 (auto): {figures} <= {MAX_UNROLLED_NODES:,}, so the recurrence's GEMMs "
                            "run in INT8 too")
    return "fused", (f"fused FP16 (auto): {figures} > {MAX_UNROLLED_NODES:,}; one ONNX node per layer instead "
                     "(fog-1st-place unrolled: 55,751 nodes, 332 s export, 185 s onnxruntime load)")


def _fp_precision(target, strongly_typed: bool) -> tuple[str, str]:
    """What a layer without Q/DQ runs in on the target, and why."""
    if target.runtime != "tensorrt":
        return "fp32", "onnxruntime float kernel"
    if strongly_typed:
        return "fp32", "strongly typed network: the ONNX's own float type (no precision flags)"
    return "fp16", "no Q/DQ: TensorRT may pick FP16 under the builder's FP16 flag"


def _recurrence_row(name: str, m, target, strongly_typed: bool) -> dict:
    nn = torch.nn
    op = "LSTM" if isinstance(m, nn.LSTM) else "GRU" if isinstance(m, nn.GRU) else "RNN"
    shape = f"{'bi' if m.bidirectional else ''}{op} {m.input_size}->{m.hidden_size} x{m.num_layers}"
    if target.runtime != "tensorrt":
        return {"layer": name, "op": f"{op} (fused)", "shape": shape, "precision": "fp32",
                "reason": "fused ONNX node on onnxruntime's float kernel"}
    how = ("explicit Cast to FP16 around the node (strongly typed: no precision flags)" if strongly_typed
           else "FP16 under the builder's FP16 flag")
    return {"layer": name, "op": f"{op} (fused)", "shape": shape, "precision": "fp16",
            "reason": f"one fused ONNX {op} node, never quantized (TensorRT {target.tensorrt}: {op} is FP32/FP16 only, "
                      f"Q/DQ cannot reach the per-step state); {how}"}


def layer_plan(qat, target, strongly_typed: bool = False) -> list[dict]:
    """Per layer of the converted model `qat` (models.qat.to_qat): layer, op, precision and the reason."""
    nn = torch.nn
    rows = []
    float_precision, float_reason = _fp_precision(target, strongly_typed)
    for name, m in qat.named_modules():
        kind = type(m).__name__
        if kind == "QuantLinear":
            rows.append({"layer": name, "op": "Linear (MatMul/Gemm)", "shape": f"{m.in_features}->{m.out_features}",
                         "precision": "int8", "reason": "GEMM: symmetric Q/DQ, weights per output channel, "
                                                        "activations per tensor"})
        elif kind == "QuantMatMul":
            rows.append({"layer": name, "op": "MatMul (two activations)", "shape": "",
                         "precision": "int8", "reason": "attention GEMM: both inputs behind per-tensor Q/DQ"})
        elif hasattr(m, "in_proj_weight_quantizer"):
            rows.append({"layer": f"{name}.in_proj", "op": "Linear (MatMul)", "shape": f"{m.embed_dim}->{3 * m.embed_dim}",
                         "precision": "int8", "reason": "attention in-projection: symmetric Q/DQ"})
        elif kind.startswith("Unrolled"):
            rows.append({"layer": name, "op": f"{kind} (unrolled)", "shape": _unrolled_shape(m),
                         "precision": "int8", "reason": "recurrence unrolled over the static window: one INT8 "
                                                        "MatMul per step and direction; gates and cell state float"})
        elif isinstance(m, (nn.LSTM, nn.GRU, nn.RNN)):
            rows.append(_recurrence_row(name, m, target, strongly_typed))
        elif isinstance(m, (nn.LayerNorm, nn.BatchNorm1d)):
            rows.append({"layer": name, "op": kind, "shape": "", "precision": float_precision,
                         "reason": f"normalization, no Q/DQ; {float_reason}"})
    return rows


def _unrolled_shape(m) -> str:
    """'in->hidden' of an unrolled recurrence; the unrolled SCRN keeps no input size (its cells do), so: 'hidden H'."""
    size = getattr(m, "input_size", None)
    return f"{size}->{m.hidden_size}" if size is not None else f"hidden {m.hidden_size}"


def describe_plan(plan: dict) -> str:
    """One line for a person: the recurrence choice and how many layers run in which precision."""
    counts: dict[str, int] = {}
    for row in plan["layers"]:
        counts[row["precision"]] = counts.get(row["precision"], 0) + 1
    spread = ", ".join(f"{n} {p}" for p, n in sorted(counts.items()))
    return f"recurrence {plan['recurrence']} ({spread} layers); {plan['reason']}"
