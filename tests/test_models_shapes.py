"""Shapes, parameter counts and state_dict keys of the zoo (figures from tsai 1.0.1 / torchrecurrent 0.2.5)."""
from __future__ import annotations

import pytest
import torch

from models import (GRU, LSTM, RNN, SCRN, GRUAttentionPlus, LSTMAttentionPlus, RecurrentClassifier, RNNAttentionPlus,
                    SCRNCell, TransformerGRUPlus, TransformerLSTMPlus, TransformerRNNPlus)

TRANSFORMER_RNNS = [TransformerRNNPlus, TransformerLSTMPlus, TransformerGRUPlus]


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


HEADS = [(1, None, (4,)), (3, None, (4, 3)), (3, 50, (4, 50, 3))]
MORE_HEADS = [(1, 50, (4, 50)), (2, (3, 7), (4, 3, 7, 2))]


def _transformer_rnn_output_shape(cls, c_out, d, tsai_compat=False):
    model = cls(c_in=5, c_out=c_out, seq_len=50, d=d, d_model=128, nhead=4, num_encoder_layers=2,
                num_rnn_layers=1, bidirectional=True, tsai_compat=tsai_compat).eval()
    with torch.no_grad():
        return tuple(model(torch.randn(4, 5, 50)).shape)


@pytest.mark.parametrize("cls", TRANSFORMER_RNNS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("c_out,d,expected", HEADS)
def test_transformer_rnn_heads(cls, c_out, d, expected):
    assert _transformer_rnn_output_shape(cls, c_out, d) == expected


@pytest.mark.parametrize("c_out,d,expected", HEADS + MORE_HEADS)
def test_transformer_rnn_heads_in_tsai_compat_mode_and_more_heads(c_out, d, expected):
    assert _transformer_rnn_output_shape(TransformerLSTMPlus, c_out, d, tsai_compat=True) == expected
    if (c_out, d, expected) in MORE_HEADS:
        assert _transformer_rnn_output_shape(TransformerLSTMPlus, c_out, d) == expected


def test_transformer_rnn_encoder_is_channels_first_backbone():
    model = TransformerLSTMPlus(c_in=5, c_out=3, seq_len=50, d_model=128, nhead=4, num_encoder_layers=1,
                                num_rnn_layers=3, bidirectional=True).eval()
    with torch.no_grad():
        assert tuple(model.backbone(torch.randn(4, 5, 50)).shape) == (4, 1024, 50)
    assert model.head_nf == 1024
    unidirectional = TransformerGRUPlus(c_in=5, c_out=3, seq_len=50, d_model=32, nhead=4, num_rnn_layers=2,
                                        bidirectional=False)
    assert unidirectional.head_nf == 32


def test_transformer_rnn_keys_are_tsai_keys_in_both_modes():
    kwargs = dict(c_in=5, c_out=3, seq_len=20, d=20, d_model=16, nhead=4, num_encoder_layers=2, num_rnn_layers=2)
    keys = set(TransformerLSTMPlus(**kwargs).state_dict())
    assert keys == set(TransformerLSTMPlus(**kwargs, tsai_compat=True).state_dict())
    assert {"backbone.pos_encoding", "backbone.proj_linear.weight", "head.1.weight", "head.1.bias",
            "backbone.enc_layers.1.self_attn.in_proj_weight", "backbone.rnn_layers.1.weight_hh_l0_reverse"} <= keys
    assert TransformerLSTMPlus(**kwargs).backbone.pos_encoding.shape == (1, 20, 16)


def test_transformer_rnn_custom_head():
    head = torch.nn.Sequential(torch.nn.AdaptiveMaxPool1d(1), torch.nn.Flatten(), torch.nn.Linear(64, 2))
    model = TransformerGRUPlus(c_in=3, c_out=2, seq_len=10, d_model=32, nhead=4, custom_head=head).eval()
    assert tuple(model(torch.randn(2, 3, 10)).shape) == (2, 2)
    made = TransformerGRUPlus(c_in=3, c_out=2, seq_len=10, d_model=32, nhead=4,
                              custom_head=lambda nf, c_out, seq_len, d=None: torch.nn.Conv1d(nf, c_out, 1)).eval()
    assert tuple(made(torch.randn(2, 3, 10)).shape) == (2, 2, 10)


def test_rnn_attention_parameter_counts_match_tsai():
    kwargs = dict(hidden_size=128, rnn_layers=1, encoder_layers=3, n_heads=16, d_ff=256, encoder_dropout=0.1,
                  act="gelu", fc_dropout=0.1)
    assert n_params(RNNAttentionPlus(9, 2, 500, **kwargs)) == 541698
    assert n_params(RNNAttentionPlus(9, 2, 60, **kwargs)) == 429058
    model = RNNAttentionPlus(9, 2, 60, d=10).eval()
    assert n_params(model) == 567572
    assert tuple(model(torch.randn(3, 9, 60)).shape) == (3, 10, 2)
    model = RNNAttentionPlus(9, 2, 60, d=(3, 10)).eval()
    assert n_params(model) == 874812
    assert tuple(model(torch.randn(3, 9, 60)).shape) == (3, 3, 10, 2)


@pytest.mark.parametrize("cls", [RNNAttentionPlus, LSTMAttentionPlus, GRUAttentionPlus], ids=lambda c: c.__name__)
def test_rnn_attention_variants(cls):
    x = torch.randn(2, 4, 12)
    for kwargs, shape in [(dict(), (2, 3)), (dict(y_range=(0, 5)), (2, 3)),
                          (dict(d=12, flatten=False, use_bn=False), (2, 12, 3)),
                          (dict(bidirectional=True, rnn_layers=2, d=6), (2, 6, 3))]:
        model = cls(4, 3, 12, hidden_size=8, n_heads=2, d_ff=16, encoder_layers=1, **kwargs).eval()
        with torch.no_grad():
            y = model(x)
        assert tuple(y.shape) == shape
        if "y_range" in kwargs:
            assert 0 <= y.min().item() and y.max().item() <= 5


def test_recurrent_baselines_shapes():
    x = torch.randn(3, 10, 10)
    output, hidden = RNN(10, 20, bidirectional=True)(x)
    assert tuple(output.shape) == (3, 10, 40) and tuple(hidden.shape) == (2, 3, 20)
    _, hidden = GRU(10, 20, num_layers=5)(x)
    assert tuple(hidden.shape) == (5, 3, 20)
    output, (hidden, cell) = LSTM(10, 20)(x)
    assert tuple(output.shape) == (3, 10, 20)
    assert tuple(hidden.shape) == (1, 3, 20) and tuple(cell.shape) == (1, 3, 20)


def test_recurrent_classifier_uses_last_step():
    model = RecurrentClassifier(10, 16, 4, kind="gru", num_layers=2).eval()
    x = torch.randn(3, 10, 10)
    with torch.no_grad():
        y = model(x)
        output, _ = model.encoder(x)
        assert torch.allclose(y, model.fc(output[:, -1]))
    assert tuple(y.shape) == (3, 4)
    with pytest.raises(ValueError, match="unknown recurrent kind"):
        RecurrentClassifier(10, 16, 4, kind="transformer")


def test_scrn_parameters_and_keys():
    model = SCRN(10, 20, num_layers=2)
    assert n_params(model) == 4642
    names = ("alpha", "weight_ih", "weight_hh", "weight_ch", "bias_ih", "bias_hh", "bias_ch")
    assert set(model.state_dict()) == {f"cells.{k}.{name}" for k in (0, 1) for name in names}
    no_bias = SCRN(10, 20, bias=False)
    assert "cells.0.bias_ih" in no_bias.state_dict() and "cells.0.bias_ih" not in dict(no_bias.named_parameters())
    assert no_bias.cells[0].bias_ih.abs().sum() == 0


def test_scrn_outputs_and_cell_step():
    model = SCRN(4, 6, num_layers=2).eval()
    x = torch.randn(7, 3, 4)
    output, (h_n, s_n) = model(x)
    assert tuple(output.shape) == (7, 3, 6) and tuple(h_n.shape) == (2, 3, 6) and tuple(s_n.shape) == (2, 3, 6)
    assert torch.allclose(output[-1], h_n[-1])
    # The stacked layer is the cell applied step by step.
    h = s = torch.zeros(3, 6)
    for t in range(7):
        h, s = model.cells[0](x[t], (h, s))
    assert torch.allclose(h, h_n[0], atol=1e-6) and torch.allclose(s, s_n[0], atol=1e-6)
    batch_first = SCRN(4, 6, batch_first=True)
    assert tuple(batch_first(torch.randn(3, 7, 4))[0].shape) == (3, 7, 6)
    cell = SCRNCell(4, 6)
    h1, s1 = cell(torch.randn(4))
    assert tuple(h1.shape) == (6,) and tuple(s1.shape) == (6,)


def test_scrn_step_is_torchrecurrents_code_not_its_docstring():
    """Hand-computed step: the hidden state goes through sigmoid then a second tanh GEMM (the code's form)."""
    cell = SCRNCell(3, 2, alpha=0.25)
    with torch.no_grad():
        for p in (cell.weight_ih, cell.weight_hh, cell.weight_ch, cell.bias_ih, cell.bias_hh, cell.bias_ch):
            p.copy_(torch.randn(p.shape))
    x, h, s = torch.randn(1, 3), torch.randn(1, 2), torch.randn(1, 2)
    gx = x @ cell.weight_ih.t() + cell.bias_ih
    s_new = 0.75 * gx[:, :2] + 0.25 * s
    gc = s_new @ cell.weight_ch.t() + cell.bias_ch
    z = torch.sigmoid(gx[:, 2:] + h @ cell.weight_hh[:2].t() + cell.bias_hh[:2] + gc[:, :2])
    h_new = torch.tanh(z @ cell.weight_hh[2:].t() + cell.bias_hh[2:] + gc[:, 2:])
    got_h, got_s = cell(x, (h, s))
    assert torch.allclose(got_s, s_new, atol=1e-6) and torch.allclose(got_h, h_new, atol=1e-6)
