"""Targets as data: the facts of each profile, the op tables, and the static checks that name node, op and target."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from deploy.errors import FogError
from tests.conftest import shared_path
from toolkit.cli import main as cli
from toolkit.export.checks import (assert_checks, check_constant_folding, check_opset, check_ops, check_precision,
                                   check_static_shapes, fold_constants, run_checks)
from toolkit.export.targets import OPTABLES, get_target, list_targets, op_table


def test_issue_targets_with_their_facts():
    names = {t.name for t in list_targets()}
    assert {"jetson-orin-jp6", "jetson-orin-jp5", "jetson-xavier", "jetson-thor", "jetson-nano", "x86-cuda",
            "cpu"} <= names
    jetson = get_target("jetson")
    assert (jetson.name, jetson.tensorrt, jetson.optable, jetson.default_precision) == (
        "jetson-orin-jp6", "10.3", "10.1", "int8")
    for name in ("jetson-orin-jp5", "jetson-xavier"):
        t = get_target(name)
        assert t.tensorrt == "8.5.2" and not t.layernorm_op and t.export_opset <= 16 and t.qdq_zero_point_required
    nano = get_target("jetson-nano")
    assert nano.precisions == ("fp16", "fp32") and not nano.int8 and nano.opset_max == 13
    assert nano.optable == "8.5" and "8.2" in nano.optable_note
    thor = get_target("jetson-thor")
    assert (thor.tensorrt, thor.optable, thor.dla) == ("10.13", "10.15", False)
    x86 = get_target("x86-cuda")
    # x86-cuda builds strongly typed on 10.x too (STRONGLY_TYPED creation flag, trtexec --stronglyTyped), so its
    # graph carries its FP16 casts; the Jetson targets (10.3 and older) keep precision flags
    assert x86.trt_majors == (10, 11) and x86.strongly_typed(11) and x86.strongly_typed(10)
    assert x86.graph_strongly_typed and not get_target("jetson").graph_strongly_typed
    assert get_target("cpu").runtime == "onnxruntime"
    for t in list_targets():
        assert t.opset_min <= t.export_opset <= t.opset_max
        assert t.default_precision in t.precisions + ("fastest",)
        json.dumps(t.to_dict())  # the manifest carries it


def test_unknown_target_names_the_known_ones():
    with pytest.raises(FogError, match="jetson-xavier"):
        get_target("jetson-tx3")


def test_op_tables_encode_the_version_differences():
    t85, t86, t101, t1015 = (op_table(v)["ops"] for v in ("8.5", "8.6", "10.1", "10.15"))
    assert not t85["LayerNormalization"]["supported"] and t86["LayerNormalization"]["supported"]
    assert "Gelu" not in t85 and t101["Gelu"]["supported"]
    assert "Attention" in t1015 and "Attention" not in t101
    for table in (t85, t86, t101, t1015):
        assert "INT8" not in table["LSTM"]["types"] and "INT8" not in table["GRU"]["types"]
        assert table["MatMul"]["supported"] and not table["QLinearMatMul"]["supported"]
    assert (op_table("10.1")["opset_min"], op_table("10.1")["opset_max"]) == (9, 20)
    assert op_table("8.5")["opset_max"] == 17


def test_op_tables_are_what_the_generator_derives_from_the_reference():
    from toolkit.export.optables.make_optables import parse_matrix
    reference = shared_path("reference")
    for version in ("8.5", "8.6", "10.1", "10.15"):
        md = reference / f"onnx-tensorrt-operators-trt{version}.md"
        derived = {"tensorrt_table": version, **parse_matrix(md.read_text())}
        assert json.loads((OPTABLES / f"trt{version}.json").read_text()) == derived


def _model(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _layernorm_model(opset=17):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 4])
    y = helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 8, 4])
    scale = numpy_helper.from_array(np.ones(4, np.float32), "ln.weight")
    bias = numpy_helper.from_array(np.zeros(4, np.float32), "ln.bias")
    node = helper.make_node("LayerNormalization", ["x", "ln.weight", "ln.bias"], ["probs"], name="encoder/ln1",
                            axis=-1)
    return _model([node], [x], [y], [scale, bias], opset)


def test_layernorm_refused_by_tensorrt_85_targets_naming_node_op_target():
    model = _layernorm_model()
    assert check_ops(model, get_target("jetson")).passed
    for name in ("jetson-xavier", "jetson-orin-jp5"):
        check = check_ops(model, get_target(name))
        assert not check.passed
        assert "encoder/ln1" in check.detail and "LayerNormalization" in check.detail and name in check.detail
    with pytest.raises(FogError, match=r"encoder/ln1.*LayerNormalization.*jetson-xavier"):
        assert_checks(run_checks(model, get_target("jetson-xavier"), "fp16"), "m", get_target("jetson-xavier"))


def test_opset_window_and_recurrent_layout_restriction():
    model = _layernorm_model(opset=17)
    nano = check_opset(model, get_target("jetson-nano"))
    assert not nano.passed and "opset 17" in nano.detail and "jetson-nano" in nano.detail
    assert check_opset(model, get_target("jetson-thor")).passed
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 1, 1, 4])
    w = numpy_helper.from_array(np.zeros((1, 16, 3), np.float32), "W")
    r = numpy_helper.from_array(np.zeros((1, 16, 4), np.float32), "R")
    lstm = helper.make_node("LSTM", ["x", "W", "R"], ["y"], name="rnn", hidden_size=4, layout=1)
    check = check_ops(_model([lstm], [x], [y], [w, r]), get_target("jetson"))
    assert not check.passed and "layout=1" in check.detail and "'rnn'" in check.detail


def test_qdq_graph_refused_on_a_target_without_int8():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    s = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    z = numpy_helper.from_array(np.array(0, np.int8), "z")
    q = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q0")
    dq = helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq0")
    model = _model([q, dq], [x], [y], [s, z])
    check = check_precision(model, get_target("jetson-nano"), "fp16")
    assert not check.passed and "'q0'" in check.detail and "QuantizeLinear" in check.detail and "jetson-nano" in \
        check.detail
    assert check_precision(model, get_target("jetson"), "int8").passed
    assert not check_precision(model, get_target("jetson-nano"), "int8").passed


def test_dynamic_shapes_fail_the_static_check():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    check = check_static_shapes(_model([helper.make_node("Relu", ["x"], ["y"])], [x], [y]))
    assert not check.passed and "batch" in check.detail


def test_constant_folding_check_and_fold_keep_the_numbers():
    pytest.importorskip("onnxruntime")
    from deploy.engines.session import open_session
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    b = numpy_helper.from_array(np.arange(4, dtype=np.float32), "bias")
    split = numpy_helper.from_array(np.array([2, 2], np.int64), "split")
    nodes = [helper.make_node("Split", ["bias", "split"], ["b0", "b1"], name="bias_split", axis=0),
             helper.make_node("Slice", ["x", "s0", "s1", "ax"], ["x0"], name="slice"),
             helper.make_node("Add", ["x0", "b1"], ["y"], name="add")]
    inits = [b, split, numpy_helper.from_array(np.array([0], np.int64), "s0"),
             numpy_helper.from_array(np.array([2], np.int64), "s1"),
             numpy_helper.from_array(np.array([1], np.int64), "ax")]
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "unused"))
    model = _model(nodes, [x], [y], inits)
    check = check_constant_folding(model)
    assert not check.passed and "bias_split" in check.detail
    feed = {"x": np.array([[1, 2, 3, 4]], np.float32)}
    before = open_session(model.SerializeToString()).run(None, feed)[0]
    assert fold_constants(model) == 1
    assert check_constant_folding(model).passed
    onnx.checker.check_model(model)
    after = open_session(model.SerializeToString()).run(None, feed)[0]
    np.testing.assert_array_equal(before, after)
    assert "unused" not in {i.name for i in model.graph.initializer}


def test_targets_command_lists_every_target(capsys):
    assert cli(["targets"]) == 0
    out = capsys.readouterr().out
    for t in list_targets():
        assert t.name in out
    assert "jetson" in out and "8.5.2" in out
    assert cli(["targets", "jetson"]) == 0
    assert json.loads(capsys.readouterr().out)["tensorrt"] == "10.3"
    assert cli(["targets", "nope"]) == 2
