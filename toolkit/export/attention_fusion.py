"""Fuse torch's exported multi-head self-attention into onnxruntime's MultiHeadAttention (CPU plans only).

`torch.onnx.export` writes `nn.MultiheadAttention` as some twenty layout nodes around two MatMuls and a Softmax:
the packed in-projection is reshaped, transposed and gathered into q, k and v, each reshaped and transposed into
heads, k transposed again, q and k scaled, and the heads transposed back. onnxruntime's CPU runs every one of
those transposes and its products one by one; its contrib `com.microsoft.MultiHeadAttention` takes q, k and v as
(batch, length, width) and does the head layout, the products and the softmax in one kernel, parallel over heads.
Measured on fog-1st-place's block alone (864 patches, width 324, 6 heads, default session): 1.08x at 1 thread,
1.55x at 2; inside the dynamic plan's stages (intra-op spinning off) about even at 2 threads (docs/bench.md).

The rewrite keeps the packed in-projection (so the dynamic plan still quantizes it) and replaces everything from its
output to the out-projection's input by Transpose, Split, MultiHeadAttention, Transpose. It is pattern-exact: it
fuses only a Softmax between two MatMuls whose q, k and v trace back through layout ops alone to one packed tensor
(gathered at 0, 1, 2), with no mask; toolkit.export.cpu_graph checks the rewritten graph's outputs against the
original's before keeping it. TensorRT graphs never get it (the op is onnxruntime's own).
"""
from __future__ import annotations


import numpy as np

from deploy.lazy import lazy_import
from toolkit.export.qdq import GraphIndex

onnx = lazy_import("onnx", "workstation", "rewriting ONNX graphs")

LAYOUT_OPS = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Gather")
CONTRIB = "com.microsoft"


def _attribute(node, name, default=None):
    found = next((a for a in node.attribute if a.name == name), None)
    return default if found is None else onnx.helper.get_attribute_value(found)


class _Graph(GraphIndex):
    """qdq's index (producers, constants) plus each tensor's consumers."""

    def __init__(self, model):
        super().__init__(model)
        self.consumers: dict[str, list] = {}
        for node in self.nodes:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def made_by(self, tensor, op):
        node = self.producer.get(tensor)
        return node if node is not None and node.op_type == op else None

    def only_consumer(self, tensor, op):
        users = self.consumers.get(tensor, [])
        return users[0] if len(users) == 1 and users[0].op_type == op else None

    def scaled(self, tensor):
        """(the other input, scalar) when `tensor` is a Mul by a scalar constant, else None."""
        mul = self.made_by(tensor, "Mul")
        if mul is None:
            return None
        for this, other in ((0, 1), (1, 0)):
            value = self.array(mul.input[other])
            if value is not None and value.size == 1:
                return mul.input[this], float(value.reshape(()))
        return None

    def packed_source(self, tensor):
        """(packed tensor, gather index) reached from `tensor` through layout ops only, else None."""
        index = None
        while (node := self.producer.get(tensor)) is not None and node.op_type in LAYOUT_OPS:
            if node.op_type == "Gather":
                picked = self.array(node.input[1])
                if picked is None or picked.size != 1 or index is not None:
                    return None
                index = int(picked.reshape(()))
            tensor = node.input[0]
        return (tensor, index) if index is not None else None


def _match(graph: _Graph, softmax):
    """What one attention needs to be fused (a dict), or None when `softmax` is not torch's attention."""
    if _attribute(softmax, "axis", -1) not in (-1, 3):
        return None
    scores = graph.made_by(softmax.input[0], "MatMul")
    mixed = graph.only_consumer(softmax.output[0], "MatMul")
    if scores is None or mixed is None or mixed.input[0] != softmax.output[0]:
        return None
    q, k = graph.scaled(scores.input[0]), graph.scaled(scores.input[1])
    if q is None or k is None:
        return None
    k_transposed = graph.made_by(k[0], "Transpose")
    heads_back = graph.only_consumer(mixed.output[0], "Transpose")
    if k_transposed is None or list(_attribute(k_transposed, "perm", [])) != [0, 1, 3, 2] or heads_back is None \
            or list(_attribute(heads_back, "perm", [])) != [2, 0, 1, 3]:
        return None
    sources = [graph.packed_source(t) for t in (q[0], k_transposed.input[0], mixed.input[1])]
    if None in sources or len({s[0] for s in sources}) != 1 or [s[1] for s in sources] != [0, 1, 2]:
        return None
    return {"packed": sources[0][0], "scale": q[1] * k[1], "heads_back": heads_back}


def fuse(model, shapes: dict[str, list[int]]) -> int:
    """Rewrite every torch self-attention of `model` in place (shapes: {tensor: dims}, from shape inference);
    returns how many were fused."""
    graph = _Graph(model)
    fused = 0
    for softmax in [n for n in model.graph.node if n.op_type == "Softmax"]:
        found = _match(graph, softmax)
        heads = shapes.get(softmax.input[0])
        packed = shapes.get(found["packed"]) if found else None
        if not found or not heads or not packed or len(heads) != 4 or len(packed) != 3 or packed[2] % 3:
            continue
        _replace(model, found, num_heads=heads[1], packed=packed, tag=f"fused_attention_{fused}")
        fused += 1
    if fused:
        drop_dead_nodes(model)
        if not any(o.domain == CONTRIB for o in model.opset_import):
            model.opset_import.append(onnx.helper.make_opsetid(CONTRIB, 1))
    return fused


def _replace(model, found: dict, num_heads: int, packed: list[int], tag: str) -> None:
    """(length, batch, 3 x width) -> (batch, length, .) -> q, k, v -> MultiHeadAttention -> (length, batch, width),
    which the out-projection's Reshape reads in place of the heads' transpose back. The new tensors get their
    shapes in value_info: ONNX's shape inference (which onnxruntime's quantizer runs) cannot see through a contrib
    op."""
    helper = onnx.helper
    length, batch, width = packed[0], packed[1], packed[2] // 3
    sizes = f"{tag}_sizes"
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.array([width] * 3, np.int64), sizes))
    q, k, v = (f"{tag}_{x}" for x in "qkv")
    nodes = [helper.make_node("Transpose", [found["packed"]], [f"{tag}_batch_first"], perm=[1, 0, 2],
                              name=f"{tag}/batch_first"),
             helper.make_node("Split", [f"{tag}_batch_first", sizes], [q, k, v], axis=2, name=f"{tag}/split"),
             helper.make_node("MultiHeadAttention", [q, k, v], [f"{tag}_out"], domain=CONTRIB, num_heads=num_heads,
                              scale=found["scale"], name=f"{tag}/attention"),
             helper.make_node("Transpose", [f"{tag}_out"], [f"{tag}_length_first"], perm=[1, 0, 2],
                              name=f"{tag}/length_first")]
    shapes = {f"{tag}_batch_first": [batch, length, 3 * width], q: [batch, length, width], k: [batch, length, width],
              v: [batch, length, width], f"{tag}_out": [batch, length, width],
              f"{tag}_length_first": [length, batch, width]}
    model.graph.value_info.extend(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, dims)
                                  for name, dims in shapes.items())
    heads_back = found["heads_back"]
    for user in [n for n in model.graph.node if heads_back.output[0] in n.input]:
        user.input[:] = [f"{tag}_length_first" if i == heads_back.output[0] else i for i in user.input]
    at = list(model.graph.node).index(heads_back)
    for offset, node in enumerate(nodes):
        model.graph.node.insert(at + offset, node)


def drop_dead_nodes(model) -> None:
    """Remove the nodes, initializers and value_info no graph output depends on."""
    needed = {o.name for o in model.graph.output}
    kept = []
    for node in reversed(list(model.graph.node)):
        if any(out in needed for out in node.output):
            kept.append(node)
            needed.update(node.input)
    del model.graph.node[:]
    model.graph.node.extend(reversed(kept))
    used = {i for n in model.graph.node for i in n.input}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    produced = {o for n in model.graph.node for o in n.output}
    info = [vi for vi in model.graph.value_info if vi.name in produced]
    del model.graph.value_info[:]
    model.graph.value_info.extend(info)
