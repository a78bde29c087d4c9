"""nn.LSTM / nn.GRU / nn.RNN unrolled over a static length: MatMul + elementwise ops with Q/DQ, no ONNX loop.

Per layer and direction: the input projection of all steps is ONE MatMul (input quantized once per layer and
shared by both directions), then each step does ONE recurrent MatMul for all gates. The recurrent weight is
fake-quantized once before the loop (one Q/DQ pair in the graph, shared by every step) and the hidden state goes
through one shared per-tensor quantizer per layer and direction. Gate arithmetic and the cell state stay float.
Without an initial state the first step skips its recurrent MatMul (h0 = 0), which keeps the graph lean.

The modules keep nn.LSTM's parameter names (weight_ih_l0, bias_hh_l1_reverse, ...) and its return contract:
`output, h_n` (GRU/RNN) or `output, (h_n, c_n)` (LSTM); `batch_first` decides which axis is time.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .quantizer import TensorQuantizer


class _UnrolledRecurrent(nn.Module):
    gates = 1  # gate blocks stacked in weight_ih/weight_hh

    def __init__(self, rnn: nn.RNNBase):
        super().__init__()
        if getattr(rnn, "proj_size", 0):
            raise ValueError("to_qat does not support nn.LSTM with proj_size > 0")
        for attr in ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
                     "bidirectional"):
            setattr(self, attr, getattr(rnn, attr))
        self.directions = 2 if rnn.bidirectional else 1
        rows = self.gates * self.hidden_size
        self.input_quantizers = nn.ModuleDict()
        self.weight_ih_quantizers, self.weight_hh_quantizers = nn.ModuleDict(), nn.ModuleDict()
        self.hidden_quantizers = nn.ModuleDict()
        for layer in range(self.num_layers):
            self.input_quantizers[f"l{layer}"] = TensorQuantizer()
            for suffix in self._suffixes(layer):
                for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    name = f"{kind}{suffix}"
                    if hasattr(rnn, name):
                        self.register_parameter(name, nn.Parameter(getattr(rnn, name).detach().clone()))
                    else:
                        self.register_parameter(name, None)
                key = suffix[1:]
                self.weight_ih_quantizers[key] = TensorQuantizer(channels=rows)
                self.weight_hh_quantizers[key] = TensorQuantizer(channels=rows)
                self.hidden_quantizers[key] = TensorQuantizer()
        self.to(rnn.weight_ih_l0.device)
        self.train(rnn.training)

    def _suffixes(self, layer: int) -> list[str]:
        return [f"_l{layer}", f"_l{layer}_reverse"][: self.directions]

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"batch_first={self.batch_first}, bidirectional={self.bidirectional}")

    # Subclasses: one step from the projected input `xp` (B, gates*H), recurrent term `rec` (or None when h = 0).
    def _step(self, xp, rec, state):
        raise NotImplementedError

    def _hidden(self, state):
        return state

    def _run_direction(self, projected: list, suffix: str, state, reverse: bool):
        key = suffix[1:]
        w_hh = self.weight_hh_quantizers[key](getattr(self, f"weight_hh{suffix}"))  # quantized once
        b_hh = getattr(self, f"bias_hh{suffix}")
        h_quantizer = self.hidden_quantizers[key]
        outputs = []
        for xp in (reversed(projected) if reverse else projected):
            if state is None:
                rec = None if b_hh is None else b_hh
            else:
                rec = F.linear(h_quantizer(self._hidden(state)), w_hh, b_hh)
            state = self._step(xp, rec, state)
            outputs.append(self._hidden(state))
        if reverse:
            outputs.reverse()
        # One Concat + Reshape instead of an Unsqueeze per step (lean graph).
        batch, hidden = int(outputs[0].shape[0]), int(outputs[0].shape[1])
        return torch.cat(outputs, dim=1).reshape(batch, len(outputs), hidden), state

    def forward(self, input: torch.Tensor, hx=None):
        if input.dim() != 3:
            raise ValueError("unrolled recurrent layers take batched 3-D input")
        x = input if self.batch_first else input.transpose(0, 1)      # (B, T, features)
        initial = self._split_initial(hx)
        finals = []
        for layer in range(self.num_layers):
            xq = self.input_quantizers[f"l{layer}"](x)
            outs = []
            for d, suffix in enumerate(self._suffixes(layer)):
                key = suffix[1:]
                w_ih = self.weight_ih_quantizers[key](getattr(self, f"weight_ih{suffix}"))
                projected = F.linear(xq, w_ih, getattr(self, f"bias_ih{suffix}"))
                # (B, T, G*H) -> T tensors (B, G*H): one Reshape + one Split, not a Squeeze per step.
                batch, steps, width = (int(n) for n in projected.shape)
                projected = projected.reshape(batch, steps * width).split(width, dim=1)
                state = None if initial is None else initial[layer * self.directions + d]
                out, state = self._run_direction(list(projected), suffix, state, reverse=d == 1)
                outs.append(out)
                finals.append(state)
            x = outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)
            if self.training and self.dropout > 0 and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)
        output = x if self.batch_first else x.transpose(0, 1)
        return output, self._pack_final(finals)

    def _split_initial(self, hx):
        if hx is None:
            return None
        return list(hx.unbind(0))

    def _pack_final(self, finals):
        return torch.stack(finals, dim=0)


class UnrolledRNN(_UnrolledRecurrent):
    gates = 1

    def __init__(self, rnn: nn.RNN):
        super().__init__(rnn)
        self.nonlinearity = rnn.nonlinearity

    def _step(self, xp, rec, state):
        pre = xp if rec is None else xp + rec
        return torch.tanh(pre) if self.nonlinearity == "tanh" else torch.relu(pre)


class UnrolledGRU(_UnrolledRecurrent):
    gates = 3

    def _step(self, xp, rec, state):
        x_r, x_z, x_n = xp.split(self.hidden_size, dim=-1)
        if rec is None:                       # h = 0 and no recurrent bias
            r, z = torch.sigmoid(x_r), torch.sigmoid(x_z)
            return (1 - z) * torch.tanh(x_n)
        h_r, h_z, h_n = rec.split(self.hidden_size, dim=-1)
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        return (1 - z) * n if state is None else (1 - z) * n + z * state


class UnrolledLSTM(_UnrolledRecurrent):
    gates = 4

    def _hidden(self, state):
        return state[0]

    def _step(self, xp, rec, state):
        gates = xp if rec is None else xp + rec
        i, f, g, o = gates.split(self.hidden_size, dim=-1)
        cell = torch.sigmoid(i) * torch.tanh(g)
        if state is not None:
            cell = torch.sigmoid(f) * state[1] + cell
        return torch.sigmoid(o) * torch.tanh(cell), cell

    def _split_initial(self, hx):
        if hx is None:
            return None
        h0, c0 = hx
        return list(zip(h0.unbind(0), c0.unbind(0)))

    def _pack_final(self, finals):
        return torch.stack([h for h, _ in finals]), torch.stack([c for _, c in finals])
