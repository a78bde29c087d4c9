"""The precision plan: recurrence chosen by graph size, fused plan exported with Q/DQ on every GEMM and none around
the fused LSTM, FP16 casts for strongly typed targets, the FP16 range check, and the decision margin of verification.
Small models and short windows only (the full-size figures are benchmarks: docs/export.md)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from deploy.engines.session import open_session  # noqa: E402

from models import create_model  # noqa: E402
from models.qat import set_quantization, to_qat  # noqa: E402
from models.qat.convert import calibrate_max  # noqa: E402
from toolkit.export import fp16, plan  # noqa: E402
from toolkit.export.checks import check_fused_recurrence, run_checks  # noqa: E402
from toolkit.export.onnx import export_graph, with_activation  # noqa: E402
from toolkit.export.qdq import check_qdq  # noqa: E402
from toolkit.export.targets import get_target  # noqa: E402
from toolkit.export.verify import compare  # noqa: E402

STEPS = 16


def _small():
    torch.manual_seed(0)
    return create_model("fog-small", seq_len=STEPS, dropout=0.0).eval()


def _fused_qat(model, batch=1):
    qat = to_qat(model, batch_size=batch, seq_len=STEPS, recurrence="fused").eval()
    calibrate_max(qat, [torch.randn(4, 24, STEPS) for _ in range(2)])
    return qat


def test_auto_recurrence_follows_the_unrolled_graph_size():
    small = create_model("fog-small")
    large = create_model("fog-1st-place")
    assert plan.choose_recurrence(small, 128)[0] == "unrolled"        # 128 x 2 x 16 = 4,096 nodes
    choice, why = plan.choose_recurrence(large, 864)
    assert choice == "fused" and "55,296" in why                      # 864 x 2 dirs x 2 layers x 16
    assert plan.choose_recurrence(large, 864, "unrolled")[0] == "unrolled"
    with pytest.raises(plan.PlanError, match="choose one of"):
        plan.choose_recurrence(small, 128, "loop")


def test_auto_recurrence_follows_the_ranges_a_user_gives():
    """A QAT run trains the unrolled variant; its ranges fit only that graph. The default (three BiLSTMs, ~12,300
    nodes unrolled) would be fused by size, and its QAT result could then not be exported (`toolkit train --qat`
    then `toolkit export`: "calibration cache does not fit this model"). With ranges given, auto takes the
    recurrence they were made on; ranges that fit neither leave the size rule to decide."""
    from models.qat import quantizers
    default = create_model("fog-small-x3")
    assert plan.choose_recurrence(default, 128)[0] == "fused"                 # by size
    for made_on in ("unrolled", "fused"):
        names = list(quantizers(to_qat(default, 1, 128, made_on)))
        choice, why = plan.choose_recurrence(default, 128, "auto", names)
        assert choice == made_on and "given ranges" in why, why
    assert plan.choose_recurrence(default, 128, "auto", ["not.a.quantizer"])[0] == "fused"
    assert plan.choose_recurrence(default, 128, "fused", names)[0] == "fused"   # asked wins


def test_fused_qat_keeps_the_lstm_and_quantizes_every_gemm(tmp_path):
    model = _small()
    qat = _fused_qat(model)
    assert any(isinstance(m, torch.nn.LSTM) for m in qat.modules())
    path = tmp_path / "fused.onnx"
    export_graph(with_activation(qat, "sigmoid"), (1, 24, STEPS), path, 17)
    graph = onnx.load(str(path))
    ops = [n.op_type for n in graph.graph.node]
    assert ops.count("LSTM") == 1 and ops.count("MatMul") + ops.count("Gemm") > 0
    assert check_qdq(graph, "fused") == []
    assert any("recurrent/control-flow" in str(p) for p in check_qdq(graph, "unrolled"))
    rows = plan.layer_plan(qat, get_target("jetson"))
    lstm = [r for r in rows if r["op"].startswith("LSTM")]
    assert len(lstm) == 1 and lstm[0]["precision"] == "fp16" and "never quantized" in lstm[0]["reason"]
    assert sum(r["precision"] == "int8" for r in rows) >= 4


def test_qdq_around_a_fused_lstm_is_refused():
    h = 4
    helper, tp = onnx.helper, onnx.TensorProto
    inits = [onnx.numpy_helper.from_array(np.ones((1, 4 * h, 3), np.float32), "W"),
             onnx.numpy_helper.from_array(np.ones((1, 4 * h, h), np.float32), "R"),
             onnx.numpy_helper.from_array(np.float32(0.1), "s"), onnx.numpy_helper.from_array(np.int8(0), "z")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q"),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq"),
             helper.make_node("LSTM", ["xd", "W", "R"], ["y"], hidden_size=h, name="the_lstm"),
             helper.make_node("MatMul", ["y", "y"], ["o"], name="mm")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", tp.FLOAT, [5, 1, 3])],
                              [helper.make_tensor_value_info("o", tp.FLOAT, None)], inits)
    problems = [str(p) for p in check_qdq(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
                                          "fused")]
    assert any("the_lstm" in p and "DequantizeLinear" in p for p in problems)


def test_strongly_typed_graph_gets_fp16_casts_and_still_computes_the_model(tmp_path):
    model = _small()
    qat = _fused_qat(model)
    path = tmp_path / "fused.onnx"
    export_graph(with_activation(qat, "sigmoid"), (1, 24, STEPS), path, 17)
    graph = onnx.load(str(path))
    x86 = get_target("x86-cuda")
    assert x86.graph_strongly_typed and not get_target("jetson").graph_strongly_typed
    assert not check_fused_recurrence(graph, x86, strongly_typed=True).passed   # FP32 LSTM on a typed network
    assert fp16.cast_fused_recurrence(graph) == 1
    assert check_fused_recurrence(graph, x86, strongly_typed=True).passed
    checks = run_checks(graph, x86, "int8", int8_graph=True, recurrence="fused", strongly_typed=True)
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]
    cast_path = tmp_path / "cast.onnx"
    onnx.save(graph, str(cast_path))
    x = np.random.default_rng(0).standard_normal((1, 24, STEPS)).astype(np.float32)
    a = open_session(str(path)).run(None, {"x": x})[0]
    b = open_session(str(cast_path)).run(None, {"x": x})[0]
    assert np.abs(a - b).max() < 5e-3 and np.abs(a - b).max() > 0   # FP16 rounding, nothing more


def test_fp16_range_check_passes_a_model_and_fails_beyond_fp16():
    model = _small()
    with fp16.RecurrentRanges(model) as ranges:
        model(torch.randn(2, 24, STEPS))
    check = ranges.check()
    assert check["passed"] and check["figures"]["activations"]["values"] > 0
    lstm = next(m for m in model.modules() if isinstance(m, torch.nn.LSTM))
    with torch.no_grad():
        lstm.weight_hh_l0[0, 0] = 1e5
    with fp16.RecurrentRanges(model) as ranges:
        model(torch.randn(2, 24, STEPS))
    assert not ranges.check()["passed"]


def test_agreement_counts_only_decisive_elements():
    ref = np.array([0.501, 0.499, 0.9, 0.1], np.float32)
    flipped_near_threshold = np.array([0.499, 0.501, 0.9, 0.1], np.float32)
    pair = compare("torch_vs_ort_int8", ref, flipped_near_threshold)
    assert pair["agreement"] == 1.0 and pair["agreement_all"] == 0.5 and pair["decisive_share"] == 0.5
    assert pair["passed"]
    flipped_decisive = np.array([0.501, 0.499, 0.4, 0.1], np.float32)
    assert compare("torch_vs_ort_int8", ref, flipped_decisive)["agreement"] == 0.5


def test_set_quantization_still_works_on_a_fused_variant():
    qat = _fused_qat(_small())
    set_quantization(qat, False)
    x = torch.randn(1, 24, STEPS)
    assert torch.allclose(qat(x), _small()(x), atol=1e-5)


@pytest.mark.slow
def test_first_place_fused_plan_passes_every_int8_tensorrt_target(tmp_path):
    """fog-1st-place's own widths and layers at 6 patches, fused plan, opset 16 (inside TensorRT 8.5's window, no
    LayerNormalization): every check of every INT8 TensorRT target, the strongly typed x86-cuda with its casts."""
    source_model = create_model("fog-1st-place", seq_len=6).eval()
    qat = to_qat(source_model, batch_size=1, seq_len=6, recurrence="fused").eval()
    calibrate_max(qat, [torch.randn(2, 54, 6)])
    path = tmp_path / "big.onnx"
    export_graph(with_activation(qat, "sigmoid"), (1, 54, 6), path, 16)
    graph = onnx.load(str(path))
    assert [n.op_type for n in graph.graph.node].count("LSTM") == 2
    for name in ("jetson", "jetson-orin-jp5", "jetson-xavier", "jetson-thor", "x86-cuda"):
        target = get_target(name)
        model = onnx.load(str(path))
        if target.graph_strongly_typed:
            assert fp16.cast_fused_recurrence(model) == 2
        checks = run_checks(model, target, "int8", int8_graph=True, recurrence="fused",
                            strongly_typed=target.graph_strongly_typed)
        assert all(c.passed for c in checks), (name, [c for c in checks if not c.passed])


def test_given_ranges_get_one_watched_pass_for_the_fp16_check():
    """Ranges shipped as given (QAT, cache) run no calibration pass: `observe` runs the batches for the check."""
    lstm = torch.nn.LSTM(3, 4, batch_first=True)
    with fp16.RecurrentRanges(lstm) as watch:
        watch.observe(lstm, [np.ones((2, 5, 3), np.float32)])
    check = watch.check()
    assert watch.calls == 1 and check["passed"]
    assert check["figures"]["activations"]["values"] == 2 * 5 * 3 + 2 * 5 * 4 + 2 * (1 * 2 * 4)   # x, y, (h, c)
