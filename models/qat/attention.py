"""Static, quantized self-attention: explicit MatMul -> Softmax -> MatMul over batched heads.

Replaces nn.MultiheadAttention inside nn.TransformerEncoderLayer (and the zoo's TSTMultiHeadAttention) so the ONNX
graph has no fused attention, no scaled_dot_product_attention (absent below opset 14) and no masks. Every GEMM has
quantizers on both inputs; LayerNorm, Softmax and activations stay float (TensorRT fuses them).
Parameter names follow the float modules, so their state_dicts load unchanged.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F

from .layers import QuantLinear, QuantMatMul
from .quantizer import TensorQuantizer


def _heads_attention(q, k, v, n_heads: int, qk: QuantMatMul, av: QuantMatMul, dropout: nn.Module | None,
                     scale: float) -> torch.Tensor:
    """(B, T, n_heads*d) q/k/v -> (B, T, n_heads*d_v) context; the heads ride along a batch axis of the MatMuls."""
    # Python ints, so the traced graph gets constant shapes (static export) instead of Shape/Gather chains.
    batch, length, width, width_v = (int(n) for n in (*q.shape[:2], q.shape[2] // n_heads, v.shape[2] // n_heads))
    q = q.reshape(batch, length, n_heads, width).transpose(1, 2)         # (B, h, T, d)
    k = k.reshape(batch, length, n_heads, width).permute(0, 2, 3, 1)     # (B, h, d, T)
    v = v.reshape(batch, length, n_heads, width_v).transpose(1, 2)       # (B, h, T, d_v)
    attn = torch.softmax(qk(q, k) * scale, dim=-1)
    if dropout is not None:
        attn = dropout(attn)
    context = av(attn, v)                                                # (B, h, T, d_v)
    return context.transpose(1, 2).reshape(batch, length, n_heads * width_v)


class StaticSelfAttention(nn.Module):
    """Self-attention with nn.MultiheadAttention's parameters (`in_proj_weight`, `in_proj_bias`, `out_proj`)."""

    def __init__(self, mha: nn.MultiheadAttention):
        super().__init__()
        if not mha._qkv_same_embed_dim or mha.bias_k is not None or mha.add_zero_attn:
            raise ValueError("to_qat supports nn.MultiheadAttention with kdim == vdim == embed_dim, "
                             "no bias_k/bias_v and no add_zero_attn")
        self.embed_dim, self.num_heads, self.batch_first = mha.embed_dim, mha.num_heads, mha.batch_first
        self.in_proj_weight = nn.Parameter(mha.in_proj_weight.detach().clone())
        self.in_proj_bias = (None if mha.in_proj_bias is None
                             else nn.Parameter(mha.in_proj_bias.detach().clone()))
        self.in_proj_input_quantizer = TensorQuantizer()
        self.in_proj_weight_quantizer = TensorQuantizer(channels=3 * self.embed_dim)
        self.out_proj = QuantLinear.from_float(mha.out_proj)
        self.qk_matmul, self.av_matmul = QuantMatMul(), QuantMatMul()
        self.attn_dropout = nn.Dropout(mha.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.batch_first:
            x = x.transpose(0, 1)
        qkv = F.linear(self.in_proj_input_quantizer(x), self.in_proj_weight_quantizer(self.in_proj_weight),
                       self.in_proj_bias)
        q, k, v = qkv.split(self.embed_dim, dim=-1)
        scale = 1.0 / math.sqrt(self.embed_dim // self.num_heads)
        out = self.out_proj(_heads_attention(q, k, v, self.num_heads, self.qk_matmul, self.av_matmul,
                                             self.attn_dropout, scale))
        return out if self.batch_first else out.transpose(0, 1)


class StaticEncoderLayer(nn.Module):
    """nn.TransformerEncoderLayer without the fast path, masks or nn.MultiheadAttention; same state_dict keys."""

    def __init__(self, layer: nn.TransformerEncoderLayer):
        super().__init__()
        self.self_attn = StaticSelfAttention(layer.self_attn)
        self.linear1 = QuantLinear.from_float(layer.linear1)
        self.linear2 = QuantLinear.from_float(layer.linear2)
        for name in ("dropout", "dropout1", "dropout2", "norm1", "norm2"):
            setattr(self, name, copy.deepcopy(getattr(layer, name)))
        self.activation = layer.activation
        self.norm_first = layer.norm_first
        self.train(layer.training)

    def forward(self, src: torch.Tensor, src_mask=None, src_key_padding_mask=None, is_causal: bool = False):
        if src_mask is not None or src_key_padding_mask is not None:
            raise ValueError("the static QAT encoder layer takes no attention masks (fixed-length windows only)")
        x = src
        if self.norm_first:
            x = x + self.dropout1(self.self_attn(self.norm1(x)))
            return x + self._ff_block(self.norm2(x))
        x = self.norm1(x + self.dropout1(self.self_attn(x)))
        return self.norm2(x + self._ff_block(x))

    def _ff_block(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))


class StaticEncoder(nn.Module):
    """nn.TransformerEncoder as a plain loop over static layers (its forward's fast-path checks need MHA)."""

    def __init__(self, encoder: nn.TransformerEncoder, layers: nn.ModuleList):
        super().__init__()
        self.layers = layers
        self.norm = copy.deepcopy(encoder.norm)

    def forward(self, src: torch.Tensor, mask=None, src_key_padding_mask=None, is_causal=None):
        for layer in self.layers:
            src = layer(src, mask, src_key_padding_mask)
        return src if self.norm is None else self.norm(src)
