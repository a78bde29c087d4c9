"""The cpu target's dynamic plan with its BiLSTMs split per direction and run as stages (issue 17).

toolkit.export.lstm_split must be exact (same outputs as the bidirectional node, every output and layout that
matters), toolkit.export.cpu_stages must cut a graph the device can follow with nothing but onnxruntime, and the
bundle's manifest must carry the stage plan that deploy.engines opens.
"""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from deploy.engines.session import open_session  # noqa: E402

from deploy.bundle import Bundle, write_manifest  # noqa: E402
from deploy.engines import open_engine  # noqa: E402
from deploy.engines.onnxruntime import OnnxRuntimeEngine  # noqa: E402
from deploy.engines.staged import StagedEngine  # noqa: E402
from deploy.errors import BundleError  # noqa: E402
from toolkit.export import cpu_plans, cpu_stages, lstm_split  # noqa: E402

SHAPE = (1, 6, 24)  # (batch, channels, steps)


class TwoBiLSTMs(torch.nn.Module):
    """A conv encoder, two stacked BiLSTMs of different widths (like fog-1st-place), a per-step head."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.enc = torch.nn.Conv1d(6, 12, 3, padding=1)
        self.rnn1 = torch.nn.LSTM(12, 8, batch_first=True, bidirectional=True)
        self.rnn2 = torch.nn.LSTM(16, 10, batch_first=True, bidirectional=True)
        self.head = torch.nn.Linear(20, 3)

    def forward(self, x):
        h = torch.relu(self.enc(x)).transpose(1, 2)
        h = self.rnn2(self.rnn1(h)[0])[0]
        return torch.sigmoid(self.head(h))


def _export(path):
    from models.onnx_export import export_onnx
    export_onnx(TwoBiLSTMs().eval(), torch.zeros(SHAPE), path, input_names=("x",), output_names=("probs",))
    return path


def _run(path_or_model, x, *names):
    data = path_or_model.SerializeToString() if hasattr(path_or_model, "SerializeToString") else str(path_or_model)
    session = open_session(data)
    return session.run(list(names) or None, {session.get_inputs()[0].name: x})


def _x(seed=0, shape=SHAPE):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_split_torch_export_is_exact(tmp_path):
    path = _export(tmp_path / "m.onnx")
    assert lstm_split.split_file(path, tmp_path / "s.onnx") == 2
    split = onnx.load(str(tmp_path / "s.onnx"))
    lstms = [n for n in split.graph.node if n.op_type == "LSTM"]
    directions = sorted(a.s for n in lstms for a in n.attribute if a.name == "direction")
    assert directions == [b"forward", b"forward", b"reverse", b"reverse"]
    x = _x()
    np.testing.assert_array_equal(_run(path, x)[0], _run(tmp_path / "s.onnx", x)[0])


def _hand_lstm(layout: int):
    """One bidirectional LSTM node with every input (biases, initial states, peepholes) and every output read."""
    rng = np.random.default_rng(layout)
    seq, batch, inp, hid = 7, 2, 5, 4
    init = {n: rng.standard_normal(s).astype(np.float32) for n, s in
            {"W": (2, 4 * hid, inp), "R": (2, 4 * hid, hid), "B": (2, 8 * hid), "P": (2, 3 * hid)}.items()}
    state = (batch, 2, hid) if layout else (2, batch, hid)
    x_shape = (batch, seq, inp) if layout else (seq, batch, inp)
    h = onnx.helper
    node = h.make_node("LSTM", ["X", "W", "R", "B", "", "h0", "c0", "P"], ["Y", "Y_h", "Y_c"], name="bi",
                       direction="bidirectional", hidden_size=hid, layout=layout,
                       activations=["Sigmoid", "Tanh", "Tanh", "Sigmoid", "Tanh", "Tanh"])
    y_shape = (batch, seq, 2, hid) if layout else (seq, 2, batch, hid)
    graph = h.make_graph([node], "g", [h.make_tensor_value_info(n, onnx.TensorProto.FLOAT, s) for n, s in
                                       (("X", x_shape), ("h0", state), ("c0", state))],
                         [h.make_tensor_value_info(n, onnx.TensorProto.FLOAT, s) for n, s in
                          (("Y", y_shape), ("Y_h", state), ("Y_c", state))],
                         [onnx.numpy_helper.from_array(v, k) for k, v in init.items()])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    feeds = {"X": rng.standard_normal(x_shape).astype(np.float32),
             "h0": rng.standard_normal(state).astype(np.float32), "c0": rng.standard_normal(state).astype(np.float32)}
    return model, feeds


def test_split_is_exact_for_every_output_and_initial_states():
    model, feeds = _hand_lstm(0)
    before = open_session(model.SerializeToString()).run(None, feeds)
    assert lstm_split.split_bidirectional_lstms(model) == 1
    onnx.checker.check_model(model)
    assert {n.op_type for n in model.graph.node} == {"LSTM", "Split", "Concat"}
    assert not any(i.name in ("W", "R", "B", "P") for i in model.graph.initializer)  # the halves replaced them
    after = open_session(model.SerializeToString()).run(None, feeds)
    for b, a in zip(before, after):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_batch_first_lstm_is_left_whole():  # onnxruntime has no kernel to verify a split of layout=1 against
    model, _ = _hand_lstm(1)
    assert lstm_split.split_bidirectional_lstms(model) == 0
    assert [n.op_type for n in model.graph.node] == ["LSTM"]


def test_split_refuses_an_old_opset():
    model, _ = _hand_lstm(0)
    model.opset_import[0].version = 12
    with pytest.raises(ValueError, match="opset >= 13"):
        lstm_split.split_bidirectional_lstms(model)


def test_stages_follow_the_branches_and_give_the_whole_graphs_outputs(tmp_path):
    model = onnx.load(str(_export(tmp_path / "m.onnx")))
    lstm_split.split_bidirectional_lstms(model)
    plan = cpu_stages.cut(model, tmp_path, "st")
    widths = [len(step) for step in plan["steps"]]
    assert cpu_stages.parallel_steps(plan) == 2 and widths.count(2) == 2 and widths[0] == 1 and widths[-1] == 1
    for step in plan["steps"]:
        if len(step) == 2:  # one LSTM node per branch stage, forward and reverse
            ops = [[(n.op_type, [a.s for a in n.attribute if a.name == "direction"][0])
                    for n in onnx.load(str(tmp_path / s["file"])).graph.node] for s in step]
            assert ops == [[("LSTM", b"forward")], [("LSTM", b"reverse")]]
    x = _x(1)
    whole = _run(model, x)[0]
    for threads in (1, 2):
        engine = StagedEngine(tmp_path, plan, threads=threads)
        assert (engine._pool is None) == (threads == 1)  # one thread: the branches run in turn
        np.testing.assert_allclose(engine.infer(x), whole, rtol=0, atol=1e-6)
        engine.close()


def test_a_graph_without_branches_is_one_stage(tmp_path):
    model, _ = _hand_lstm(0)  # not split: one bidirectional node, nothing to run side by side
    plan = cpu_stages.cut(model, tmp_path, "one")
    assert len(plan["steps"]) == 1 and len(plan["steps"][0]) == 1 and cpu_stages.parallel_steps(plan) == 0


def _staged_bundle(folder):
    folder.mkdir()
    _export(folder / "model_fp32.onnx")
    info = cpu_plans.quantize_dynamic_int8(folder / "model_fp32.onnx", folder / cpu_plans.DYNAMIC_FILE)
    plan = cpu_plans.staged_dynamic(folder / "model_fp32.onnx", folder, cpu_plans.STAGE_PREFIX)
    manifest = {
        "schema_version": 1, "model": {"name": "two-bilstms"}, "precision": "int8",
        "input": {"name": "x", "shape": list(SHAPE), "preprocess": {"rate_hz": 64, "patch": 2, "n_patches": SHAPE[2]}},
        "output": {"name": "probs", "shape": [1, SHAPE[2], 3], "classes": ["StartHesitation", "Turn", "Walking"]},
        "models": {"fp32": "model_fp32.onnx", "fp16": None, "int8": info["file"], "engine": None},
        "target": {"name": "cpu", "runtime": "onnxruntime"},
        "onnxruntime": {"preoptimized": [], "staged": {"int8": plan}},
    }
    write_manifest(folder, manifest)
    return plan


def test_bundle_with_a_staged_plan_opens_it_and_matches_its_whole_int8_graph(tmp_path):
    plan = _staged_bundle(tmp_path / "b")
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert all(s["file"] in manifest["files"] for step in plan["steps"] for s in step)  # sha256 covers the stages
    assert plan["preoptimized"] and plan["split_lstms"] == 2
    assert plan["session_config"] == cpu_plans.STAGED_SESSION_CONFIG == {"session.intra_op.allow_spinning": "0"}
    bundle = Bundle.load(tmp_path / "b")
    engine = open_engine(bundle, backend="onnxruntime", threads=2)
    assert isinstance(engine, StagedEngine) and engine.precision == "int8"
    assert engine.input_shape == SHAPE and engine.output_shape == (1, SHAPE[2], 3)
    for step in engine.steps:  # the manifest's session settings reach every stage's session
        for session, _ in step:
            assert session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
    whole = OnnxRuntimeEngine(tmp_path / "b" / cpu_plans.DYNAMIC_FILE, threads=1)
    x = _x(2)
    np.testing.assert_allclose(engine.infer(x), whole.infer(x), rtol=0, atol=1e-6)
    fp32 = open_engine(bundle, backend="onnxruntime", precision="fp32")
    assert isinstance(fp32, OnnxRuntimeEngine)  # the plan names the int8 role only


def test_a_staged_plan_naming_a_file_outside_the_bundle_is_refused(tmp_path):
    plan = _staged_bundle(tmp_path / "b")
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    plan["steps"][0][0]["file"] = "../elsewhere.onnx"
    manifest["onnxruntime"]["staged"]["int8"] = plan
    write_manifest(tmp_path / "b", manifest)
    with pytest.raises(BundleError, match="leaves the bundle"):
        open_engine(Bundle.load(tmp_path / "b"), backend="onnxruntime")


@pytest.mark.parametrize("whole,staged,kept", [(10.0, 5.0, True), (10.0, 9.9, False)])
def test_dynamic_plan_keeps_stages_only_when_they_measure_faster(tmp_path, monkeypatch, whole, staged, kept):
    monkeypatch.setattr(cpu_plans.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(cpu_plans, "staged_head_to_head", lambda *a, **k: {"whole": whole, "staged": staged})
    _export(tmp_path / "model_fp32.onnx")
    info = cpu_plans.dynamic_plan(tmp_path / "model_fp32.onnx", tmp_path, _x())
    stage_files = sorted(p.name for p in tmp_path.glob(cpu_plans.STAGE_PREFIX + "*"))
    assert info["staging"]["kept"] is kept and (info["staged"] is not None) is kept
    assert bool(stage_files) is kept and f"staged {staged:.2f} ms" in info["staging"]["reason"]
    outputs = cpu_plans.run_dynamic(tmp_path, info, [_x(4)])
    np.testing.assert_allclose(outputs, OnnxRuntimeEngine(tmp_path / info["file"], threads=1).infer(_x(4)),
                               rtol=0, atol=1e-6)
    cpu_plans.remove_dynamic(tmp_path, info)
    assert not list(tmp_path.glob("model_int8*"))


class LinearFirst(torch.nn.Module):
    """A Linear input projection before the recurrence, as in the fog hybrids (patch embedding first)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.proj = torch.nn.Linear(6, 12)
        self.mix = torch.nn.Linear(12, 12)
        self.rnn = torch.nn.LSTM(12, 8, batch_first=True, bidirectional=True)
        self.head = torch.nn.Linear(16, 3)

    def forward(self, x):
        h = self.mix(torch.relu(self.proj(x.transpose(1, 2))))
        return torch.sigmoid(self.head(self.rnn(h)[0]))


def test_dynamic_plan_keeps_the_input_projection_fp32_and_says_so(tmp_path):
    from models.onnx_export import export_onnx
    export_onnx(LinearFirst().eval(), torch.zeros(SHAPE), tmp_path / "f.onnx", input_names=("x",),
                output_names=("probs",))
    fp32 = onnx.load(str(tmp_path / "f.onnx"))
    first = next(n for n in fp32.graph.node if n.op_type in ("MatMul", "Gemm"))
    info = cpu_plans.quantize_dynamic_int8(tmp_path / "f.onnx", tmp_path / "q.onnx")
    nodes = {n.name: n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node}
    assert info["kept_fp32"]["nodes"] == [first.name] and nodes[first.name] == first.op_type
    assert info["int8_ops"]["MatMulInteger"] == 2 and info["int8_ops"]["DynamicQuantizeLSTM"] == 1  # mix and head
    kept_rows = [r for r in cpu_plans.layer_rows(info) if r["layer"] == first.name]
    assert kept_rows and kept_rows[0]["precision"] == "fp32" and "input projection" in kept_rows[0]["reason"]
    int8_rows = [r for r in cpu_plans.layer_rows(info) if r["precision"] == "int8"]
    assert sorted(r["op"] for r in int8_rows) == ["DynamicQuantizeLSTM", "MatMulInteger", "MatMulInteger"]  # a row each
    plan = cpu_plans.staged_dynamic(tmp_path / "f.onnx", tmp_path, "st", preoptimize=False)
    staged = [n.name for step in plan["steps"] for s in step for n in onnx.load(str(tmp_path / s["file"])).graph.node
              if n.op_type in ("MatMul", "Gemm")]
    assert staged == [first.name]  # the stages keep the same layer FP32: same weights as the whole graph
    assert cpu_plans.input_projection(onnx.load(str(_export(tmp_path / "conv.onnx")))) == []  # a Conv comes first


def test_the_dynamic_plan_and_its_stages_count_the_float_graph_s_macs(tmp_path):
    # onnxruntime's int8 LSTM keeps its weights transposed, and graphs saved by its optimizer lose the shapes of
    # contrib ops' outputs: the counter must still find the float model's compute in both
    from toolkit.export.macs import graph_stats
    _export(tmp_path / "f.onnx")
    cpu_plans.quantize_dynamic_int8(tmp_path / "f.onnx", tmp_path / "q.onnx")
    plan = cpu_plans.staged_dynamic(tmp_path / "f.onnx", tmp_path, "st")    # pre-optimized, as bundles carry them
    float_macs = graph_stats(tmp_path / "f.onnx").macs
    stages = [graph_stats(tmp_path / s["file"]) for step in plan["steps"] for s in step]
    lstm = 24 * 2 * 4 * 8 * (12 + 8) + 24 * 2 * 4 * 10 * (16 + 10)   # steps * dirs * gates * H * (I + H), both
    assert float_macs > lstm and graph_stats(tmp_path / "q.onnx").macs == float_macs
    assert sum(s.macs for s in stages) == float_macs and not any(s.unresolved for s in stages)


class AttentionThenBiLSTM(torch.nn.Module):
    """A projection, one attention product pair (two activation x activation MatMuls), a BiLSTM, a head."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(6)
        self.proj = torch.nn.Linear(6, 12)
        self.rnn = torch.nn.LSTM(12, 8, batch_first=True, bidirectional=True)
        self.head = torch.nn.Linear(16, 3)

    def forward(self, x):
        h = self.proj(x.transpose(1, 2))
        h = torch.softmax(h @ h.transpose(1, 2) / 4.0, dim=-1) @ h
        return torch.sigmoid(self.head(self.rnn(h)[0]))


@pytest.mark.parametrize("staged_aa,kept", [(5.0, cpu_plans.ACTIVATIONS), (5.9, "staged")])
def test_stages_quantize_attention_products_only_when_that_measures_faster(tmp_path, monkeypatch, staged_aa, kept):
    from models.onnx_export import export_onnx
    monkeypatch.setattr(cpu_plans.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(cpu_plans, "staged_head_to_head",
                        lambda folder, whole, plans, *a, **k: {"whole": 10.0, "staged": 6.0, **(
                            {cpu_plans.ACTIVATIONS: staged_aa} if cpu_plans.ACTIVATIONS in plans else {})})
    export_onnx(AttentionThenBiLSTM().eval(), torch.zeros(SHAPE), tmp_path / "model_fp32.onnx", input_names=("x",),
                output_names=("probs",))
    assert cpu_plans.activation_matmuls(onnx.load(str(tmp_path / "model_fp32.onnx"))) == 2
    info = cpu_plans.dynamic_plan(tmp_path / "model_fp32.onnx", tmp_path, _x())
    assert info["staging"]["activations_int8"] is (kept == cpu_plans.ACTIVATIONS) and kept in info["staging"]["reason"]
    files = {s["file"] for step in info["staged"]["steps"] for s in step}
    on_disk = {p.name for p in tmp_path.glob("model_int8_stage*")}
    assert files == on_disk  # the other stage plan's files are gone
    assert _float_products(tmp_path, info["staged"]) == (2 if kept == "staged" else 0)  # none left in int8 products
    rows = [r for r in cpu_plans.layer_rows(info) if r["op"] == "MatMul"]
    assert len(rows) == 2 and {r["precision"] for r in rows} == {"int8" if kept != "staged" else "fp32"}
    x = _x(4)
    whole = OnnxRuntimeEngine(tmp_path / info["file"], threads=1).infer(x)
    assert np.abs(cpu_plans.run_dynamic(tmp_path, info, [x]) - whole).max() < 0.05


def test_bench_runs_the_stages_with_int8_attention_products(tmp_path):
    from toolkit.bench.backends import BenchedModel, open_runner
    benched = BenchedModel(name="attn", input_shape=SHAPE, factory=AttentionThenBiLSTM, workdir=tmp_path)
    out = open_runner(benched, "onnxruntime-staged-activations", 1, 2)()
    assert np.asarray(out).shape == (1, SHAPE[2], 3)
    folder, plan = benched.staged(1, activations=True)
    assert plan["activations_int8"] and folder != benched.staged(1)[0]
    assert _float_products(folder, plan) == 0 and _float_products(*benched.staged(1)) == 2


def _float_products(folder, plan) -> int:
    """Float MatMuls of two activations (attention's products) left in a stage plan's files."""
    stages = [onnx.load(str(folder / s["file"])) for step in plan["steps"] for s in step]
    return sum(1 for m in stages for n in m.graph.node if n.op_type in ("MatMul", "FusedMatMul")
               and not set(n.input) & {i.name for i in m.graph.initializer})
