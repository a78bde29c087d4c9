"""Static checks of an exported ONNX graph against a target: everything that can be proved without TensorRT.

Each check returns a `Check(name, passed, detail)`; the exporter records them all in the manifest and stops at the
first failing set with a message naming node, op and target (`assert_checks`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from deploy.errors import FogError
from deploy.lazy import lazy_import
from toolkit.export.qdq import check_qdq
from toolkit.export.targets import Target, op_table

onnx = lazy_import("onnx", "workstation", "checking ONNX graphs")
onnx_reference = lazy_import("onnx.reference", "workstation", "folding constants in ONNX graphs")

RECURRENT_OPS = ("LSTM", "GRU", "RNN", "Loop", "Scan")
# Nodes that legitimately have only constant inputs after folding: weight fake-quant pairs stay as Q->DQ on FP32
# weights (TensorRT quantizes them itself with the Q scale), Constant nodes are the constants, and Identity on a
# shared weight is free.
_FOLD_EXEMPT = ("QuantizeLinear", "DequantizeLinear", "Constant", "Identity")


class TargetCheckError(FogError):
    """The exported graph cannot run on the target; the message names node, op and target."""


@dataclass
class Check:
    name: str
    passed: bool
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)


def _trt_name(target: Target) -> str:
    return f"TensorRT {target.tensorrt} (target {target.name})"


def check_onnx_checker(model) -> Check:
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        return Check("onnx checker", False, str(exc).splitlines()[0])
    return Check("onnx checker", True, "valid ONNX")


def check_shape_inference(model) -> tuple[Check, object]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except Exception as exc:  # onnx raises InferenceError and friends; any failure is the check's answer
        return Check("shape inference", False, str(exc).splitlines()[0]), model
    return Check("shape inference", True, f"{len(inferred.graph.value_info)} intermediate tensors typed"), inferred


def _dims(value_info) -> list:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in value_info.type.tensor_type.shape.dim]


def check_static_shapes(model) -> Check:
    bad = []
    for vi in list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info):
        dims = _dims(vi)
        if any(not isinstance(d, int) or d < 0 for d in dims):  # 0 is static: an empty shape slice
            bad.append(f"{vi.name} {dims}")
    io = ", ".join(f"{vi.name} {_dims(vi)}" for vi in list(model.graph.input) + list(model.graph.output))
    if bad:
        return Check("static shapes", False, f"dynamic dimensions in {', '.join(bad[:5])}; export with a fixed "
                                              "batch and window")
    return Check("static shapes", True, io)


def opset_of(model) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def check_opset(model, target: Target) -> Check:
    opset = opset_of(model)
    others = sorted({o.domain for o in model.opset_import if o.domain not in ("", "ai.onnx")})
    if not target.opset_min <= opset <= target.opset_max:
        return Check("opset window", False, f"opset {opset} is outside {target.opset_min}..{target.opset_max} "
                                            f"accepted by {_trt_name(target)}; export with --opset inside it")
    if others and target.runtime == "tensorrt":
        return Check("opset window", False, f"custom op domains {others} are not parsed by {_trt_name(target)}")
    return Check("opset window", True, f"opset {opset} in {target.opset_min}..{target.opset_max}")


def check_ops(model, target: Target) -> Check:
    """Every node's op against the target's TensorRT matrix, plus the attribute restrictions that bite us."""
    if target.optable is None:
        return Check("operators", True, "no TensorRT: ONNX Runtime loads the model in verification")
    table = op_table(target.optable)["ops"]
    problems = []
    for node in model.graph.node:
        where = f"node {node.name!r} (op {node.op_type})"
        entry = table.get(node.op_type)
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"{where}: custom domain {node.domain!r} is not supported by {_trt_name(target)}")
        elif entry is None:
            problems.append(f"{where}: not in the TensorRT {target.optable} operator table, so "
                            f"{_trt_name(target)} cannot import it")
        elif not entry["supported"]:
            problems.append(f"{where}: not supported by {_trt_name(target)}")
        elif node.op_type in ("LSTM", "GRU", "RNN"):
            attrs = {a.name: a for a in node.attribute}
            if "layout" in attrs and attrs["layout"].i != 0:
                problems.append(f"{where}: layout={attrs['layout'].i}, {_trt_name(target)} needs layout=0")
            if "input_forget" in attrs and attrs["input_forget"].i != 0:
                problems.append(f"{where}: input_forget must be 0 for {_trt_name(target)}")
    ops = sorted({n.op_type for n in model.graph.node})
    note = f" ({target.optable_note})" if target.optable_note else ""
    if problems:
        more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        return Check("operators", False, "; ".join(problems[:5]) + more)
    return Check("operators", True, f"{len(ops)} op types, all in the TensorRT {target.optable} table{note}")


def check_precision(model, target: Target, precision: str) -> Check:
    if precision not in target.precisions:
        return Check("precision", False, f"precision {precision} is not available on target {target.name} "
                                         f"(it offers {', '.join(target.precisions)})")
    has_qdq = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)
    if has_qdq and not target.int8:
        node = next(n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear"))
        return Check("precision", False, f"node {node.name!r} (op {node.op_type}): target {target.name} has no "
                                         "INT8 hardware; export an fp16/fp32 model for it")
    return Check("precision", True, f"{precision} on {target.name}")


def check_no_recurrent_ops(model) -> Check:
    """INT8 graphs must be unrolled: TensorRT never runs ONNX LSTM/GRU/RNN (loops) in INT8."""
    found = [f"node {n.name!r} (op {n.op_type})" for n in model.graph.node if n.op_type in RECURRENT_OPS]
    if found:
        return Check("int8 graph unrolled", False, f"{', '.join(found[:3])}: recurrent ops cannot run in INT8 on "
                                                   "TensorRT; export the unrolled QAT variant")
    return Check("int8 graph unrolled", True, "no LSTM/GRU/RNN/Loop/Scan nodes")


def _fp16_inputs(model, node) -> list[str]:
    """The float inputs of a fused node that are not FP16 (initializer of another type, or not made by a Cast to
    FP16): what a strongly typed network would run in FP32."""
    fp16 = onnx.TensorProto.FLOAT16
    inits = {t.name: t.data_type for t in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    wrong = []
    for i, name in enumerate(node.input):
        if not name or i == 4:  # sequence_lens is int32
            continue
        if name in inits:
            ok = inits[name] == fp16
        else:
            cast = producers.get(name)
            ok = cast is not None and cast.op_type == "Cast" and any(a.name == "to" and a.i == fp16
                                                                     for a in cast.attribute)
        if not ok:
            wrong.append(f"input {i} ({name})")
    return wrong


def check_fused_recurrence(model, target: Target, strongly_typed: bool) -> Check:
    """The fused plan: LSTM/GRU/RNN nodes the target's table runs in FP16, no loops; on a strongly typed
    TensorRT, FP16 written into the graph (every float input of the node FP16)."""
    fused = [n for n in model.graph.node if n.op_type in ("LSTM", "GRU", "RNN")]
    loops = [f"node {n.name!r} (op {n.op_type})" for n in model.graph.node if n.op_type in ("Loop", "Scan")]
    table = op_table(target.optable)["ops"] if target.optable else {}
    problems = list(loops)
    for node in fused:
        types = table.get(node.op_type, {}).get("types", ["FP16"] if not table else [])
        if "FP16" not in types:
            problems.append(f"node {node.name!r} (op {node.op_type}): the TensorRT {target.optable} table lists "
                            f"{types}, no FP16")
        if strongly_typed:
            problems += [f"node {node.name!r} (op {node.op_type}) {w} is not FP16 (strongly typed: cast it)"
                         for w in _fp16_inputs(model, node)]
    if problems:
        return Check("fused recurrence in FP16", False, "; ".join(problems[:5]))
    where = ("FP16 written into the graph (Casts, FP16 weights) for a strongly typed network" if strongly_typed
             else "FP16 under the builder's FP16 flag" if target.runtime == "tensorrt" else "onnxruntime float kernel")
    return Check("fused recurrence in FP16", True, f"{len(fused)} fused {'/'.join(sorted({n.op_type for n in fused}))}"
                                                   f" node(s), FP16 in the TensorRT {target.optable} table; {where}")


def check_qdq_rules(model, target: Target, recurrence: str = "unrolled") -> Check:
    # check_qdq is the QAT helper's checker too: one Q/DQ rule book for the project
    problems = list(check_qdq(model, recurrence))
    if target.qdq_zero_point_required:
        for node in model.graph.node:
            if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) < 3:
                problems.append(f"node {node.name!r} (op {node.op_type}): {_trt_name(target)} requires the "
                                "explicit zero-point input")
    n_qdq = sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)
    if problems:
        return Check("Q/DQ rules", False, "; ".join(str(p) for p in problems[:5]))
    if n_qdq == 0:
        return Check("Q/DQ rules", False, "an INT8 model without QuantizeLinear/DequantizeLinear nodes")
    return Check("Q/DQ rules", True, f"{n_qdq} Q/DQ nodes, symmetric, constant scales")


def _constants(model) -> set[str]:
    names = {i.name for i in model.graph.initializer}
    return names | {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}


def _foldable(model) -> list:
    """Nodes computing only from constants (transitively), in graph order; Q/DQ weight pairs are exempt."""
    constant, found = _constants(model), []
    for node in model.graph.node:
        if node.op_type not in _FOLD_EXEMPT and node.input and all(i in constant or i == "" for i in node.input):
            found.append(node)
            constant |= set(node.output)
    return found


def fold_constants(model) -> int:
    """Replace foldable nodes by initializers (what the exporter's folding leaves behind, e.g. a Split of a bias
    into gates). Evaluated with ONNX's reference implementation, one node at a time; returns how many were folded."""
    numpy_helper, ReferenceEvaluator = onnx.numpy_helper, onnx_reference.ReferenceEvaluator  # noqa: N806
    shapes = static_shapes(model)
    folded_shapes = 0
    for node in list(model.graph.node):  # with static shapes a Shape node is a constant: fold it first
        if node.op_type == "Shape" and node.input[0] in shapes:
            attrs = {a.name: a.i for a in node.attribute}
            dims = shapes[node.input[0]]
            value = np.array(dims[attrs.get("start", 0):attrs.get("end", len(dims))], dtype=np.int64)
            model.graph.node.remove(node)
            model.graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
            folded_shapes += 1
    nodes = _foldable(model)
    if not nodes:
        if folded_shapes:
            _drop_unused(model)
        return folded_shapes
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            values.update(zip(node.output, ReferenceEvaluator(node).run(None, {})))
    for node in nodes:
        feeds = {i: values[i] for i in node.input if i}
        values.update(zip(node.output, ReferenceEvaluator(node).run(None, feeds)))
        model.graph.node.remove(node)
        for name in node.output:
            if name:
                model.graph.initializer.append(numpy_helper.from_array(values[name], name))
    _drop_unused(model)
    return folded_shapes + len(nodes)


def static_shapes(model) -> dict[str, list[int]]:
    """{tensor: dims} of every tensor ONNX shape inference resolves (dims as ints; {} when inference fails)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # no shapes, no Shape folding; the checks report why
        return {}
    shapes = {}
    for vi in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        dims = _dims(vi)
        if vi.type.tensor_type.HasField("shape") and all(isinstance(d, int) for d in dims):
            shapes[vi.name] = dims
    return shapes


def _drop_unused(model) -> None:
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    for node in [n for n in model.graph.node if n.op_type == "Constant" and n.output[0] not in used]:
        model.graph.node.remove(node)
    for init in [i for i in model.graph.initializer if i.name not in used]:
        model.graph.initializer.remove(init)


def check_constant_folding(model) -> Check:
    foldable = [f"node {n.name!r} (op {n.op_type})" for n in _foldable(model)]
    if foldable:
        return Check("constant folding", False, f"{len(foldable)} nodes compute constants at run time, e.g. "
                                                f"{foldable[0]}; export with constant folding")
    return Check("constant folding", True, f"{len(model.graph.node)} nodes, none foldable")


def run_checks(model, target: Target, precision: str, *, int8_graph: bool = False, recurrence: str = "unrolled",
               strongly_typed: bool = False) -> list[Check]:
    """All static checks of one graph. `int8_graph`: the Q/DQ model (adds the precision plan's recurrence rules,
    unrolled or fused, and the Q/DQ rules)."""
    checks = [check_onnx_checker(model)]
    shape_check, inferred = check_shape_inference(model)
    checks += [shape_check, check_static_shapes(inferred), check_opset(model, target), check_ops(model, target),
               check_precision(model, target, precision), check_constant_folding(model)]
    if int8_graph:
        if recurrence == "fused":
            checks.append(check_fused_recurrence(model, target, strongly_typed))
        elif target.runtime == "tensorrt":
            checks.append(check_no_recurrent_ops(model))
        checks.append(check_qdq_rules(model, target, recurrence))
    return checks


def assert_checks(checks: list[Check], label: str, target: Target) -> None:
    failed = [c for c in checks if not c.passed]
    if failed:
        lines = "\n  - ".join(f"{c.name}: {c.detail}" for c in failed)
        raise TargetCheckError(f"{label} cannot be deployed to target {target.name}:\n  - {lines}")
