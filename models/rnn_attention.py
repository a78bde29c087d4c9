"""RNNAttentionPlus / LSTMAttentionPlus / GRUAttentionPlus: an RNN over time, then TST encoder layers, then a head.

Constructor, defaults and state_dict keys follow tsai 1.0.1 (so tsai checkpoints load with strict=True). The TST
encoder layer is the "Time Series Transformer" one: its own multi-head attention (bias-free projections), residual
connections and post-norm BatchNorm1d over channels (not LayerNorm) after attention and after the feed-forward.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ._keywords import check_keywords, strict_keywords
from .heads import FlattenHead, LinNdHead, Transpose
from .heads import activation as make_activation


def scaled_dot_product(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, d_k: int,
                       mask: torch.Tensor | None = None):
    """softmax(q k / sqrt(d_k)) v with k already transposed: q (bs, h, q_len, d_k), k (bs, h, d_k, kv_len),
    v (bs, h, kv_len, d_v) -> (context (bs, h, q_len, d_v), attn (bs, h, q_len, kv_len))."""
    scores = torch.matmul(q, k) / (d_k ** 0.5)
    if mask is not None:    # True marks positions that must not be attended to
        scores = scores.masked_fill(mask, -1e9)
    attn = torch.softmax(scores, dim=-1)
    return torch.matmul(attn, v), attn


@strict_keywords
class ScaledDotProductAttention(nn.Module):
    """`scaled_dot_product` as a module (tsai's `_ScaledDotProductAttention(d_k)`; it has no parameters)."""

    def __init__(self, d_k: int):
        super().__init__()
        self.d_k = d_k

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None):
        return scaled_dot_product(q, k, v, self.d_k, mask)


@strict_keywords
class TSTMultiHeadAttention(nn.Module):
    """Scaled dot-product attention with n_heads heads; Q, K, V: (bs, len, d_model) -> ((bs, q_len, d_model), attn).

    Written with fixed reshapes and no data-dependent branches so the QAT variant can mirror it step for step.
    """

    def __init__(self, d_model: int, n_heads: int, d_k: int, d_v: int):
        super().__init__()
        self.n_heads, self.d_k, self.d_v = n_heads, d_k, d_v
        self.W_Q = nn.Linear(d_model, d_k * n_heads, bias=False)
        self.W_K = nn.Linear(d_model, d_k * n_heads, bias=False)
        self.W_V = nn.Linear(d_model, d_v * n_heads, bias=False)
        self.W_O = nn.Linear(n_heads * d_v, d_model, bias=False)

    def forward(self, Q: torch.Tensor, K: torch.Tensor | None = None, V: torch.Tensor | None = None,
                mask: torch.Tensor | None = None):
        K = Q if K is None else K
        V = Q if V is None else V
        bs, q_len, kv_len = Q.shape[0], Q.shape[1], K.shape[1]
        q = self.W_Q(Q).reshape(bs, q_len, self.n_heads, self.d_k).transpose(1, 2)     # (bs, h, q_len, d_k)
        k = self.W_K(K).reshape(bs, kv_len, self.n_heads, self.d_k).permute(0, 2, 3, 1)  # (bs, h, d_k, kv_len)
        v = self.W_V(V).reshape(bs, kv_len, self.n_heads, self.d_v).transpose(1, 2)    # (bs, h, kv_len, d_v)
        context, attn = scaled_dot_product(q, k, v, self.d_k, mask)
        context = context.transpose(1, 2).reshape(bs, q_len, self.n_heads * self.d_v)
        return self.W_O(context), attn


def _channel_batchnorm(d_model: int) -> nn.Sequential:
    # BatchNorm1d normalizes axis 1, the sequence is (bs, len, d_model): transpose around it.
    return nn.Sequential(Transpose(1, 2), nn.BatchNorm1d(d_model), Transpose(1, 2))


def _activation_keyword(owner: str, activation, activation_name):
    """tsai's keyword is `activation` (None: 'gelu', tsai's default); `activation_name` is this project's older
    spelling, still accepted."""
    if activation_name is None:
        return "gelu" if activation is None else activation
    if activation is not None and activation != activation_name:
        raise TypeError(f"{owner}() got activation={activation!r} and activation_name={activation_name!r}; "
                        "pass one (activation_name is an alias of activation)")
    return activation_name


@strict_keywords
class TSTEncoderLayer(nn.Module):
    """tsai's `_TSTEncoderLayer`: self-attention and a feed-forward, each with a residual and BatchNorm1d."""

    def __init__(self, q_len: int, d_model: int, n_heads: int, d_k: int | None = None, d_v: int | None = None,
                 d_ff: int = 256, dropout: float = 0.1, activation=None, activation_name=None):
        activation = _activation_keyword(type(self).__name__, activation, activation_name)
        super().__init__()
        d_k = d_model // n_heads if d_k is None else d_k
        d_v = d_model // n_heads if d_v is None else d_v
        self.self_attn = TSTMultiHeadAttention(d_model, n_heads, d_k, d_v)
        self.dropout_attn = nn.Dropout(dropout)
        self.batchnorm_attn = _channel_batchnorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), make_activation(activation), nn.Dropout(dropout),
                                nn.Linear(d_ff, d_model))
        self.dropout_ffn = nn.Dropout(dropout)
        self.batchnorm_ffn = _channel_batchnorm(d_model)

    def forward(self, src: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        attended, _ = self.self_attn(src, src, src, mask=mask)
        src = self.batchnorm_attn(src + self.dropout_attn(attended))
        return self.batchnorm_ffn(src + self.dropout_ffn(self.ff(src)))


@strict_keywords
class TSTEncoder(nn.Module):
    """tsai's `_TSTEncoder`: n_layers TSTEncoderLayers. (tsai's default d_ff=None cannot build a layer; 256 here.)"""

    def __init__(self, q_len: int, d_model: int, n_heads: int, d_k=None, d_v=None, d_ff: int = 256,
                 dropout: float = 0.1, activation=None, n_layers: int = 1, activation_name=None):
        activation = _activation_keyword(type(self).__name__, activation, activation_name)
        super().__init__()
        self.layers = nn.ModuleList(
            TSTEncoderLayer(q_len, d_model, n_heads, d_k=d_k, d_v=d_v, d_ff=d_ff, dropout=dropout,
                            activation=activation)
            for _ in range(n_layers))

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            src = layer(src)
        return src


@strict_keywords
class RNNAttentionBackbone(nn.Module):
    """(bs, c_in, seq_len) -> (bs, hidden_size * (1 + bidirectional), seq_len), channels first.

    tsai's `_RNNAttentionPlus_Backbone`, with its positional order; `d` and the forward's `mask` are accepted and
    unused, as in tsai."""

    def __init__(self, cell: type[nn.RNNBase], c_in: int, seq_len: int, d=None, hidden_size: int = 128,
                 rnn_layers: int = 1, bias: bool = True, rnn_dropout: float = 0, bidirectional: bool = False,
                 encoder_layers: int = 3, n_heads: int = 16, d_k=None, d_v=None, d_ff: int = 256,
                 encoder_dropout: float = 0.1, act="gelu"):
        super().__init__()
        self.rnn = cell(c_in, hidden_size, num_layers=rnn_layers, bias=bias, batch_first=True,
                        dropout=rnn_dropout, bidirectional=bidirectional)
        d_model = hidden_size * (2 if bidirectional else 1)
        self.encoder = TSTEncoder(seq_len, d_model, n_heads, d_k=d_k, d_v=d_v, d_ff=d_ff, dropout=encoder_dropout,
                                  activation=act, n_layers=encoder_layers)
        self.out_channels = d_model

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        output, _ = self.rnn(x.transpose(1, 2))
        return self.encoder(output).transpose(1, 2)


@strict_keywords
class _RNNAttentionPlus(nn.Sequential):
    _cell: type[nn.RNNBase] = nn.RNN

    def __init__(self, c_in: int, c_out: int, seq_len: int, d=None, hidden_size: int = 128, rnn_layers: int = 1,
                 bias: bool = True, rnn_dropout: float = 0, bidirectional: bool = False, encoder_layers: int = 3,
                 n_heads: int = 16, d_k: int | None = None, d_v: int | None = None, d_ff: int = 256,
                 encoder_dropout: float = 0.1, act="gelu", fc_dropout: float = 0., y_range=None,
                 custom_head=None, use_bn: bool = True, flatten: bool = True):
        backbone = RNNAttentionBackbone(self._cell, c_in, seq_len, hidden_size=hidden_size, rnn_layers=rnn_layers,
                                        bias=bias, rnn_dropout=rnn_dropout, bidirectional=bidirectional,
                                        encoder_layers=encoder_layers, n_heads=n_heads, d_k=d_k, d_v=d_v,
                                        d_ff=d_ff, encoder_dropout=encoder_dropout, act=act)
        d_model = backbone.out_channels
        # As in tsai: use_bn / flatten only shape the head when d is given; y_range only when it is not.
        if isinstance(custom_head, nn.Module):
            head = custom_head
        elif custom_head is not None:
            head = custom_head(d_model, c_out, seq_len)
        elif d is not None:
            head = LinNdHead(d_model, c_out, seq_len=seq_len, d=d, use_bn=use_bn, fc_dropout=fc_dropout,
                             flatten=flatten)
        else:
            head = self.create_head(seq_len * d_model, c_out, act=act, fc_dropout=fc_dropout, y_range=y_range)
        super().__init__(OrderedDict([("backbone", backbone), ("head", head)]))
        self.head_nf = seq_len * d_model

    def create_head(self, nf: int, c_out: int, act="gelu", fc_dropout: float = 0., y_range=None, **kwargs):
        """tsai's default head (d=None): activation, flatten, dropout, Linear, optional sigmoid range."""
        return FlattenHead(nf, c_out, act=act, fc_dropout=fc_dropout, y_range=y_range)


class RNNAttentionPlus(_RNNAttentionPlus):
    _cell = nn.RNN


class LSTMAttentionPlus(_RNNAttentionPlus):
    _cell = nn.LSTM


class GRUAttentionPlus(_RNNAttentionPlus):
    _cell = nn.GRU


# tsai 1.0.1's names for these pieces (tsai/models/RNNAttentionPlus.py), so code written against them runs here.
_ScaledDotProductAttention = ScaledDotProductAttention
_MultiHeadAttention = TSTMultiHeadAttention
_TSTEncoderLayer = TSTEncoderLayer
_TSTEncoder = TSTEncoder
_RNNAttentionPlus_Backbone = RNNAttentionBackbone
_RNNAttentionPlus_Base = _RNNAttentionPlus
get_activation_fn = make_activation
