"""Quantized GEMM building blocks: QuantLinear (weights per channel) and QuantMatMul (two activations).

TensorRT quantizes a MatMul/Gemm when both of its inputs come through Q/DQ, so each GEMM owns one quantizer per
input and nothing sits on its output.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .quantizer import TensorQuantizer


class QuantLinear(nn.Linear):
    """nn.Linear with an input quantizer (per tensor) and a weight quantizer (per output channel).

    Same parameter names as nn.Linear (`weight`, `bias`), so a float state_dict loads into it.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__(in_features, out_features, bias=bias)
        self.input_quantizer = TensorQuantizer()
        self.weight_quantizer = TensorQuantizer(channels=out_features)

    @classmethod
    def from_float(cls, linear: nn.Linear) -> "QuantLinear":
        q = cls(linear.in_features, linear.out_features, bias=linear.bias is not None)
        q.to(linear.weight.device, linear.weight.dtype)
        q.load_state_dict(linear.state_dict(), strict=False)
        q.train(linear.training)
        return q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.input_quantizer(x), self.weight_quantizer(self.weight), self.bias)


class QuantMatMul(nn.Module):
    """`a @ b` for two activations (attention's Q·K^T and attn·V), each quantized per tensor."""

    def __init__(self):
        super().__init__()
        self.a_quantizer = TensorQuantizer()
        self.b_quantizer = TensorQuantizer()

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(self.a_quantizer(a), self.b_quantizer(b))
