"""Static checks that an INT8 Q/DQ ONNX graph is what TensorRT's explicit quantization accepts.

`check_qdq(model_or_path, recurrence=...) -> list[Problem]`; `assert_qdq(...)` raises deploy.errors.FogError listing
every failing node. The precision plan (toolkit.export.plan) says where the recurrence is: "unrolled" allows no
LSTM/GRU/RNN node; "fused" allows them but with no Q/DQ around them (no input through DequantizeLinear, no output
straight into QuantizeLinear: TensorRT never quantizes them). Rules (see shared/reference/tensorrt-jetson.md): no
Loop/Scan/If; no dynamic dimension; both
GEMM inputs of every MatMul/Gemm come through DequantizeLinear (fed by QuantizeLinear, or by a constant weight);
INT8 only; zero points present and all zero; scales constant and positive; per-channel scales (weights only) 1-D on
axis 0; activation scales scalar. Producers and consumers are indexed once, so ~70k-node graphs take seconds.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deploy.errors import FogError
from deploy.lazy import lazy_import

onnx = lazy_import("onnx", "workstation", "checking Q/DQ graphs")

FUSED_RECURRENT_OPS = {"LSTM", "GRU", "RNN"}
CONTROL_FLOW_OPS = {"Loop", "Scan", "If"}
RECURRENCE_PLANS = ("unrolled", "fused")
INTEGER_OPS = {"QLinearMatMul", "QLinearConv", "MatMulInteger", "ConvInteger", "DynamicQuantizeLinear"}
GEMM_OPS = {"MatMul", "Gemm"}
# Ops that only move data: Q/DQ may sit before them and TensorRT still sees a quantized GEMM input.
LAYOUT_OPS = {"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Slice", "Split", "Gather",
              "Concat", "Expand"}
INT8 = 3  # onnx.TensorProto.INT8


@dataclass(frozen=True)
class Problem:
    node: str
    op_type: str
    message: str

    def __str__(self) -> str:
        return f"{self.node} ({self.op_type}): {self.message}"


class GraphIndex:
    """Producers, constants and value shapes of one ONNX graph, indexed once."""

    def __init__(self, model):
        graph = model.graph
        self.nodes = list(graph.node)
        self.producer = {out: node for node in self.nodes for out in node.output if out}
        self._arrays = {t.name: t for t in graph.initializer}
        for node in self.nodes:
            if node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.name == "value":
                        self._arrays[node.output[0]] = attr.t
        self._to_array = onnx.numpy_helper.to_array
        self._constant_memo: dict[str, bool] = {}

    def _constant(self, name: str):
        """The TensorProto of constant `name` (initializer or Constant node, through Identity), else None."""
        while name not in self._arrays:
            node = self.producer.get(name)
            if node is None or node.op_type != "Identity":
                return None
            name = node.input[0]
        return self._arrays[name]

    def array(self, name: str):
        """The constant value of `name` (initializer or Constant node, through Identity), else None."""
        tensor = self._constant(name)
        return None if tensor is None else self._to_array(tensor)

    def tensor_dtype(self, name: str):
        tensor = self._constant(name)
        return None if tensor is None else tensor.data_type

    def is_constant(self, name: str) -> bool:
        """True when `name` is computed from constants only (a weight path), iteratively so deep graphs are fine."""
        stack = [name]
        while stack:
            current = stack[-1]
            if current in self._constant_memo:
                stack.pop()
                continue
            if current in self._arrays:
                self._constant_memo[current] = True
                stack.pop()
                continue
            node = self.producer.get(current)
            if node is None:           # a graph input
                self._constant_memo[current] = False
                stack.pop()
                continue
            pending = [i for i in node.input if i and i not in self._constant_memo]
            if pending:
                stack.extend(pending)
                continue
            self._constant_memo[current] = all(self._constant_memo[i] for i in node.input if i)
            stack.pop()
        return self._constant_memo[name]


def _load(model_or_path):
    if isinstance(model_or_path, (str, Path)):
        path = Path(model_or_path)
        if not path.exists():
            raise FogError(f"{path}: no such ONNX file (export the QAT model first)")
        return onnx.load(str(path))
    return model_or_path


def _dynamic_dims(value_info) -> list[str]:
    """Names/indices of dims that are symbolic or unknown in a ValueInfoProto with a shape."""
    tensor = value_info.type.tensor_type
    if not tensor.HasField("shape"):
        return ["rank"]
    return [d.dim_param or f"dim {i}" for i, d in enumerate(tensor.shape.dim) if not d.HasField("dim_value")]


def _check_shapes(model, problems: list[Problem]) -> None:
    graph = model.graph
    for kind, values in (("input", graph.input), ("output", graph.output)):
        initializers = {t.name for t in graph.initializer}
        for value in values:
            if value.name in initializers:
                continue
            dims = _dynamic_dims(value)
            if dims:
                problems.append(Problem(value.name, f"graph {kind}",
                                        f"dynamic dimension(s) {dims}; export at a fixed batch and length"))
    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph.value_info
    except Exception as error:  # noqa: BLE001 - report, do not crash the check
        problems.append(Problem("<graph>", "shape inference", f"ONNX shape inference failed: {error}"))
        return
    for value in inferred:
        tensor = value.type.tensor_type
        if tensor.HasField("shape") and any(d.dim_param for d in tensor.shape.dim):
            problems.append(Problem(value.name, "value_info",
                                    "symbolic (dynamic) dimension after shape inference; use static shapes"))


def _check_qdq_node(g: GraphIndex, node, problems: list[Problem]) -> None:
    name, op = node.name or node.output[0], node.op_type
    if len(node.input) < 3 or not node.input[2]:
        problems.append(Problem(name, op, "no zero-point input (TensorRT 8.5/8.6 require the 3rd input)"))
    else:
        zero = g.array(node.input[2])
        if zero is None:
            problems.append(Problem(name, op, "zero point is not a constant"))
        else:
            if g.tensor_dtype(node.input[2]) != INT8:
                problems.append(Problem(name, op, f"zero point is {zero.dtype}, not int8 (TensorRT is INT8 only)"))
            if (zero != 0).any():
                problems.append(Problem(name, op, "non-zero zero point (TensorRT needs symmetric quantization)"))
    scale = g.array(node.input[1])
    if scale is None:
        problems.append(Problem(name, op, "scale is not a build-time constant"))
        return
    if not (scale > 0).all():
        problems.append(Problem(name, op, "scale has zero or negative values"))
    if scale.size == 1:
        return
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    if scale.ndim != 1 or axis != 0:
        problems.append(Problem(name, op, f"per-channel scale must be 1-D on axis 0 (shape {scale.shape}, "
                                          f"axis {axis})"))
    data = node.input[0]
    if op == "QuantizeLinear" and not g.is_constant(data):
        problems.append(Problem(name, op, "per-channel scale on an activation (TensorRT quantizes activations "
                                          "per tensor)"))
    weight = g.array(data) if op == "QuantizeLinear" else None
    if weight is not None and weight.ndim and weight.shape[0] != scale.size:
        problems.append(Problem(name, op, f"{scale.size} scales for {weight.shape[0]} output channels"))


def _gemm_input_problem(g: GraphIndex, tensor: str) -> str | None:
    """Why this GEMM input is not quantized, or None when it comes through Q/DQ."""
    seen = 0
    while True:
        node = g.producer.get(tensor)
        if node is None:
            return "is not fed by DequantizeLinear"
        if node.op_type == "DequantizeLinear":
            source = g.producer.get(node.input[0])
            if source is not None and source.op_type == "QuantizeLinear":
                return None
            if g.is_constant(node.input[0]):
                return None
            return "DequantizeLinear is fed neither by QuantizeLinear nor by a constant weight"
        if node.op_type not in LAYOUT_OPS or seen > 16:
            return f"is fed by {node.op_type} ({node.name}), not by Q/DQ"
        tensor, seen = node.input[0], seen + 1


def _quantized_neighbour(g: GraphIndex, node, consumers: dict) -> str | None:
    """Why a fused recurrent node has Q/DQ around it, or None when it has none."""
    for index, tensor in enumerate(node.input):
        seen = 0
        while tensor and seen <= 16:
            producer = g.producer.get(tensor)
            if producer is None:
                break
            if producer.op_type in ("DequantizeLinear", "QuantizeLinear"):
                return f"input {index} ({node.input[index]}) comes through {producer.op_type} ({producer.name})"
            if producer.op_type not in LAYOUT_OPS and producer.op_type != "Cast":
                break
            tensor, seen = producer.input[0], seen + 1
    for out in node.output:
        for consumer in consumers.get(out, ()):
            if consumer.op_type == "QuantizeLinear":
                return f"output {out} feeds QuantizeLinear ({consumer.name}) directly"
    return None


def check_qdq(model_or_path, recurrence: str = "unrolled") -> list[Problem]:
    """Every way the graph breaks TensorRT's explicit INT8 rules under the precision plan's `recurrence`
    ("unrolled" or "fused"; an empty list means it passes)."""
    if recurrence not in RECURRENCE_PLANS:
        raise FogError(f"recurrence {recurrence!r}: the Q/DQ checker knows {RECURRENCE_PLANS}")
    model = _load(model_or_path)
    g = GraphIndex(model)
    consumers: dict[str, list] = {}
    for node in g.nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    problems: list[Problem] = []
    _check_shapes(model, problems)
    n_gemm = 0
    for node in g.nodes:
        name, op = node.name or node.output[0], node.op_type
        if op in FUSED_RECURRENT_OPS and recurrence == "fused":
            why = _quantized_neighbour(g, node, consumers)
            if why:
                problems.append(Problem(name, op, f"fused recurrent node with Q/DQ around it ({why}); the plan "
                                                  "keeps it in float (TensorRT never quantizes LSTM/GRU/RNN)"))
        elif op in FUSED_RECURRENT_OPS or op in CONTROL_FLOW_OPS:
            problems.append(Problem(name, op, "recurrent/control-flow node: TensorRT cannot run it in INT8; "
                                              "convert the model with models.qat.to_qat (static unrolling) or "
                                              "export with the fused recurrence plan (--recurrence fused)"))
        elif op in INTEGER_OPS:
            problems.append(Problem(name, op, "integer-op quantization; TensorRT needs Q/DQ (QDQ format)"))
        elif op in ("QuantizeLinear", "DequantizeLinear"):
            _check_qdq_node(g, node, problems)
        elif op in GEMM_OPS:
            n_gemm += 1
            for index in (0, 1):
                why = _gemm_input_problem(g, node.input[index])
                if why:
                    problems.append(Problem(name, op, f"input {index} ({node.input[index]}) {why}"))
    if n_gemm == 0:
        problems.append(Problem("<graph>", "graph", "no MatMul/Gemm at all: is this the model you meant?"))
    return problems


def assert_qdq(model_or_path, recurrence: str = "unrolled") -> None:
    """Raise FogError naming each failing node when the graph breaks a Q/DQ rule."""
    problems = check_qdq(model_or_path, recurrence)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise FogError(f"the INT8 ONNX graph breaks {len(problems)} TensorRT Q/DQ rule(s):\n{lines}\n"
                       "Export a calibrated models.qat variant (to_qat, calibrate, set_quantization(True)).")
