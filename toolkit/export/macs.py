"""Count a model's multiply-accumulates (MACs) and its graph structure from its ONNX file.

One counter for every backend: the ONNX graph, after shape inference, is what every engine runs, so PyTorch
eager, onnxruntime and TensorRT are all read against the same MAC figure (the fp32 graph's; an INT8 graph of the
same model has the same MatMuls plus Q/DQ). Counted: MatMul / MatMulInteger / DynamicQuantizeMatMul / Gemm and
onnxruntime's fused forms (M*N*K per matrix product), Conv / FusedConv (output elements * C_in/group * kernel
size), LSTM / GRU / RNN and onnxruntime's DynamicQuantizeLSTM (steps * batch * directions * gates * H * (I+H)),
onnxruntime's MultiHeadAttention (its two products: 2 * batch * L_q * L_kv * width).
Elementwise ops, softmax and normalization are not counted: they are memory-bound and small beside the products.
A node whose shapes inference cannot resolve counts as 0 and is named in `unresolved`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from pathlib import Path

from deploy.lazy import lazy_import

onnx = lazy_import("onnx", "workstation", "counting MACs of ONNX graphs")  # the device never counts MACs

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


@dataclass
class GraphStats:
    nodes: int
    qdq_nodes: int
    macs: int
    onnx_bytes: int
    initializer_elements: int
    op_counts: dict[str, int] = field(default_factory=dict)
    unresolved: list[str] = field(default_factory=list)

    def structure(self) -> dict:
        """The fields a regression baseline pins exactly."""
        return {"nodes": self.nodes, "qdq_nodes": self.qdq_nodes, "macs": self.macs, "onnx_bytes": self.onnx_bytes}


def _shapes(model) -> dict[str, list[int | None]]:
    """Static shape of every named tensor (inputs, outputs, initializers, inferred intermediates)."""
    out = {}
    graph = model.graph
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        dims = vi.type.tensor_type.shape.dim
        if vi.type.tensor_type.HasField("shape"):
            out[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    for init in graph.initializer:
        out[init.name] = list(init.dims)
    return out


def _known(shape) -> bool:
    return shape is not None and all(isinstance(d, int) and d > 0 for d in shape)


def _node_macs(node, shapes) -> int | None:
    op = node.op_type
    get = shapes.get
    if op in ("MatMul", "MatMulInteger", "DynamicQuantizeMatMul"):
        a, b, y = get(node.input[0]), get(node.input[1]), get(node.output[0])
        if _known(a) and _known(b) and len(b) == 2 and not _known(y):  # a contrib op ONNX inference does not know
            y = shapes[node.output[0]] = [*a[:-1], b[1]]
        if not (_known(a) and _known(y)):
            return None
        return prod(y) * a[-1]  # every output element is a dot product of length K
    if op == "FusedMatMul":  # onnxruntime's MatMul with transposes folded in (graphs saved by its optimizer)
        a, y = get(node.input[0]), get(node.output[0])
        if not (_known(a) and _known(y)):
            return None
        trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
        return prod(y) * (a[-2] if trans_a else a[-1])
    if op in ("Gemm", "FusedGemm"):
        a, y = get(node.input[0]), get(node.output[0])
        if not (_known(a) and _known(y)):
            return None
        trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
        return prod(y) * (a[0] if trans_a else a[1])
    if op in ("Conv", "FusedConv"):  # FusedConv: onnxruntime's Conv + activation
        w, y = get(node.input[1]), get(node.output[0])
        if not (_known(w) and _known(y)):
            return None
        return prod(y) * prod(w[1:])  # w: (C_out, C_in/group, *kernel)
    if op == "MultiHeadAttention":  # q (B, L_q, E), k (B, L_kv, E), v (B, L_kv, E_v): Q K^T and softmax(.) V
        q, k, v = (get(name) for name in (list(node.input[:3]) + ["", "", ""])[:3])  # packed q/k/v: unresolved
        if not (_known(q) and _known(k) and _known(v)):
            return None
        return q[0] * q[1] * k[1] * (q[2] + v[2])
    if op in GATES or op == "DynamicQuantizeLSTM":
        x, w = get(node.input[0]), get(node.input[1])  # x: (T, B, I) (layout 0); w: (dirs, gates*H, I)
        if not (_known(x) and _known(w)):
            return None
        layout = next((attr.i for attr in node.attribute if attr.name == "layout"), 0)
        steps, batch = (x[0], x[1]) if layout == 0 else (x[1], x[0])
        if op == "DynamicQuantizeLSTM":  # onnxruntime's int8 LSTM keeps its weights transposed: (dirs, I, 4*H)
            dirs, inp, gates_h = w
            return steps * batch * dirs * gates_h * (inp + gates_h // GATES["LSTM"])
        dirs, gates_h, inp = w
        hidden = gates_h // GATES[op]
        return steps * batch * dirs * gates_h * (inp + hidden)
    return 0


def count_macs(model) -> int:
    """MACs of an ONNX model (a path or a loaded onnx.ModelProto), as `graph_stats` counts them."""
    return graph_stats(model).macs


def _inferred(model):
    """`model` after ONNX shape inference, which does not know onnxruntime's MultiHeadAttention: where a graph
    saved by onnxruntime's optimizer lost its output's shape, it is added ((B, L_q, E_v) from q and v) and the
    inference run again, so the nodes after it resolve too."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # a graph inference cannot walk still has its node counts
        return model
    shapes = _shapes(inferred)
    added = []
    for node in inferred.graph.node:
        if node.op_type == "MultiHeadAttention" and not _known(shapes.get(node.output[0])):
            q, v = shapes.get(node.input[0]), shapes.get(node.input[2]) if len(node.input) > 2 else None
            if _known(q) and _known(v) and len(q) == len(v) == 3:
                added.append(onnx.helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT,
                                                                [q[0], q[1], v[2]]))
    if not added:
        return inferred
    inferred.graph.value_info.extend(added)
    try:
        return onnx.shape_inference.infer_shapes(inferred, data_prop=True)
    except Exception:
        return inferred


def graph_stats(model) -> GraphStats:
    """Node and Q/DQ counts, MACs, file size of an ONNX model (a path, or a loaded ModelProto: size serialized)."""
    if isinstance(model, onnx.ModelProto):
        size = model.ByteSize()
    else:
        path = Path(model)
        model = onnx.load(str(path), load_external_data=False)
        size = path.stat().st_size
    inferred = _inferred(model)
    shapes = _shapes(inferred)
    ops: dict[str, int] = {}
    macs = 0
    unresolved = []
    for node in inferred.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
        n = _node_macs(node, shapes)
        if n is None:
            unresolved.append(node.name or node.op_type)
        else:
            macs += n
    return GraphStats(
        nodes=len(inferred.graph.node),
        qdq_nodes=sum(ops.get(op, 0) for op in QDQ_OPS),
        macs=int(macs),
        onnx_bytes=size,
        initializer_elements=sum(prod(i.dims) for i in model.graph.initializer),
        op_counts=dict(sorted(ops.items())),
        unresolved=unresolved,
    )
