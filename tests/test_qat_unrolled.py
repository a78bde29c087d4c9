"""Unrolled LSTM/GRU/RNN and the static encoder equal their float modules with quantizers disabled (<= 1e-5)."""
from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from models.qat import UnrolledGRU, UnrolledLSTM, UnrolledRNN, calibrate_max, quantizers, to_qat
from models.qat.attention import StaticEncoder, StaticEncoderLayer

BATCH, STEPS, FEATURES, HIDDEN = 2, 5, 3, 4
CASES = list(itertools.product((nn.LSTM, nn.GRU, nn.RNN), (1, 2, 3), (False, True), (False, True)))


def _max_diff(a, b) -> float:
    if isinstance(a, tuple):
        return max(_max_diff(x, y) for x, y in zip(a, b))
    return (a - b).abs().max().item()


@pytest.mark.parametrize("cell, layers, bidirectional, batch_first", CASES,
                         ids=[f"{c.__name__}-{n}-{'bi' if b else 'uni'}-{'bf' if f else 'tf'}"
                              for c, n, b, f in CASES])
def test_unrolled_equals_float(cell, layers, bidirectional, batch_first):
    torch.manual_seed(layers)
    rnn = cell(FEATURES, HIDDEN, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first).eval()
    qat = to_qat(rnn, BATCH, STEPS).eval()
    assert type(qat) is {nn.LSTM: UnrolledLSTM, nn.GRU: UnrolledGRU, nn.RNN: UnrolledRNN}[cell]
    x = torch.randn((BATCH, STEPS, FEATURES) if batch_first else (STEPS, BATCH, FEATURES))
    directions = 2 if bidirectional else 1
    h0 = torch.randn(layers * directions, BATCH, HIDDEN)
    hx = (h0, torch.randn_like(h0)) if cell is nn.LSTM else h0
    with torch.no_grad():
        assert _max_diff(rnn(x), qat(x)) <= 1e-5
        assert _max_diff(rnn(x, hx), qat(x, hx)) <= 1e-5


def test_parameter_names_carry_over_and_relu_rnn_and_unsupported_projection():
    lstm = nn.LSTM(3, 4, num_layers=2, bidirectional=True)
    qat = to_qat(lstm, 1, 3)
    float_keys = set(lstm.state_dict())
    assert float_keys <= set(qat.state_dict())
    assert qat.load_state_dict(lstm.state_dict(), strict=False).missing_keys == [
        k for k in qat.state_dict() if k not in float_keys]
    relu = nn.RNN(3, 4, nonlinearity="relu", batch_first=True).eval()
    x = torch.randn(2, 6, 3)
    assert _max_diff(relu(x), to_qat(relu, 2, 6)(x)) <= 1e-5
    with pytest.raises(ValueError, match="proj_size"):
        to_qat(nn.LSTM(3, 4, proj_size=2), 1, 3)


def test_one_shared_hidden_quantizer_per_layer_and_direction():
    qat = to_qat(nn.GRU(3, 4, num_layers=2, bidirectional=True), 1, 5)
    names = sorted(quantizers(qat))
    assert [n for n in names if n.startswith("hidden")] == [
        "hidden_quantizers.l0", "hidden_quantizers.l0_reverse", "hidden_quantizers.l1", "hidden_quantizers.l1_reverse"]
    # Input quantized once per layer, shared by both directions.
    assert [n for n in names if n.startswith("input")] == ["input_quantizers.l0", "input_quantizers.l1"]


def test_dropout_between_layers_only_in_training():
    torch.manual_seed(0)
    rnn = nn.LSTM(3, 4, num_layers=2, dropout=0.5, batch_first=True)
    qat = to_qat(rnn, 2, 5)
    x = torch.randn(2, 5, 3)
    qat.eval()
    assert torch.equal(qat(x)[0], qat(x)[0])
    qat.train()
    assert not torch.equal(qat(x)[0], qat(x)[0])


def test_fake_quantized_lstm_stays_close_and_trains():
    torch.manual_seed(0)
    rnn = nn.LSTM(3, 8, batch_first=True).eval()
    qat = to_qat(rnn, 2, 6)
    windows = [torch.randn(2, 6, 3) for _ in range(3)]
    calibrate_max(qat, windows)
    x = windows[0]
    with torch.no_grad():
        diff = _max_diff(rnn(x)[0], qat(x)[0])
    assert 0 < diff < 0.05            # quantization changes the output, but only a little
    qat.train()
    qat(x)[0].sum().backward()
    assert qat.weight_hh_l0.grad is not None and qat.weight_hh_l0.grad.abs().sum() > 0


@pytest.mark.parametrize("batch_first, norm_first, activation", [(True, False, "relu"), (False, True, "gelu")])
def test_static_encoder_equals_float(batch_first, norm_first, activation):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, 32, batch_first=batch_first, norm_first=norm_first,
                                       activation=activation)
    encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    qat = to_qat(encoder, 2, 7).eval()
    assert isinstance(qat, StaticEncoder) and all(isinstance(m, StaticEncoderLayer) for m in qat.layers)
    assert set(encoder.state_dict()) <= set(qat.state_dict())
    assert not any(isinstance(m, nn.MultiheadAttention) for m in qat.modules())
    x = torch.randn((2, 7, 16) if batch_first else (7, 2, 16))
    with torch.no_grad():
        assert _max_diff(encoder(x), qat(x)) <= 1e-5
    with pytest.raises(ValueError, match="no attention masks"):
        qat.layers[0](x, src_mask=torch.zeros(7, 7))
