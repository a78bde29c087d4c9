"""`toolkit inspect`: a bundle printed for a person, and refused when it is not a bundle or fails its hashes."""
from __future__ import annotations

import json

import pytest

from tests.helpers_bundle import make_bundle
from toolkit.cli import main as cli


@pytest.fixture
def bundle(tmp_path):
    return make_bundle(tmp_path / "b")


def test_inspect_prints_what_a_person_needs(bundle, capsys):
    assert cli(["inspect", str(bundle)]) == 0
    out = capsys.readouterr().out
    manifest = json.loads((bundle / "manifest.json").read_text())
    checks = len(manifest["checks"])
    for text in ("64 Hz", "window 256 samples", "layout BCT", "per patch, sigmoid", "StartHesitation",
                 "precision  fp32", "target     cpu", "torch_vs_ort_fp32", f"{checks}/{checks} passed",
                 "model_fp32.onnx", f"{manifest['model']['parameters']:,} parameters"):
        assert text in out, text
    assert cli(["inspect", str(bundle), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == manifest


def test_inspect_verify_refuses_a_changed_byte_and_an_extra_file(bundle, capsys):
    assert cli(["inspect", str(bundle), "--verify"]) == 0
    assert "verified: all 1 files" in capsys.readouterr().out
    model = (bundle / "model_fp32.onnx").read_bytes()
    (bundle / "model_fp32.onnx").write_bytes(model[:-1] + bytes([model[-1] ^ 1]))   # one bit of one byte
    assert cli(["inspect", str(bundle), "--verify"]) == 2
    assert "model_fp32.onnx: sha256 differs" in capsys.readouterr().err
    (bundle / "model_fp32.onnx").write_bytes(model)
    (bundle / "extra.onnx").write_bytes(b"x")
    assert cli(["inspect", str(bundle), "--verify"]) == 2
    assert "extra.onnx: present but not listed" in capsys.readouterr().err


def test_inspect_of_a_folder_that_is_no_bundle(tmp_path, capsys):
    assert cli(["inspect", str(tmp_path)]) == 2
    assert "no manifest.json" in capsys.readouterr().err
