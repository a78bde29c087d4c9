"""The "Recurrent models 101" baselines: plain RNN / GRU / LSTM encoders and a classifier on top of them (or of
SCRN), per window (last step) or per step.

The encoders are torch's own layers with batch-first as the default (the rest of the zoo is batch-first), so they
return `(output, hidden)` exactly as torch does and the QAT converter unrolls them like any nn.RNN/GRU/LSTM:
- output: (batch, time, hidden_size * directions)
- hidden: (num_layers * directions, batch, hidden_size); LSTM: a (hidden, cell) pair of that shape.
"""
from __future__ import annotations

import torch
from torch import nn

from ._keywords import strict_keywords
from .scrn import SCRN


@strict_keywords
class RNN(nn.RNN):
    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bidirectional: bool = False,
                 batch_first: bool = True, dropout: float = 0.0, bias: bool = True, nonlinearity: str = "tanh"):
        super().__init__(input_size, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                         batch_first=batch_first, dropout=dropout, bias=bias, nonlinearity=nonlinearity)


@strict_keywords
class GRU(nn.GRU):
    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bidirectional: bool = False,
                 batch_first: bool = True, dropout: float = 0.0, bias: bool = True):
        super().__init__(input_size, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                         batch_first=batch_first, dropout=dropout, bias=bias)


@strict_keywords
class LSTM(nn.LSTM):
    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bidirectional: bool = False,
                 batch_first: bool = True, dropout: float = 0.0, bias: bool = True):
        super().__init__(input_size, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                         batch_first=batch_first, dropout=dropout, bias=bias)


ENCODERS = {"rnn": RNN, "gru": GRU, "lstm": LSTM, "scrn": SCRN}


@strict_keywords
class RecurrentClassifier(nn.Module):
    """(batch, time, input_size) -> (batch, num_classes): an encoder, then a Linear on the LAST time step's output.

    With bidirectional=True the last step's backward half has seen only that step (the classic tutorial
    behaviour); use `per_step` or the sequence models of the zoo when the whole window should inform the decision.

    - per_step=True: the Linear on EVERY step's output -> (batch, time, num_classes): a per-step (per-patch) tagger,
      which is what the FOG presets and the daemon want; bidirectional, each step then sees the whole window.
    - channels_first=True: input (batch, input_size, time), the layout of the rest of the zoo (tsai's).
    - seq_len: the window length in steps. Only recorded (the recurrence runs on any length, as in tsai's RNNPlus);
      it lets the registry treat every preset alike (`create_model(name, seq_len=...)`).
    - kind="scrn": SCRN layers (torchrecurrent's; unidirectional only, so a per-step SCRN is causal).
    - encoder_kwargs: more keywords for the encoder (SCRN's cell options such as alpha or context_kernel_init;
      `bias`, or RNN's `nonlinearity`).
    """

    def __init__(self, input_size: int, hidden_size: int, num_classes: int, kind: str = "lstm",
                 num_layers: int = 1, bidirectional: bool = False, dropout: float = 0.0, per_step: bool = False,
                 channels_first: bool = False, seq_len: int | None = None, encoder_kwargs: dict | None = None):
        super().__init__()
        extra = dict(encoder_kwargs or {})
        if kind not in ENCODERS:
            raise ValueError(f"unknown recurrent kind {kind!r}: use one of {sorted(ENCODERS)}")
        if kind == "scrn":
            if bidirectional:
                raise ValueError("SCRN has no bidirectional form: use kind='scrn' with bidirectional=False")
            self.encoder = SCRN(input_size, hidden_size, num_layers=num_layers, dropout=dropout, batch_first=True,
                                **extra)
        else:
            self.encoder = ENCODERS[kind](input_size, hidden_size, num_layers=num_layers,
                                          bidirectional=bidirectional, dropout=dropout, **extra)
        self.fc = nn.Linear(hidden_size * (2 if bidirectional else 1), num_classes)
        self.kind, self.seq_len = kind, seq_len
        self.per_step, self.channels_first = bool(per_step), bool(channels_first)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_first:
            x = x.transpose(1, 2)
        output, _ = self.encoder(x)
        return self.fc(output if self.per_step else output[:, -1])
