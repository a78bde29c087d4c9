"""toolkit.export.qdq on small hand-built graphs: a good Q/DQ MatMul passes, each broken rule is reported by node."""
from __future__ import annotations

import time

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from deploy.errors import FogError  # noqa: E402
from toolkit.export.qdq import assert_qdq, check_qdq  # noqa: E402

OUT, IN = 4, 3


def _graph(*, x_shape=(2, IN), zp_dtype=np.int8, zp_value=0, act_scale=np.float32(0.1), weight_axis=0,
           weight_scale=None, drop_zero_point=False, quantize_x=True, extra_nodes=(), opset=17):
    """x -> Q/DQ -> MatMul(., DQ(Q(W))^T) -> y, with knobs that break one rule at a time."""
    weight = np.random.default_rng(0).standard_normal((OUT, IN)).astype(np.float32)
    w_scale = (np.abs(weight).max(1) / 127).astype(np.float32) if weight_scale is None else weight_scale
    inits = [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(np.asarray(w_scale), "w_scale"),
             numpy_helper.from_array(np.zeros(OUT, np.int8), "w_zero"),
             numpy_helper.from_array(np.asarray(act_scale, np.float32), "x_scale"),
             numpy_helper.from_array(np.asarray(zp_value, zp_dtype), "x_zero")]
    x_zero = [] if drop_zero_point else ["x_zero"]
    nodes = []
    if quantize_x:
        nodes += [helper.make_node("QuantizeLinear", ["x", "x_scale", *x_zero], ["xq"], name="x_q"),
                  helper.make_node("DequantizeLinear", ["xq", "x_scale", *x_zero], ["xdq"], name="x_dq")]
    nodes += [helper.make_node("QuantizeLinear", ["W", "w_scale", "w_zero"], ["wq"], name="w_q", axis=weight_axis),
              helper.make_node("DequantizeLinear", ["wq", "w_scale", "w_zero"], ["wdq"], name="w_dq",
                               axis=weight_axis),
              helper.make_node("Transpose", ["wdq"], ["wt"], name="w_t", perm=[1, 0]),
              helper.make_node("MatMul", ["xdq" if quantize_x else "x", "wt"], ["y"], name="the_matmul"),
              *extra_nodes]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, (x_shape[0], OUT))], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _messages(model) -> list[str]:
    return [str(p) for p in check_qdq(model)]


def test_a_well_formed_qdq_matmul_passes(tmp_path):
    model = _graph()
    assert check_qdq(model) == []
    path = tmp_path / "good.onnx"
    onnx.save(model, path)
    assert check_qdq(path) == [] and check_qdq(str(path)) == []
    assert_qdq(path)


@pytest.mark.parametrize("knobs, node, words", [
    (dict(quantize_x=False), "the_matmul", "input 0"),
    (dict(drop_zero_point=True), "x_q", "no zero-point input"),
    (dict(zp_dtype=np.uint8), "x_q", "not int8"),
    (dict(zp_value=3), "x_dq", "non-zero zero point"),
    (dict(act_scale=np.float32(-0.1)), "x_q", "zero or negative"),
    (dict(act_scale=np.full(2, 0.1, np.float32)), "x_q", "per-channel scale on an activation"),
    (dict(weight_axis=1), "w_q", "1-D on axis 0"),
    (dict(weight_scale=np.full(OUT + 1, 0.1, np.float32)), "w_q", "scales for 4 output channels"),
    (dict(x_shape=("batch", IN)), "x", "dynamic dimension"),
])
def test_each_broken_rule_is_reported_with_its_node(knobs, node, words):
    messages = _messages(_graph(**knobs))
    assert any(m.startswith(node) and words in m for m in messages), messages


def test_recurrent_and_integer_ops_are_rejected():
    lstm = helper.make_node("LSTM", ["x", "W", "W"], ["h"], name="fused_lstm", hidden_size=OUT)
    qlin = helper.make_node("MatMulInteger", ["x", "W"], ["yi"], name="int_mm")
    messages = _messages(_graph(extra_nodes=(lstm, qlin)))
    assert any(m.startswith("fused_lstm (LSTM)") for m in messages), messages
    assert any(m.startswith("int_mm (MatMulInteger)") for m in messages), messages


def test_dequantize_of_an_activation_without_quantize_is_rejected():
    model = _graph()
    for node in model.graph.node:
        if node.name == "x_dq":
            node.input[0] = "x"     # DQ straight on the float input: nothing was quantized
    messages = _messages(model)
    assert any(m.startswith("the_matmul") and "neither by QuantizeLinear" in m for m in messages), messages


def test_assert_qdq_names_every_failing_node():
    with pytest.raises(FogError) as raised:
        assert_qdq(_graph(quantize_x=False, weight_axis=1))
    text = str(raised.value)
    assert "the_matmul (MatMul)" in text and "w_q (QuantizeLinear)" in text and "w_dq (DequantizeLinear)" in text


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(FogError, match="no such ONNX file"):
        check_qdq(tmp_path / "absent.onnx")


def _recurrent_chain(steps: int, hidden: int = 8):
    """An unrolled recurrence of `steps` steps, 5 nodes each, with Q/DQ on every MatMul input."""
    scale = numpy_helper.from_array(np.float32(0.05), "s")
    zero = numpy_helper.from_array(np.int8(0), "z")
    weight = numpy_helper.from_array(np.ones((hidden, hidden), np.float32), "W")
    w_scale = numpy_helper.from_array(np.full(hidden, 0.01, np.float32), "ws")
    w_zero = numpy_helper.from_array(np.zeros(hidden, np.int8), "wz")
    nodes = [helper.make_node("QuantizeLinear", ["W", "ws", "wz"], ["wq"], axis=0, name="wq"),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wdq"], axis=0, name="wdq")]
    previous = "x"
    for t in range(steps):
        nodes += [helper.make_node("QuantizeLinear", [previous, "s", "z"], [f"q{t}"], name=f"q{t}"),
                  helper.make_node("DequantizeLinear", [f"q{t}", "s", "z"], [f"dq{t}"], name=f"dq{t}"),
                  helper.make_node("MatMul", [f"dq{t}", "wdq"], [f"m{t}"], name=f"mm{t}"),
                  helper.make_node("Tanh", [f"m{t}"], [f"t{t}"], name=f"tanh{t}"),
                  helper.make_node("Add", [f"t{t}", previous], [f"h{t}"], name=f"add{t}")]
        previous = f"h{t}"
    graph = helper.make_graph(nodes, "big", [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, hidden))],
                              [helper.make_tensor_value_info(previous, TensorProto.FLOAT, (1, hidden))],
                              [scale, zero, weight, w_scale, w_zero])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_large_graph_is_checked_in_time_linear_in_its_nodes():
    """~70k nodes (the size of a 1st-place unrolled BiLSTM): indexing once keeps the check linear in the graph, so
    8x the steps costs about 8x the time (a search per node would cost 64x). Compared in this run, in this thread's
    CPU time (not a wall-clock limit), the smaller graph's best of two."""
    small, large = _recurrent_chain(1_750), _recurrent_chain(14_000)

    def cpu_s(model) -> float:
        start = time.thread_time()
        assert check_qdq(model) == []
        return time.thread_time() - start
    reference = min(cpu_s(small), cpu_s(small))
    ratio = cpu_s(large) / reference
    assert ratio < 24, f"8x the steps took {ratio:.1f}x the time: the check is not linear in the graph"
