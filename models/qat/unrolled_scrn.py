"""SCRN (structurally constrained recurrent network, torchrecurrent 0.2.5 semantics) unrolled with Q/DQ.

Step, with H = hidden_size and every weight (2H, .):
    [gx1|gx2] = x W_ih^T + b_ih                 (all steps: ONE MatMul)
    s' = (1 - alpha) gx1 + alpha s              (context state, float)
    [gc1|gc2] = s' W_ch^T + b_ch                (GEMM 1)
    z  = sigmoid(gx2 + h W_hh[:H]^T + b_hh[:H] + gc1)   (GEMM 2, skipped while h = 0)
    h' = tanh(z W_hh[H:]^T + b_hh[H:] + gc2)    (GEMM 3)
The chain s' -> z -> h' needs three GEMMs per step (they depend on each other, so they cannot be one MatMul).
Each GEMM input has one shared quantizer per layer (s', h, z); weights are quantized once per layer.
Parameter names match the float SCRN (`cells.{k}.alpha`, `.weight_ih`, ...). Returns `output, (h_n, s_n)`.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .quantizer import TensorQuantizer

_PARAMS = ("alpha", "weight_ih", "weight_hh", "weight_ch", "bias_ih", "bias_hh", "bias_ch")


class _QuantSCRNCell(nn.Module):
    """The float cell's parameters plus the quantizers of its three GEMMs and its input projection."""

    def __init__(self, cell: nn.Module, hidden_size: int):
        super().__init__()
        for name in _PARAMS:
            value = getattr(cell, name, None)
            if isinstance(value, nn.Parameter):
                self.register_parameter(name, nn.Parameter(value.detach().clone(), value.requires_grad))
            elif isinstance(value, torch.Tensor):
                self.register_buffer(name, value.detach().clone())
            else:
                setattr(self, name, value)
        rows = 2 * hidden_size
        self.input_quantizer = TensorQuantizer()
        self.weight_ih_quantizer = TensorQuantizer(channels=rows)
        self.weight_hh_quantizer = TensorQuantizer(channels=rows)
        self.weight_ch_quantizer = TensorQuantizer(channels=rows)
        self.context_quantizer = TensorQuantizer()
        self.hidden_quantizer = TensorQuantizer()
        self.gate_quantizer = TensorQuantizer()


def _halves(bias, hidden: int):
    return (None, None) if bias is None else (bias[:hidden], bias[hidden:])


class UnrolledSCRN(nn.Module):
    def __init__(self, scrn: nn.Module):
        super().__init__()
        self.hidden_size = scrn.hidden_size
        self.num_layers = len(scrn.cells)
        self.batch_first = getattr(scrn, "batch_first", False)
        self.dropout = float(getattr(scrn, "dropout", 0.0) or 0.0)
        if getattr(scrn, "bidirectional", False):
            raise ValueError("to_qat does not support bidirectional SCRN")
        self.cells = nn.ModuleList(_QuantSCRNCell(cell, self.hidden_size) for cell in scrn.cells)
        self.train(scrn.training)

    def _layer(self, cell: _QuantSCRNCell, x: torch.Tensor, h, s):
        hidden = self.hidden_size
        projected = F.linear(cell.input_quantizer(x), cell.weight_ih_quantizer(cell.weight_ih), cell.bias_ih)
        batch, steps, width = (int(n) for n in projected.shape)
        per_step = projected.reshape(batch, steps * width).split(width, dim=1)
        w_hh = cell.weight_hh_quantizer(cell.weight_hh)          # quantized once per layer
        w_ch = cell.weight_ch_quantizer(cell.weight_ch)
        w_hz, w_zh = w_hh[:hidden], w_hh[hidden:]
        b_hz, b_zh = _halves(cell.bias_hh, hidden)
        alpha = cell.alpha
        outputs = []
        for xp in per_step:
            gx1, gx2 = xp.split(hidden, dim=1)
            s = (1 - alpha) * gx1 if s is None else (1 - alpha) * gx1 + alpha * s
            gc1, gc2 = F.linear(cell.context_quantizer(s), w_ch, cell.bias_ch).split(hidden, dim=1)
            pre_z = gx2 + gc1
            if h is not None:
                pre_z = pre_z + F.linear(cell.hidden_quantizer(h), w_hz, b_hz)
            elif b_hz is not None:
                pre_z = pre_z + b_hz
            z = torch.sigmoid(pre_z)
            h = torch.tanh(F.linear(cell.gate_quantizer(z), w_zh, b_zh) + gc2)
            outputs.append(h)
        return torch.cat(outputs, dim=1).reshape(batch, steps, hidden), h, s

    def forward(self, input: torch.Tensor, hx=None):
        batched = input.dim() == 3          # unbatched (L, features) and 2-D states, as the float SCRN takes them
        if not batched:
            input = input.unsqueeze(1)
            hx = None if hx is None else tuple(t.unsqueeze(1) for t in hx)
            x = input.transpose(0, 1)
        else:
            x = input if self.batch_first else input.transpose(0, 1)   # (B, T, features)
        h0 = s0 = None
        if hx is not None:
            h0, s0 = (t.unbind(0) for t in hx)
        finals_h, finals_s = [], []
        for index, cell in enumerate(self.cells):
            h = None if h0 is None else h0[index]
            s = None if s0 is None else s0[index]
            x, h, s = self._layer(cell, x, h, s)
            finals_h.append(h)
            finals_s.append(s)
            if self.training and self.dropout > 0 and index < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)
        h_n, s_n = torch.stack(finals_h), torch.stack(finals_s)
        if not batched:
            return x.squeeze(0), (h_n.squeeze(1), s_n.squeeze(1))
        output = x if self.batch_first else x.transpose(0, 1)
        return output, (h_n, s_n)
