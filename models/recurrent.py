"""The "Recurrent models 101" baselines: plain RNN / GRU / LSTM encoders and a last-step classifier.

The encoders are torch's own layers with batch-first as the default (the rest of the zoo is batch-first), so they
return `(output, hidden)` exactly as torch does and the QAT converter unrolls them like any nn.RNN/GRU/LSTM:
- output: (batch, time, hidden_size * directions)
- hidden: (num_layers * directions, batch, hidden_size); LSTM: a (hidden, cell) pair of that shape.
"""
from __future__ import annotations

import torch
from torch import nn

from ._keywords import strict_keywords


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


ENCODERS = {"rnn": RNN, "gru": GRU, "lstm": LSTM}


@strict_keywords
class RecurrentClassifier(nn.Module):
    """(batch, time, input_size) -> (batch, num_classes): an encoder, then a Linear on the LAST time step's output.

    With bidirectional=True the last step's backward half has seen only that step (the classic tutorial
    behaviour); use the sequence models of the zoo when the whole window should inform the decision.
    """

    def __init__(self, input_size: int, hidden_size: int, num_classes: int, kind: str = "lstm",
                 num_layers: int = 1, bidirectional: bool = False, dropout: float = 0.0):
        super().__init__()
        if kind not in ENCODERS:
            raise ValueError(f"unknown recurrent kind {kind!r}: use one of {sorted(ENCODERS)}")
        self.encoder = ENCODERS[kind](input_size, hidden_size, num_layers=num_layers,
                                      bidirectional=bidirectional, dropout=dropout)
        self.fc = nn.Linear(hidden_size * (2 if bidirectional else 1), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output, _ = self.encoder(x)
        return self.fc(output[:, -1])
