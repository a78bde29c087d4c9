"""The cpu target's float-graph rewrite: torch's self-attention fused into onnxruntime's MultiHeadAttention."""
from __future__ import annotations

import collections

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from deploy.engines.session import open_session  # noqa: E402

from toolkit.export import attention_fusion, cpu_graph, cpu_plans  # noqa: E402
from toolkit.export.checks import static_shapes  # noqa: E402
from toolkit.export.macs import graph_stats  # noqa: E402
from toolkit.export.onnx import export_like_bundle  # noqa: E402

LENGTH, WIDTH, HEADS = 24, 16, 4


class Block(torch.nn.Module):
    """A self-attention block as the fog presets use it: sequence-first nn.MultiheadAttention, then a ReLU."""

    def __init__(self, masked: bool = False):
        super().__init__()
        self.attention = torch.nn.MultiheadAttention(WIDTH, HEADS)
        self.mask = torch.triu(torch.full((LENGTH, LENGTH), float("-inf")), 1) if masked else None

    def forward(self, x):                       # (1, LENGTH, WIDTH)
        y = x.transpose(0, 1)
        y = self.attention(y, y, y, need_weights=False, attn_mask=self.mask)[0]
        return torch.relu(y.transpose(0, 1))


def _export(tmp_path, masked=False, name="block.onnx"):
    torch.manual_seed(0)
    path = tmp_path / name
    return export_like_bundle(Block(masked).eval(), torch.randn(1, LENGTH, WIDTH), path)   # as bundles are


def _ops(path):
    return collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def _run(path, x):
    session = open_session(str(path))
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_attention_is_fused_and_exact(tmp_path):
    path = _export(tmp_path)
    info = cpu_graph.rewrite_file(path, tmp_path / "fused.onnx")
    assert info["attention_fused"] == 1 and info["file"] == str(tmp_path / "fused.onnx"), info
    ops = _ops(tmp_path / "fused.onnx")
    assert ops["MultiHeadAttention"] == 1 and ops["Softmax"] == 0 and ops["Transpose"] == 0, ops  # batch 1
    assert sum(_ops(path).values()) > sum(ops.values())       # the layout nodes are gone
    assert graph_stats(tmp_path / "fused.onnx").macs == graph_stats(path).macs > 0   # products counted inside
    x = np.random.default_rng(1).standard_normal((1, LENGTH, WIDTH)).astype(np.float32)
    np.testing.assert_allclose(_run(tmp_path / "fused.onnx", x), _run(path, x), atol=1e-5)


def test_masked_attention_is_left_alone(tmp_path):
    # a mask is added between the scores and the softmax: not the pattern, so nothing is rewritten
    info = cpu_graph.rewrite_file(_export(tmp_path, masked=True), tmp_path / "fused.onnx")
    assert info["attention_fused"] == 0 and info["transposes_as_reshapes"] >= 1, info   # batch 1's still apply
    ops = _ops(tmp_path / "fused.onnx")
    assert ops["MultiHeadAttention"] == 0 and ops["Softmax"] == 1, ops


def test_a_rewrite_that_changes_the_outputs_is_refused(tmp_path, monkeypatch):
    match = attention_fusion._match

    def wrong_scale(graph, softmax):
        found = match(graph, softmax)
        return found and {**found, "scale": found["scale"] * 3}
    monkeypatch.setattr(attention_fusion, "_match", wrong_scale)
    info = cpu_graph.rewrite_file(_export(tmp_path), tmp_path / "fused.onnx")
    assert info["file"] is None and info["max_abs_diff"] > cpu_graph.TOLERANCE, info
    assert "kept as exported" in info["why"] and not (tmp_path / "fused.onnx").exists()
    assert info["attention_fused"] == 0 and info["transposes_as_reshapes"] == 0


def test_dynamic_plan_quantizes_around_the_fused_attention(tmp_path):
    info = cpu_plans.quantize_dynamic_int8(_export(tmp_path), tmp_path / "q.onnx")
    assert info["rewrite"]["applied"] and info["rewrite"]["attention_fused"] == 1
    ops = _ops(tmp_path / "q.onnx")
    assert ops["MultiHeadAttention"] == 1 and ops["MatMulInteger"] >= 1, ops   # in-projection int8
    rows = {r["op"]: r for r in cpu_plans.layer_rows(info)}
    assert rows["MultiHeadAttention"]["precision"] == "fp32"
    assert rows["MultiHeadAttention"]["reason"] == cpu_plans.FUSED_ATTENTION
    plain = cpu_plans.quantize_dynamic_int8(_export(tmp_path, name="again.onnx"), tmp_path / "p.onnx", rewrite=False)
    assert plain["rewrite"] is None and _ops(tmp_path / "p.onnx")["MultiHeadAttention"] == 0


def test_only_transposes_of_unit_dimensions_become_reshapes(tmp_path):
    helper = onnx.helper
    nodes = [helper.make_node("Transpose", ["x"], ["a"], perm=[1, 0, 2]),      # (1, 5, 3) -> (5, 1, 3): a reshape
             helper.make_node("Transpose", ["a"], ["y"], perm=[2, 1, 0])]      # (5, 1, 3) -> (3, 1, 5): a real one
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 5, 3])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [3, 1, 5])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(tmp_path / "t.onnx"))
    assert cpu_graph.unit_transposes_to_reshapes(model, static_shapes(model)) == 1
    assert [n.op_type for n in model.graph.node] == ["Reshape", "Transpose"]
    info = cpu_graph.rewrite_file(tmp_path / "t.onnx", tmp_path / "r.onnx")
    assert info["transposes_as_reshapes"] == 1 and info["max_abs_diff"] == 0.0
    x = np.arange(15, dtype=np.float32).reshape(1, 5, 3)
    np.testing.assert_array_equal(_run(tmp_path / "r.onnx", x), x.transpose(1, 0, 2).transpose(2, 1, 0))
