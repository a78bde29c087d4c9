"""The documented names and keywords of the model documents the zoo follows (issue 18, item 5 of the audit).

- tsai 1.0.1's keyword `activation` of its TST encoder layers (this project called it `activation_name`);
- tsai's private helpers of the TransformerRNNPlus / RNNAttentionPlus families, importable under tsai's names and
  with tsai's positional order;
- torchrecurrent 0.2.5's `SCRN.bias` and `SCRN.initialize_cells()`;
- unknown constructor keywords refused by every zoo class with the nearest valid keyword (tsai ignores them).
"""
from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

import models
from models import heads, recurrent, rnn_attention, scrn, transformer_rnn

# --- tsai's keyword `activation` ---------------------------------------------------------------------------------


def test_tst_encoder_layer_takes_tsais_activation_keyword():
    layer = rnn_attention.TSTEncoderLayer(10, 16, 4, activation="gelu")
    assert isinstance(layer.ff[1], nn.GELU)
    assert isinstance(rnn_attention.TSTEncoderLayer(10, 16, 4, activation="relu").ff[1], nn.ReLU)
    assert isinstance(rnn_attention.TSTEncoderLayer(10, 16, 4, d_ff=8, dropout=0.0, activation=nn.SiLU).ff[1],
                      nn.SiLU)
    encoder = rnn_attention.TSTEncoder(10, 16, 4, d_ff=32, activation="relu", n_layers=2)
    assert all(isinstance(layer.ff[1], nn.ReLU) for layer in encoder.layers)
    # positional, in tsai's order (q_len, d_model, n_heads, d_k, d_v, d_ff, dropout, activation)
    assert isinstance(rnn_attention.TSTEncoderLayer(10, 16, 4, None, None, 32, 0.1, "relu").ff[1], nn.ReLU)


def test_the_projects_old_spelling_still_works_and_conflicts_are_refused():
    assert isinstance(rnn_attention.TSTEncoderLayer(10, 16, 4, activation_name="relu").ff[1], nn.ReLU)
    assert isinstance(rnn_attention.TSTEncoder(10, 16, 4, activation_name="relu").layers[0].ff[1], nn.ReLU)
    with pytest.raises(TypeError, match="activation"):
        rnn_attention.TSTEncoderLayer(10, 16, 4, activation="gelu", activation_name="relu")


# --- tsai's private helpers ----------------------------------------------------------------------------------------

# Parameter names in tsai 1.0.1's order (tsai/models/TransformerRNNPlus.py, RNNAttentionPlus.py, layers.py).
TSAI_SIGNATURES = {
    "_TransformerRNNEncoder": ["cell", "c_in", "seq_len", "d_model", "nhead", "proj_dropout", "num_encoder_layers",
                               "dim_feedforward", "dropout", "num_rnn_layers", "bidirectional"],
    "_TransformerRNNPlus": ["c_in", "c_out", "seq_len", "d", "d_model", "nhead", "proj_dropout",
                            "num_encoder_layers", "dim_feedforward", "dropout", "num_rnn_layers", "bidirectional",
                            "custom_head"],
    "_ScaledDotProductAttention": ["d_k"],
    "_MultiHeadAttention": ["d_model", "n_heads", "d_k", "d_v"],
    "_TSTEncoderLayer": ["q_len", "d_model", "n_heads", "d_k", "d_v", "d_ff", "dropout", "activation"],
    "_TSTEncoder": ["q_len", "d_model", "n_heads", "d_k", "d_v", "d_ff", "dropout", "activation", "n_layers"],
    "_RNNAttentionPlus_Backbone": ["cell", "c_in", "seq_len", "d", "hidden_size", "rnn_layers", "bias",
                                   "rnn_dropout", "bidirectional", "encoder_layers", "n_heads", "d_k", "d_v", "d_ff",
                                   "encoder_dropout", "act"],
    "_RNNAttentionPlus_Base": ["c_in", "c_out", "seq_len", "d", "hidden_size", "rnn_layers", "bias", "rnn_dropout",
                               "bidirectional", "encoder_layers", "n_heads", "d_k", "d_v", "d_ff", "encoder_dropout",
                               "act", "fc_dropout", "y_range", "custom_head", "use_bn", "flatten"],
}
HOMES = {"_TransformerRNNEncoder": transformer_rnn, "_TransformerRNNPlus": transformer_rnn}


@pytest.mark.parametrize("name", sorted(TSAI_SIGNATURES))
def test_tsais_private_helpers_importable_with_tsais_positional_order(name):
    home = HOMES.get(name, rnn_attention)
    helper = getattr(home, name)
    assert getattr(models, name) is helper              # also from the package, like the documented imports
    params = [p for p in inspect.signature(helper.__init__).parameters if p not in ("self", "kwargs")]
    assert params[:len(TSAI_SIGNATURES[name])] == TSAI_SIGNATURES[name]


def test_documented_imports():
    from models import _MultiHeadAttention, _TransformerRNNEncoder, _TSTEncoderLayer  # noqa: F401
    from models.heads import lin_nd_head
    from models.rnn_attention import get_activation_fn
    assert lin_nd_head is heads.LinNdHead
    assert isinstance(get_activation_fn("relu"), nn.ReLU) and isinstance(get_activation_fn(nn.Tanh), nn.Tanh)
    assert issubclass(models.LSTMAttentionPlus, rnn_attention._RNNAttentionPlus_Base)
    assert issubclass(models.TransformerGRUPlus, transformer_rnn._TransformerRNNPlus)


def test_private_helpers_compute_what_the_families_compute():
    torch.manual_seed(0)
    backbone = rnn_attention._RNNAttentionPlus_Backbone(nn.LSTM, 3, 10, None, 8, encoder_layers=1,
                                                        n_heads=2).eval()
    x = torch.randn(2, 3, 10)
    with torch.no_grad():
        assert tuple(backbone(x).shape) == (2, 8, 10)
        torch.testing.assert_close(backbone(x, mask=None), backbone(x))
    mha = rnn_attention._MultiHeadAttention(16, 4, 4, 4)
    q = torch.randn(2, 5, 16)
    heads_q = mha.W_Q(q).reshape(2, 5, 4, 4).transpose(1, 2)
    heads_k = mha.W_K(q).reshape(2, 5, 4, 4).permute(0, 2, 3, 1)
    heads_v = mha.W_V(q).reshape(2, 5, 4, 4).transpose(1, 2)
    context, attn = rnn_attention._ScaledDotProductAttention(4)(heads_q, heads_k, heads_v)
    output, attn_mha = mha(q, q, q)
    torch.testing.assert_close(attn, attn_mha)
    torch.testing.assert_close(mha.W_O(context.transpose(1, 2).reshape(2, 5, 16)), output)
    head = models.LSTMAttentionPlus(3, 2, 10, hidden_size=8, encoder_layers=1, n_heads=2).create_head(80, 2)
    assert isinstance(head[-1], nn.Linear) and head[-1].in_features == 80


# --- torchrecurrent's SCRN.bias and initialize_cells ----------------------------------------------------------------


def test_scrn_bias_attribute_and_initialize_cells():
    assert models.SCRN(10, 20).bias is True
    no_bias = models.SCRN(10, 20, num_layers=2, bias=False)
    assert no_bias.bias is False and all(cell.bias is False for cell in no_bias.cells)
    layer = models.SCRN(10, 20, num_layers=3)
    layer.initialize_cells(models.SCRNCell, alpha=0.25, recurrent_bias=False)
    assert len(layer.cells) == 3
    assert [cell.input_size for cell in layer.cells] == [10, 20, 20]
    assert all(float(cell.alpha.detach()) == 0.25 and not cell.recurrent_bias for cell in layer.cells)


# --- unknown keywords -----------------------------------------------------------------------------------------------

# Every nn.Module class the zoo defines: minimal positional arguments, a misspelt keyword, the keyword meant.
ZOO_CLASSES = {
    "TransformerRNNPlus": ((4, 3, 8), "num_rnn_layer", "num_rnn_layers"),
    "TransformerLSTMPlus": ((4, 3, 8), "num_rnn_layer", "num_rnn_layers"),
    "TransformerGRUPlus": ((4, 3, 8), "dim_feedforwrd", "dim_feedforward"),
    "TransformerRNNEncoder": ((nn.LSTM, 4, 8, 16, 4), "nheads", "nhead"),
    "RNNAttentionPlus": ((4, 3, 8), "n_head", "n_heads"),
    "LSTMAttentionPlus": ((4, 3, 8), "hiden_size", "hidden_size"),
    "GRUAttentionPlus": ((4, 3, 8), "encoder_layer", "encoder_layers"),
    "RNNAttentionBackbone": ((nn.GRU, 4, 8), "hidden", "hidden_size"),
    "TSTEncoderLayer": ((8, 16, 4), "activaton", "activation"),
    "TSTEncoder": ((8, 16, 4), "n_layer", "n_layers"),
    "TSTMultiHeadAttention": ((16, 4, 4, 4), "n_head", "n_heads"),
    "ScaledDotProductAttention": ((4,), "dk", "d_k"),
    "RNN": ((4, 8), "num_layer", "num_layers"),
    "GRU": ((4, 8), "bidirectonal", "bidirectional"),
    "LSTM": ((4, 8), "batchfirst", "batch_first"),
    "RecurrentClassifier": ((4, 8, 3), "num_class", "num_classes"),
    "SCRN": ((4, 8), "recurent_bias", "recurrent_bias"),
    "SCRNCell": ((4, 8), "alpah", "alpha"),
    "LinNdHead": ((8, 3), "use_bnn", "use_bn"),
    "FlattenHead": ((8, 3), "fc_dropuot", "fc_dropout"),
    "Squeeze": ((), "dims", "dim"),
    "Transpose": ((0, 1), "dim_0", "dim0"),
    "Reshape": ((), "shape", None),
    "Flatten": ((), "start_dim", None),
    "SigmoidRange": ((0.0, 1.0), "lo", "low"),
}


def _zoo_classes() -> dict[str, type]:
    found = {}
    for module in (heads, recurrent, rnn_attention, scrn, transformer_rnn):
        for name, obj in vars(module).items():
            if (isinstance(obj, type) and issubclass(obj, nn.Module) and obj.__module__ == module.__name__
                    and obj.__name__ == name and not name.startswith("_")):    # aliases are not classes
                found[name] = obj
    return found


def test_every_zoo_class_is_covered_here():
    assert set(_zoo_classes()) == set(ZOO_CLASSES)


@pytest.mark.parametrize("name", sorted(ZOO_CLASSES))
def test_unknown_keyword_is_refused_with_the_nearest_valid_one(name):
    cls = _zoo_classes()[name]
    args, wrong, meant = ZOO_CLASSES[name]
    with pytest.raises(TypeError) as info:
        cls(*args, **{wrong: 1})
    message = str(info.value)
    assert f"{name}() got an unexpected keyword argument {wrong!r}" in message
    if meant is not None:
        assert f"did you mean {meant!r}?" in message


def test_the_issues_example_and_presets():
    with pytest.raises(TypeError, match="did you mean 'num_rnn_layers'"):
        models.TransformerLSTMPlus(c_in=24, c_out=3, seq_len=128, num_rnn_layer=5)
    with pytest.raises(TypeError, match="did you mean 'num_rnn_layers'"):
        models.create_model("fog-small", num_rnn_layer=2)
    with pytest.raises(TypeError, match="valid keywords: .*hidden_size"):
        models.RecurrentClassifier(4, 8, 3, completely_different=1)


def test_keywords_for_a_custom_head_factory_still_reach_it():
    seen = {}

    def head(n_in, c_out, seq_len, d=None, **kwargs):
        seen.update(kwargs)
        return heads.LinNdHead(n_in, c_out, seq_len=seq_len, d=d)

    models.TransformerLSTMPlus(4, 3, 8, d_model=8, nhead=2, custom_head=head, head_width=5)
    assert seen == {"head_width": 5}
    with pytest.raises(TypeError, match="head_width"):       # no factory to take it: refused
        models.TransformerLSTMPlus(4, 3, 8, d_model=8, nhead=2, custom_head=nn.Identity(), head_width=5)
