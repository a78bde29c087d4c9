"""`toolkit inspect`: a bundle printed for a person, and refused when it is not a bundle or fails its hashes."""
from __future__ import annotations

import json

import pytest

from deploy.bundle import write_manifest
from toolkit.cli import main as cli


def _sigmoid_onnx() -> bytes:
    """A real graph (inspect --verify loads every graph): x (1, 8, 3) -> probs = sigmoid(x)."""
    from onnx import TensorProto, helper
    graph = helper.make_graph([helper.make_node("Sigmoid", ["x"], ["probs"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 3])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 8, 3])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@pytest.fixture
def bundle(tmp_path):
    folder = tmp_path / "b"
    folder.mkdir()
    (folder / "model_fp32.onnx").write_bytes(_sigmoid_onnx())
    write_manifest(folder, {
        "schema_version": 1, "toolkit_version": "0.1.0", "created": "2026-01-01T00:00:00+00:00",
        "model": {"name": "m", "preset": None, "source": "user", "tsai_compat": False, "weights_sha256": None,
                  "parameters": 1234},
        "input": {"name": "x", "shape": [1, 8, 3], "dtype": "float32", "axes": ["AccV", "AccML", "AccAP"],
                  "preprocess": {"rate_hz": 50.0, "units": "g", "patch": 1, "n_patches": 8,
                                 "normalization": "window", "scale": 1.0, "layout": "BTC"}},
        "output": {"name": "probs", "shape": [1, 8, 3], "classes": ["StartHesitation", "Turn", "Walking"],
                   "per": "sample", "activation": "sigmoid"},
        "events": {"hop_s": 0.5}, "precision": "fp32",
        "models": {"fp32": "model_fp32.onnx", "fp16": None, "int8": None, "engine": None},
        "target": {"name": "cpu", "description": "Any CPU"},
        "verification": {"windows": 4, "pairs": {"torch_vs_ort_fp32": {
            "max_abs": 1e-7, "mean_abs": 1e-8, "threshold": {"max_abs": 1e-4, "mean_abs": 1e-5}, "passed": True}}},
        "checks": [{"name": "onnx checker", "passed": True, "detail": "valid ONNX", "model": "model_fp32.onnx"}],
    })
    return folder


def test_inspect_prints_what_a_person_needs(bundle, capsys):
    assert cli(["inspect", str(bundle)]) == 0
    out = capsys.readouterr().out
    for text in ("50.0 Hz", "window 8 samples", "layout BTC", "per sample, sigmoid", "StartHesitation",
                 "precision  fp32", "torch_vs_ort_fp32", "1/1 passed", "model_fp32.onnx"):
        assert text in out, text
    assert cli(["inspect", str(bundle), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"]["parameters"] == 1234


def test_inspect_verify_refuses_a_changed_byte_and_an_extra_file(bundle, capsys):
    assert cli(["inspect", str(bundle), "--verify"]) == 0
    assert "verified: all 1 files" in capsys.readouterr().out
    good = (bundle / "model_fp32.onnx").read_bytes()
    (bundle / "model_fp32.onnx").write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    assert cli(["inspect", str(bundle), "--verify"]) == 2
    assert "model_fp32.onnx: sha256 differs" in capsys.readouterr().err
    (bundle / "model_fp32.onnx").write_bytes(good)
    (bundle / "extra.onnx").write_bytes(b"x")
    assert cli(["inspect", str(bundle), "--verify"]) == 2
    assert "extra.onnx: present but not listed" in capsys.readouterr().err


def test_inspect_of_a_folder_that_is_no_bundle(tmp_path, capsys):
    assert cli(["inspect", str(tmp_path)]) == 2
    assert "no manifest.json" in capsys.readouterr().err
