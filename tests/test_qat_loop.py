"""The whole loop a user runs (issue 13): train -> calibrate -> QAT -> export -> evaluate the INT8 bundle.

Small on purpose (two optimizer steps, one-minute synthetic recordings): what is tested is that the QAT result's
learnt ranges are what the bundle ships (the Q/DQ scales of its INT8 graph are the QAT quantizers' scales), that the
manifest and the summary say so, that evaluating the bundle reproduces the QAT model's own figures, and that ranges
made for other weights are refused.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from calibration.checkpoint import DEFAULT_PRESET
from calibration.data import synthetic_recordings
from calibration.ptq import _forward_fixed_batch
from deploy.bundle import Bundle
from deploy.contract import INT8_FILE
from deploy.contract.events import EventSettings
from deploy.offline import predict_recording
from deploy.preprocess import PreprocessSpec
from deploy.scoring import at_recording_rate, score
from models import create_model
from models.qat import quantizers, set_quantization, to_qat
from toolkit.cli import main as cli

onnx = pytest.importorskip("onnx")
from onnx import numpy_helper  # noqa: E402

pytestmark = pytest.mark.slow   # measured over ~5 s a test (pytest --durations)

BATCH = 8
DATA = ["--synthetic", "3", "--synthetic-minutes", "1"]
SHORT = ["--epochs", "1", "--steps", "2", "--batch-size", str(BATCH), "--warmup", "1", "--threads", "1", "--quiet"]
HELD_OUT = ["--synthetic", "2", "--synthetic-minutes", "1", "--seed", "1000"]


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    """Runs the loop once; returns its folder and what the export printed."""
    root = tmp_path_factory.mktemp("loop")
    assert cli(["train", *DATA, *SHORT, "--out", str(root / "float")]) == 0
    assert cli(["calibrate", *DATA, "--checkpoint", str(root / "float" / "model.pt"), "--windows", "16",
                "--batch-size", str(BATCH), "--quiet", "--out", str(root / "cal.json")]) == 0
    assert cli(["train", *DATA, *SHORT, "--qat", "--checkpoint", str(root / "float" / "model.pt"),
                "--calibration", str(root / "cal.json"), "--out", str(root / "qat")]) == 0
    return root


def _qdq_scales(path) -> list[np.ndarray]:
    """The scale of every QuantizeLinear of the graph, as arrays (initializers or Constant nodes, through Identity)."""
    graph = onnx.load(str(path)).graph
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    consts.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node
                   if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"})
    # equal scales may be shared: the exporter writes one constant and Identity nodes naming it again
    consts.update({n.output[0]: consts[n.input[0]] for n in graph.node if n.op_type == "Identity"
                   and n.input[0] in consts})
    return [np.atleast_1d(consts[n.input[1]]) for n in graph.node if n.op_type == "QuantizeLinear"]


def _qat_model(root):
    """The QAT model as `toolkit train --qat` left it (model_qat.pt), fake quantization on."""
    qat = to_qat(create_model(DEFAULT_PRESET), batch_size=BATCH, seq_len=128)   # what `train` trains
    qat.load_state_dict(torch.load(root / "qat" / "model_qat.pt", weights_only=True))
    set_quantization(qat, True)
    return qat.eval()


@pytest.fixture(scope="module")
def bundle(loop):
    """The QAT result exported for the Jetson; returns (bundle folder, the export's summary)."""
    import contextlib
    import io
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli(["export", "--model", str(loop / "qat" / "model.pt"), "--target", "jetson", "--no-fidelity",
                    "--verify-windows", "4", "--quiet", "--out", str(loop / "bundle")]) == 0
    return loop / "bundle", printed.getvalue()


def test_export_ships_the_qat_ranges(loop, bundle, capsys):
    folder, printed = bundle
    assert f"INT8 ranges: QAT checkpoint {loop / 'qat' / 'model.pt'}" in printed
    capsys.readouterr()
    assert cli(["inspect", str(folder)]) == 0
    assert f"int8       INT8 ranges: QAT checkpoint {loop / 'qat' / 'model.pt'}" in capsys.readouterr().out
    manifest = Bundle.load(folder).manifest
    cal = manifest["export"]["calibration"]
    assert cal["source"] == "qat" and cal["path"] == str(loop / "qat" / "model.pt")
    assert cal["method"] == json.loads((loop / "cal.json").read_text())["calibrator"]["method"]
    assert cal["windows"] == 16 and cal["data"]["fine_tuned_on"]["recordings"] >= 2
    # Every Q/DQ scale of the shipped graph is a QAT quantizer's scale (amax / 127), and every weight quantizer's
    # per-channel scales are there.
    qat = _qat_model(loop)
    qat_scales = [q.scale.detach().numpy().ravel() for q in quantizers(qat).values()]
    graph_scales = _qdq_scales(folder / INT8_FILE)
    assert len(graph_scales) >= len(qat_scales) // 2

    def same(a, b):
        return a.shape == b.shape and np.allclose(a, b, rtol=1e-6, atol=0)
    assert all(any(same(g, q) for q in qat_scales) for g in graph_scales)
    assert all(any(same(q, g) for g in graph_scales) for q in qat_scales if q.size > 1)
    # The QAT run kept the ranges it started from (calibrated by `toolkit calibrate`) while its weights moved.
    cache = json.loads((loop / "cal.json").read_text())["amax"]
    assert all(np.allclose(np.ravel(cache[n]), q.amax.detach().numpy().ravel()) for n, q in quantizers(qat).items())
    float_before = torch.load(loop / "float" / "model.pt", weights_only=True)["state_dict"]
    assert any(not torch.equal(float_before[k], v) for k, v in qat.state_dict().items() if k in float_before)


def test_evaluate_on_the_bundle_reproduces_the_qat_model(loop, bundle, capsys):
    capsys.readouterr()
    assert cli(["evaluate", *HELD_OUT, "--bundle", str(bundle[0]), "--precision", "int8", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    bundle_result = printed["results"][0]
    assert printed["precision"] == "int8" and "(int8, onnxruntime)" in bundle_result["name"]
    qat = _qat_model(loop)
    spec = Bundle.load(bundle[0]).input.spec
    settings = EventSettings()

    def infer(x):
        with torch.no_grad():
            return torch.sigmoid(_forward_fixed_batch(qat, torch.from_numpy(x))).numpy()
    recs = synthetic_recordings(2, seed=1000, minutes=1.0)
    hop, look = settings.hop_samples(spec.rate_hz), settings.lookahead_samples(spec.rate_hz)
    probs = [at_recording_rate(predict_recording(r, spec, infer, hop, look), spec.rate_hz, r) for r in recs]
    qat_result = score(recs, probs, settings, "qat")
    assert abs(bundle_result["any_fog"]["ap"] - qat_result["any_fog"]["ap"]) <= 0.005
    for cls, ap in qat_result["ap"].items():
        if isinstance(ap, float) and not np.isnan(ap):
            assert abs(bundle_result["ap"][cls] - ap) <= 0.005, cls


def test_ranges_for_other_weights_are_refused(loop, capsys):
    cal = loop / "cal.json"
    made_for = json.loads(cal.read_text())["model_hash"]
    capsys.readouterr()
    # the shipped fog-small is not the model the cache was made on
    assert cli(["export", "--model", "fog-small", "--calibration", str(cal), "--target", "jetson",
                "--out", str(loop / "refused")]) == 2
    message = capsys.readouterr().err
    assert f"calibration cache {cal} was made for float weights with hash {made_for[:16]}" in message
    assert "recalibrate" in message and str(loop / "float" / "model.pt") in message
    assert not (loop / "refused").exists()
    assert cli(["export", "--model", str(loop / "qat" / "model.pt"), "--calibration", str(cal), "--target", "jetson",
                "--out", str(loop / "refused")]) == 2
    assert "carries its own learnt ranges" in capsys.readouterr().err


def test_a_calibration_cache_ships_as_it_is(loop, capsys):
    cal = loop / "cal.json"
    capsys.readouterr()
    assert cli(["export", "--model", str(loop / "float" / "model.pt"), "--calibration", str(cal), "--target", "jetson",
                "--no-fidelity", "--verify-windows", "4", "--quiet", "--out", str(loop / "cached")]) == 0
    assert f"INT8 ranges: calibration cache {cal} (" in capsys.readouterr().out
    calibration = Bundle.load(loop / "cached").manifest["export"]["calibration"]
    cache = json.loads(cal.read_text())
    assert calibration["source"] == "cache" and calibration["model_hash"] == cache["model_hash"]
    assert calibration["windows"] == 16 and calibration["calibrator"] == cache["calibrator"]
    cache_scales = [np.ravel(v) / 127 for v in cache["amax"].values()]
    graph_scales = _qdq_scales(loop / "cached" / INT8_FILE)
    assert graph_scales and all(any(g.shape == c.shape and np.allclose(g, c, rtol=1e-6, atol=0)
                                    for c in cache_scales) for g in graph_scales)
