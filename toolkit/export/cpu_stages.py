"""Cut a graph whose bidirectional LSTMs were split (toolkit.export.lstm_split) into stages, so the device runs the
two directions of each LSTM at the same time (deploy.engines.staged).

Why stages: onnxruntime 1.32 runs the nodes of a CPU graph one after the other even in its parallel execution mode
(ORT_PARALLEL with two inter-op threads, with or without a `session.node_partition_config_file` naming two
streams: measured, the two branches' kernels never overlap in its profile). Each stage is its own session; the
device runs the stages of one step concurrently from two threads (onnxruntime releases the GIL while it runs).

A *step* is a list of stages that may run concurrently: the recurrent nodes sharing one input (a forward and a
reverse LSTM) form a step of one-node stages; the nodes between them form steps of one stage each. Every stage
names its input and output tensors, so the plan is data (the manifest's `onnxruntime.staged`) and the device needs
nothing but onnxruntime to follow it.
"""
from __future__ import annotations

from pathlib import Path

from deploy.lazy import lazy_import

onnx = lazy_import("onnx", "workstation", "cutting ONNX graphs into stages")

RECURRENT_OPS = ("LSTM", "GRU", "RNN")


def cut(model, out_dir, prefix: str = "stage") -> dict:
    """Write the stages of `model` (an onnx.ModelProto, float) into `out_dir` as `<prefix>_<n>.onnx`; returns the
    plan {"steps": [[{"file", "inputs", "outputs"}, ...], ...], "input": name, "output": name} with files
    relative to `out_dir`. A graph with no parallel branch gives one step of one stage (the whole graph)."""
    graph = onnx.shape_inference.infer_shapes(model).graph
    segments = _segments(list(graph.node))
    steps, index = [], 0
    for step in segments:
        stages = []
        for nodes in step:
            name = f"{prefix}_{index}.onnx"
            inputs, outputs = _boundary(nodes, segments, graph)
            onnx.save(_stage_model(model, graph, nodes, inputs, outputs), str(Path(out_dir) / name))
            stages.append({"file": name, "inputs": inputs, "outputs": outputs})
            index += 1
        steps.append(stages)
    return {"steps": steps, "input": graph.input[0].name, "output": graph.output[0].name}


def parallel_steps(plan: dict) -> int:
    return sum(1 for step in plan["steps"] if len(step) > 1)


def _branch_groups(nodes) -> dict[str, list]:
    """Recurrent nodes grouped by their input sequence: groups of two or more can run concurrently."""
    groups: dict[str, list] = {}
    for node in nodes:
        if node.op_type in RECURRENT_OPS:
            groups.setdefault(node.input[0], []).append(node)
    return {x: group for x, group in groups.items() if len(group) > 1}


def _segments(nodes) -> list[list[list]]:
    """Steps of stages of nodes, in graph order: a group of branches where its first member stands, every other
    node in the sequential stage around it."""
    groups = _branch_groups(nodes)
    in_group = {id(n): x for x, group in groups.items() for n in group}
    steps, current, placed = [], [], set()
    for node in nodes:
        x = in_group.get(id(node))
        if x is not None and x not in placed and _inputs_ready(groups[x]):
            if current:
                steps.append([current])
                current = []
            steps.append([[member] for member in groups[x]])
            placed.add(x)
        elif x is None or x not in placed:
            current.append(node)
    if current:
        steps.append([current])
    return steps


def _inputs_ready(group) -> bool:
    """Every member's inputs come from before the group (nothing inside the group feeds another member)."""
    outputs = {o for member in group for o in member.output}
    return not any(i in outputs for member in group for i in member.input if i)


def _boundary(nodes, segments, graph) -> tuple[list[str], list[str]]:
    initializers = {i.name for i in graph.initializer}
    produced = {o for n in nodes for o in n.output if o}
    inputs = []
    for node in nodes:
        for name in node.input:
            if name and name not in produced and name not in initializers and name not in inputs:
                inputs.append(name)
    later = _consumed_after(nodes, segments) | {o.name for o in graph.output}
    outputs = [o for n in nodes for o in n.output if o and o in later]
    return inputs, outputs


def _consumed_after(nodes, segments) -> set[str]:
    flat = [stage for step in segments for stage in step]
    position = next(k for k, stage in enumerate(flat) if stage is nodes)
    return {name for stage in flat[position + 1:] for node in stage for name in node.input}


def _stage_model(model, graph, nodes, inputs, outputs):
    types = {v.name: v for v in list(graph.value_info) + list(graph.input) + list(graph.output)}
    used = {name for node in nodes for name in node.input}
    stage_graph = onnx.helper.make_graph(
        nodes, f"{graph.name}-stage", [_typed(types, name) for name in inputs],
        [_typed(types, name) for name in outputs], [i for i in graph.initializer if i.name in used])
    stage = onnx.helper.make_model(stage_graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    onnx.checker.check_model(stage)
    return stage


def _typed(types: dict, name: str):
    if name not in types:
        raise ValueError(f"{name}: no type known after shape inference, so it cannot be a stage boundary; "
                         "export a graph with static shapes")
    return types[name]
