"""Split each bidirectional ONNX LSTM node into a forward and a reverse LSTM node, so onnxruntime can run the two
directions at the same time.

onnxruntime's LSTM kernels (LSTM, and DynamicQuantizeLSTM after dynamic quantization) run a bidirectional node's
two directions one after the other, and at batch 1 each step is a matrix-vector product too small to share between
threads: a second core hardly helps. Two unidirectional nodes have no data dependence on each other, so a session
in parallel execution mode (deploy.engines.onnxruntime: `execution_mode` "parallel", two inter-op threads) runs
them concurrently.

The split is exact: the forward node takes direction 0's weights, biases, peepholes and initial states, the reverse
node (direction "reverse") direction 1's, and their outputs are concatenated along the direction axis, which is
the bidirectional node's output layout (Y [seq, 2, batch, hidden], Y_h/Y_c [2, batch, hidden]). Outputs nobody
reads are dropped. Nodes in the batch-first layout (layout=1) are left whole: onnxruntime has no kernel for them, so
the split could not be verified.
"""
from __future__ import annotations

from deploy.lazy import lazy_import

onnx = lazy_import("onnx", "workstation", "editing ONNX graphs")
numpy_helper = lazy_import("onnx.numpy_helper", "workstation", "editing ONNX graphs")

# Inputs indexed per direction on axis 0 (the weights) or on the direction axis (the initial states).
WEIGHT_INPUTS = {1: "W", 2: "R", 3: "B", 7: "P"}
STATE_INPUTS = {5: "initial_h", 6: "initial_c"}
PER_DIRECTION_LISTS = ("activations", "activation_alpha", "activation_beta")


def split_bidirectional_lstms(model) -> int:
    """Rewrite `model` (an onnx.ModelProto) in place; returns how many bidirectional LSTM nodes it split."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        raise ValueError(f"opset {opset}: splitting LSTMs needs opset >= 13 (Split takes its sizes as an input); "
                         "export with a newer opset")
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    consumed = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    new_nodes, split = [], 0
    for node in graph.node:
        if node.op_type == "LSTM" and _attribute(node, "direction", b"forward") == b"bidirectional" \
                and not _attribute(node, "layout", 0):
            new_nodes += _split(node, graph, initializers, consumed)
            split += 1
        else:
            new_nodes.append(node)
    del graph.node[:]
    graph.node.extend(new_nodes)
    _drop_unused_initializers(graph)
    return split


def split_file(path, out_path) -> int:
    """`split_bidirectional_lstms` from file to file (checked by onnx before it is written)."""
    model = onnx.load(str(path))
    count = split_bidirectional_lstms(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(out_path))
    return count


def _attribute(node, name, default=None):
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def _split(node, graph, initializers, consumed) -> list:
    """The nodes replacing `node`; outputs nobody reads (`consumed`: names read by a node or a graph output) are
    dropped rather than concatenated."""
    halves = ({"direction": "forward", "suffix": "fwd", "index": 0},
              {"direction": "reverse", "suffix": "rev", "index": 1})
    nodes = []
    state_splits = {}
    for position in STATE_INPUTS:
        name = node.input[position] if len(node.input) > position else ""
        if name:
            parts = [f"{node.name}/{STATE_INPUTS[position]}_{h['suffix']}" for h in halves]
            nodes.append(onnx.helper.make_node("Split", [name, _split_sizes(graph, node.name)], parts,
                                               name=f"{node.name}/split_{STATE_INPUTS[position]}", axis=0))
            state_splits[position] = parts
    outputs = [out if out in consumed else "" for out in list(node.output) + [""] * (3 - len(node.output))]
    for half in halves:
        inputs = list(node.input)
        for position in WEIGHT_INPUTS:
            if len(inputs) > position and inputs[position]:
                inputs[position] = _weight_half(inputs[position], half, initializers, graph, node.name)
        for position, parts in state_splits.items():
            inputs[position] = parts[half["index"]]
        half_outputs = [f"{out}_{half['suffix']}" if out else "" for out in outputs]
        nodes.append(onnx.helper.make_node("LSTM", inputs, _trim(half_outputs), name=f"{node.name}_{half['suffix']}",
                                           **_half_attributes(node, half)))
        half["outputs"] = half_outputs
    for k, out in enumerate(outputs):
        if out:
            axis = 1 if k == 0 else 0  # Y [seq, dir, batch, hidden]; Y_h, Y_c [dir, batch, hidden]
            nodes.append(onnx.helper.make_node("Concat", [h["outputs"][k] for h in halves], [out],
                                               name=f"{node.name}/concat_{k}", axis=axis))
    return nodes


def _split_sizes(graph, node_name: str) -> str:
    """An int64 initializer [1, 1] (the Split sizes, an input since opset 13)."""
    name = f"{node_name}/split_sizes"
    if not any(i.name == name for i in graph.initializer):
        graph.initializer.append(onnx.helper.make_tensor(name, onnx.TensorProto.INT64, [2], [1, 1]))
    return name


def _weight_half(name, half, initializers, graph, node_name) -> str:
    if name not in initializers:
        raise ValueError(f"{node_name}: LSTM weight {name!r} is not an initializer; only constant weights can be "
                         "split per direction (export with constant folding on)")
    array = numpy_helper.to_array(initializers[name])
    out = f"{name}_{half['suffix']}"
    graph.initializer.append(numpy_helper.from_array(array[half["index"]:half["index"] + 1].copy(), out))
    return out


def _half_attributes(node, half) -> dict:
    attributes = {}
    for attr in node.attribute:
        value = onnx.helper.get_attribute_value(attr)
        if attr.name == "direction":
            value = half["direction"]
        elif attr.name in PER_DIRECTION_LISTS:
            per = len(value) // 2
            value = value[half["index"] * per:(half["index"] + 1) * per]
        attributes[attr.name] = value
    return attributes


def _drop_unused_initializers(graph) -> None:
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _trim(outputs: list[str]) -> list[str]:
    while outputs and not outputs[-1]:
        outputs = outputs[:-1]
    return outputs
