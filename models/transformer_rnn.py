"""TransformerRNNPlus / TransformerLSTMPlus / TransformerGRUPlus: patch projection, Transformer encoder, (Bi)RNN, head.

The shape of the Kaggle FOG 1st-place model, with tsai 1.0.1's constructor and state_dict keys.

Two forward semantics, one set of weights:
- default: attention and recurrence run over TIME (the intended architecture).
- `tsai_compat=True`: tsai 1.0.1's forward. tsai hands its batch_first=True encoder layers `x.transpose(0, 1)` and
  its batch_first=False RNNs a batch-first tensor, so attention and recurrence run across the BATCH axis; at batch
  size 1 the backbone is position-wise (each time step on its own). Use it to reproduce a tsai-trained checkpoint.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ._keywords import check_keywords, keywords_of, strict_keywords
from .heads import LinNdHead
from .spectral import FreezeIndexLogit, SpectralBands, WindowZScore


@strict_keywords
class TransformerRNNEncoder(nn.Module):
    """(bs, c_in, seq_len) -> (bs, d_model * (1 + bidirectional) ** num_rnn_layers, seq_len), channels first.

    tsai's `_TransformerRNNEncoder` (same positional order); its forward is tsai's only with tsai_compat=True."""

    def __init__(self, cell: type[nn.RNNBase], c_in: int, seq_len: int, d_model: int, nhead: int,
                 proj_dropout: float = 0.1, num_encoder_layers: int = 1, dim_feedforward: int = 2048,
                 dropout: float = 0.1, num_rnn_layers: int = 1, bidirectional: bool = True,
                 tsai_compat: bool = False, spectral: dict | None = None):
        super().__init__()
        if d_model % nhead:
            raise ValueError(f"d_model ({d_model}) must be divisible by nhead ({nhead})")
        self.tsai_compat = bool(tsai_compat)
        self.seq_len = seq_len
        self.num_encoder_layers, self.num_rnn_layers = num_encoder_layers, num_rnn_layers
        self.proj_linear = nn.Linear(c_in, d_model)
        # optional fixed band powers per patch (models.spectral), added to the patch embedding by a learnt Linear
        self.spectral = None if not spectral else SpectralBands(patch=c_in // 3, **spectral)
        self.spec_linear = None if not spectral else nn.Linear(self.spectral.n_features, d_model)
        self.proj_dropout = nn.Dropout(proj_dropout)
        self.enc_layers = nn.ModuleList(
            nn.TransformerEncoderLayer(d_model=d_model, nhead=nhead, dim_feedforward=dim_feedforward or d_model,
                                       dropout=dropout, batch_first=True)
            for _ in range(num_encoder_layers))
        # Each RNN keeps its input width as hidden size, so a bidirectional layer doubles the width.
        # In compat mode the RNNs are sequence-first (as in tsai) and are fed batch-first tensors.
        widen = 2 if bidirectional else 1
        self.rnn_layers = nn.ModuleList(
            cell(d_model * widen ** i, d_model * widen ** i, bidirectional=bidirectional,
                 batch_first=not self.tsai_compat)
            for i in range(num_rnn_layers))
        self.pos_encoding = nn.Parameter(torch.randn(1, seq_len, d_model) * 0.02)
        self.out_channels = d_model * widen ** num_rnn_layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bands = None if self.spectral is None else self.spec_linear(self.spectral(x))
        x = self.proj_linear(x.transpose(1, 2)) + self.pos_encoding     # (bs, seq_len, d_model)
        if bands is not None:
            x = x + bands
        x = self.proj_dropout(x)
        for layer in self.enc_layers:
            if self.tsai_compat:        # attention across the batch axis, as tsai 1.0.1 computes it
                x = layer(x.transpose(0, 1)).transpose(0, 1)
            else:
                x = layer(x)
        for rnn in self.rnn_layers:
            x, _ = rnn(x)
        return x.transpose(1, 2)


class _TransformerRNNPlus(nn.Sequential):
    _cell: type[nn.RNNBase] = nn.RNN

    def __init__(self, c_in: int, c_out: int, seq_len: int, d=None, d_model: int = 128, nhead: int = 16,
                 proj_dropout: float = 0.1, num_encoder_layers: int = 1, dim_feedforward: int = 2048,
                 dropout: float = 0.1, num_rnn_layers: int = 1, bidirectional: bool = True, custom_head=None,
                 tsai_compat: bool = False, spectral: dict | None = None, fi_blend: float = 0.0,
                 fi_kwargs: dict | None = None, input_zscore: bool = False, **kwargs):
        # As in tsai, **kwargs go to a custom_head factory; without one they can only be misspellings (tsai ignores
        # them: num_rnn_layer=5 would build one RNN layer), so they are refused here.
        if kwargs and (custom_head is None or isinstance(custom_head, nn.Module)):
            check_keywords(type(self).__name__, kwargs, keywords_of(_TransformerRNNPlus.__init__))
        backbone = TransformerRNNEncoder(self._cell, c_in=c_in, seq_len=seq_len, d_model=d_model, nhead=nhead,
                                         proj_dropout=proj_dropout, num_encoder_layers=num_encoder_layers,
                                         dim_feedforward=dim_feedforward, dropout=dropout,
                                         num_rnn_layers=num_rnn_layers, bidirectional=bidirectional,
                                         tsai_compat=tsai_compat, spectral=spectral)
        head_nf = backbone.out_channels
        if isinstance(custom_head, nn.Module):
            head = custom_head
        elif custom_head is not None:
            head = custom_head(head_nf, c_out, seq_len, d=d, **kwargs)
        else:
            head = LinNdHead(head_nf, c_out, seq_len=seq_len, d=d)
        super().__init__(OrderedDict([("backbone", backbone), ("head", head)]))
        self.head_nf = head_nf
        self.tsai_compat = bool(tsai_compat)
        # optional fixed freeze-index logit (models.spectral) added, times fi_blend, to every class logit: a
        # combination of the learnt model with the freeze index inside the graph (no parameters)
        self.fi_blend = float(fi_blend)
        self.freeze_index = FreezeIndexLogit(patch=c_in // 3, **(fi_kwargs or {"rate_hz": 64.0})) if fi_blend \
            else None
        # optional z-score of each window inside the graph, for the learnt part only: with it the spec may keep
        # the amplitude (min_std) that the freeze-index logit's power term needs
        self.input_zscore = WindowZScore() if input_zscore else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.backbone(x if self.input_zscore is None else self.input_zscore(x)))
        if self.freeze_index is not None:
            logits = logits + self.fi_blend * self.freeze_index(x)
        return logits


class TransformerRNNPlus(_TransformerRNNPlus):
    _cell = nn.RNN


class TransformerLSTMPlus(_TransformerRNNPlus):
    _cell = nn.LSTM


class TransformerGRUPlus(_TransformerRNNPlus):
    _cell = nn.GRU


# tsai 1.0.1's name (tsai/models/TransformerRNNPlus.py); `_TransformerRNNPlus` is already tsai's.
_TransformerRNNEncoder = TransformerRNNEncoder
