"""Static quantized replacement for the zoo's TSTMultiHeadAttention (tsai TST style: W_Q, W_K, W_V, W_O without bias).

Keeps the parameter names (`W_Q.weight`, ...) and the call contract `(Q, K=None, V=None, mask=None) ->
(output, attn)`; masks are refused (fixed-length windows). Q·K^T and attn·V are QuantMatMuls, like
StaticSelfAttention; the projections become QuantLinear.
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import QuantLinear, QuantMatMul


class StaticTSTAttention(nn.Module):
    def __init__(self, attention: nn.Module):
        super().__init__()
        self.n_heads, self.d_k, self.d_v = attention.n_heads, attention.d_k, attention.d_v
        for name in ("W_Q", "W_K", "W_V", "W_O"):
            setattr(self, name, QuantLinear.from_float(getattr(attention, name)))
        self.qk_matmul, self.av_matmul = QuantMatMul(), QuantMatMul()
        self.train(attention.training)

    def forward(self, Q: torch.Tensor, K: torch.Tensor | None = None, V: torch.Tensor | None = None,
                mask=None, **masks):
        if mask is not None or any(value is not None for value in masks.values()):
            raise ValueError("the static QAT attention takes no masks (fixed-length windows only)")
        K = Q if K is None else K
        V = Q if V is None else V
        batch, q_len, kv_len = int(Q.shape[0]), int(Q.shape[1]), int(K.shape[1])   # constants in the export
        q = self.W_Q(Q).reshape(batch, q_len, self.n_heads, self.d_k).transpose(1, 2)
        k = self.W_K(K).reshape(batch, kv_len, self.n_heads, self.d_k).permute(0, 2, 3, 1)
        v = self.W_V(V).reshape(batch, kv_len, self.n_heads, self.d_v).transpose(1, 2)
        attn = torch.softmax(self.qk_matmul(q, k) / (self.d_k ** 0.5), dim=-1)
        context = self.av_matmul(attn, v).transpose(1, 2).reshape(batch, q_len, self.n_heads * self.d_v)
        return self.W_O(context), attn
