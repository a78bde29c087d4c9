"""Every zoo model and preset exports to ONNX (static shape, opset 17), runs in onnxruntime and matches PyTorch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import models
from models.onnx_export import export_onnx

pytest.importorskip("onnxruntime")

from deploy.engines.session import open_session  # noqa: E402

TOLERANCE = 1e-4


def _flat(output) -> list[np.ndarray]:
    if isinstance(output, torch.Tensor):
        return [output.numpy()]
    return [a for part in output for a in _flat(part)]


def assert_onnx_matches(model: torch.nn.Module, x: torch.Tensor, path, n_outputs: int = 1) -> None:
    model.eval()
    names = ("logits",) if n_outputs == 1 else tuple(f"out{i}" for i in range(n_outputs))
    export_onnx(model, x, path, opset=17, output_names=names)
    session = open_session(str(path))
    got = session.run(None, {"x": x.numpy()})
    with torch.no_grad():
        expected = _flat(model(x))
    assert len(got) == len(expected) == n_outputs
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        assert np.abs(g - e).max() <= TOLERANCE
        assert np.abs(e).max() > 1e-3      # a non-trivial output, so the comparison means something


def _seeded(factory, *args, **kwargs):
    torch.manual_seed(0)
    return factory(*args, **kwargs)


TRANSFORMER_RNN_CASES = [
    (cls, compat, d) for cls in ("TransformerRNNPlus", "TransformerLSTMPlus", "TransformerGRUPlus")
    for compat, d in ((False, 16), (True, None))]


@pytest.mark.parametrize("cls,tsai_compat,d", TRANSFORMER_RNN_CASES, ids=lambda v: str(v))
def test_transformer_rnn_family(cls, tsai_compat, d, tmp_path):
    model = _seeded(getattr(models, cls), c_in=6, c_out=3, seq_len=16, d=d, d_model=16, nhead=4,
                    num_encoder_layers=2, dim_feedforward=32, num_rnn_layers=2, tsai_compat=tsai_compat)
    assert_onnx_matches(model, torch.randn(3, 6, 16), tmp_path / "m.onnx")


@pytest.mark.parametrize("cls,kwargs", [
    ("RNNAttentionPlus", dict(y_range=(-1, 1), fc_dropout=0.1)),
    ("LSTMAttentionPlus", dict(d=16, flatten=False, bidirectional=True, rnn_layers=2)),
    ("GRUAttentionPlus", dict(d=(2, 4), act="relu")),
], ids=lambda v: v if isinstance(v, str) else "")
def test_rnn_attention_family(cls, kwargs, tmp_path):
    model = _seeded(getattr(models, cls), 4, 3, 16, hidden_size=8, n_heads=2, d_ff=16, encoder_layers=2, **kwargs)
    assert_onnx_matches(model, torch.randn(2, 4, 16), tmp_path / "m.onnx")


@pytest.mark.parametrize("cls,n_outputs", [("RNN", 2), ("GRU", 2), ("LSTM", 3)])
def test_recurrent_encoders(cls, n_outputs, tmp_path):
    model = _seeded(getattr(models, cls), 5, 8, num_layers=2, bidirectional=True)
    assert_onnx_matches(model, torch.randn(2, 12, 5), tmp_path / "m.onnx", n_outputs=n_outputs)


def test_recurrent_classifier(tmp_path):
    model = _seeded(models.RecurrentClassifier, 5, 8, 3, kind="lstm", num_layers=2)
    assert_onnx_matches(model, torch.randn(2, 12, 5), tmp_path / "m.onnx")


def test_scrn(tmp_path):
    model = _seeded(models.SCRN, 5, 8, num_layers=2, batch_first=True)
    assert_onnx_matches(model, torch.randn(2, 12, 5), tmp_path / "m.onnx", n_outputs=3)
    cell = _seeded(models.SCRNCell, 5, 8)
    assert_onnx_matches(cell, torch.randn(2, 5), tmp_path / "cell.onnx", n_outputs=2)


def _preset_input(name: str) -> torch.Tensor:
    spec = models.get_preset(name).preprocess
    return torch.randn(1, spec["patch"] * 3, spec["n_patches"])


FAST_PRESETS = [n for n in models.list_presets() if n not in ("fog-1st-place", "fog-small-wide")]


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "fog-scrn" else n
                                  for n in FAST_PRESETS])   # SCRN traces 128 steps: ~9 s
def test_presets(name, tmp_path):
    x = _preset_input(name)
    model = _seeded(models.create_model, name)
    assert_onnx_matches(model, x, tmp_path / "m.onnx")
    if "Transformer" in models.get_preset(name).factory.__name__:   # the others have no tsai_compat form
        compat = _seeded(models.create_model, name, tsai_compat=True)
        assert_onnx_matches(compat, x, tmp_path / "compat.onnx")


@pytest.mark.slow
def test_first_place_preset(tmp_path):
    """~12 M parameters, 864 steps: batch 1 keeps it to about 20 s on two idle cores."""
    x = _preset_input("fog-1st-place")
    assert tuple(x.shape) == models.get_preset("fog-1st-place").io_shapes(batch=1)[0]
    assert_onnx_matches(_seeded(models.create_model, "fog-1st-place"), x, tmp_path / "m.onnx")
