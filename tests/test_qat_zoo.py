"""QAT conversion of the zoo's own layers (SCRN, TSTMultiHeadAttention) and of every registry preset."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from models.onnx_export import export_onnx
from models.qat import calibrate_max, to_qat
from models.qat.tst_attention import StaticTSTAttention
from models.qat.unrolled_scrn import UnrolledSCRN
from toolkit.export.qdq import check_qdq


def _max_diff(a, b) -> float:
    if isinstance(a, (tuple, list)):
        return max(_max_diff(x, y) for x, y in zip(a, b))
    return (a - b).abs().max().item()


def _scrn_class():
    scrn = pytest.importorskip("models.scrn", reason="models/scrn.py has not landed yet")
    return scrn.SCRN


@pytest.mark.parametrize("layers, batch_first", [(1, True), (2, False), (3, True)])
def test_unrolled_scrn_equals_float(layers, batch_first):
    torch.manual_seed(layers)
    scrn = _scrn_class()(3, 4, num_layers=layers, batch_first=batch_first).eval()
    qat = to_qat(scrn, 2, 5).eval()
    assert isinstance(qat, UnrolledSCRN)
    assert set(scrn.state_dict()) <= set(qat.state_dict())
    x = torch.randn((2, 5, 3) if batch_first else (5, 2, 3))
    hx = (torch.randn(layers, 2, 4), torch.randn(layers, 2, 4))
    with torch.no_grad():
        assert _max_diff(scrn(x), qat(x)) <= 1e-5
        assert _max_diff(scrn(x, hx), qat(x, hx)) <= 1e-5


def test_tst_attention_equals_float_and_keeps_names():
    rnn_attention = pytest.importorskip("models.rnn_attention", reason="models/rnn_attention.py has not landed")
    torch.manual_seed(0)
    attention = rnn_attention.TSTMultiHeadAttention(16, 4, 4, 4).eval()
    qat = to_qat(attention, 2, 7).eval()
    assert isinstance(qat, StaticTSTAttention)
    assert set(attention.state_dict()) <= set(qat.state_dict())
    x = torch.randn(2, 7, 16)
    with torch.no_grad():
        assert _max_diff(attention(x, x, x)[0], qat(x, x, x)[0]) <= 1e-5


def _presets():
    registry = pytest.importorskip("models.registry", reason="models/registry.py has not landed yet")
    return registry


PRESETS = ("fog-small", "fog-1st-place")


@pytest.mark.parametrize("name", [PRESETS[0], pytest.param(PRESETS[1], marks=pytest.mark.slow)])
def test_every_preset_variant_equals_float(name):
    """fog-1st-place unrolls 2 BiLSTM layers over 864 steps in eager PyTorch: ~6 s CPU, marked slow."""
    registry = _presets()
    assert set(PRESETS) <= set(registry.list_presets())
    torch.manual_seed(0)
    model = registry.create_model(name).eval()
    kwargs = registry.get_preset(name).kwargs
    x = torch.randn(1, kwargs["c_in"], kwargs["seq_len"])
    qat = to_qat(model, 1, kwargs["seq_len"]).eval()
    assert not any(isinstance(m, (nn.LSTM, nn.GRU, nn.RNN, nn.MultiheadAttention)) for m in qat.modules())
    with torch.no_grad():
        assert _max_diff(model(x), qat(x)) <= 1e-5


@pytest.mark.parametrize("opset", [13, 17])
def test_fog_small_int8_export_passes_checker(tmp_path, opset):
    registry = _presets()
    torch.manual_seed(0)
    kwargs = registry.get_preset("fog-small").kwargs
    # Shorter than the preset's window keeps the unit test fast; the benchmark exports the full length.
    model = registry.create_model("fog-small", seq_len=16).eval()
    x = torch.randn(1, kwargs["c_in"], 16)
    qat = calibrate_max(to_qat(model, 1, 16).eval(), [torch.randn(1, kwargs["c_in"], 16) for _ in range(2)])
    path = export_onnx(qat, x, tmp_path / "small.onnx", opset=opset)
    assert check_qdq(path) == []


def _small_family_models():
    transformer_rnn = pytest.importorskip("models.transformer_rnn", reason="models/transformer_rnn.py has not landed")
    rnn_attention = pytest.importorskip("models.rnn_attention", reason="models/rnn_attention.py has not landed")
    small_tr = dict(d_model=16, nhead=2, num_encoder_layers=2, dim_feedforward=16, num_rnn_layers=2)
    small_ra = dict(hidden_size=8, rnn_layers=2, bidirectional=True, encoder_layers=2, n_heads=2, d_ff=16)
    built = []
    for name in ("TransformerRNNPlus", "TransformerLSTMPlus", "TransformerGRUPlus"):
        for compat in (False, True):
            built.append((f"{name}-compat{compat}",
                          getattr(transformer_rnn, name)(6, 3, 12, tsai_compat=compat, **small_tr)))
    for name in ("RNNAttentionPlus", "LSTMAttentionPlus", "GRUAttentionPlus"):
        built.append((name, getattr(rnn_attention, name)(6, 3, 12, **small_ra)))
    return built


def test_every_zoo_family_variant_equals_float_and_exports_clean(tmp_path):
    """Each hybrid class (both tsai_compat semantics) equals its float model; one of each kind exports at opset 13
    to Q/DQ the checker accepts (opset 17 is covered by the preset test and test_qat_export.py)."""
    exported = {"TransformerLSTMPlus-compatFalse", "TransformerGRUPlus-compatTrue", "LSTMAttentionPlus"}
    torch.manual_seed(0)
    x = torch.randn(2, 6, 12)
    for name, model in _small_family_models():
        model.eval()
        qat = to_qat(model, 2, 12).eval()
        with torch.no_grad():
            assert _max_diff(model(x), qat(x)) <= 1e-5, name
        if name not in exported:
            continue
        calibrate_max(qat, [torch.randn(2, 6, 12)])
        problems = check_qdq(export_onnx(qat, x, tmp_path / f"{name}.onnx", opset=13))
        assert problems == [], (name, problems[:5])
