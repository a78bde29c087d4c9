"""SCRN (Structurally Constrained Recurrent Network, Mikolov et al. 2014) with torchrecurrent 0.2.5's interface.

Constructor, parameter names (`cells.{k}.alpha`, `weight_ih`, `weight_hh`, `weight_ch`, `bias_ih`, `bias_hh`,
`bias_ch`) and outputs `output, (h_n, s_n)` match torchrecurrent, so its checkpoints load with strict=True.
The step is what torchrecurrent's CODE computes, which is not what its docstring says. With H = hidden_size and
every weight of height 2H:

    [gx1 | gx2] = x W_ih^T + b_ih
    s'          = (1 - alpha) gx1 + alpha s                      slow context state
    [gc1 | gc2] = s' W_ch^T + b_ch
    z           = sigmoid(gx2 + h W_hh[:H]^T + b_hh[:H] + gc1)
    h'          = tanh(z W_hh[H:]^T + b_hh[H:] + gc2)            new hidden state = the step's output

A disabled bias stays in the state_dict as a zero buffer (as in torchrecurrent), so keys never depend on flags.
"""
from __future__ import annotations

import torch
from torch import nn

from ._keywords import check_keywords, keywords_of, strict_keywords

_INITS = {"zeros": nn.init.zeros_, "ones": nn.init.ones_, "normal": nn.init.normal_, "uniform": nn.init.uniform_,
          "xavier_uniform": nn.init.xavier_uniform_, "xavier_normal": nn.init.xavier_normal_,
          "kaiming_uniform": nn.init.kaiming_uniform_, "kaiming_normal": nn.init.kaiming_normal_,
          "orthogonal": nn.init.orthogonal_}


def _initializer(init):
    if callable(init):
        return init
    if init not in _INITS:
        raise ValueError(f"unknown initializer {init!r}: use one of {sorted(_INITS)} or a function")
    return _INITS[init]


@strict_keywords
class SCRNCell(nn.Module):
    """One SCRN step: (x (batch, input_size) or (input_size,), (h, s)) -> (h', s')."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, recurrent_bias: bool = True,
                 context_bias: bool = True, kernel_init=nn.init.xavier_uniform_,
                 recurrent_kernel_init=nn.init.xavier_uniform_, context_kernel_init=nn.init.normal_,
                 bias_init=nn.init.zeros_, recurrent_bias_init=nn.init.zeros_, context_bias_init=nn.init.zeros_,
                 alpha: float = 0.5, device=None, dtype=None):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.bias, self.recurrent_bias, self.context_bias = bias, recurrent_bias, context_bias
        factory = {"device": device, "dtype": dtype}
        self.alpha = nn.Parameter(torch.tensor(float(alpha), **factory))
        rows = 2 * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(rows, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(rows, hidden_size, **factory))
        self.weight_ch = nn.Parameter(torch.empty(rows, hidden_size, **factory))
        for name, enabled in (("bias_ih", bias), ("bias_hh", recurrent_bias), ("bias_ch", context_bias)):
            zeros = torch.zeros(rows, **factory)
            if enabled:
                self.register_parameter(name, nn.Parameter(zeros))
            else:
                self.register_buffer(name, zeros)
        self._inits = {"weight_ih": _initializer(kernel_init), "weight_hh": _initializer(recurrent_kernel_init),
                       "weight_ch": _initializer(context_kernel_init), "bias_ih": _initializer(bias_init),
                       "bias_hh": _initializer(recurrent_bias_init), "bias_ch": _initializer(context_bias_init)}
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            for name, init in self._inits.items():
                tensor = getattr(self, name)
                if isinstance(tensor, nn.Parameter):    # disabled biases stay zero
                    init(tensor)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, bias={self.bias}, recurrent_bias={self.recurrent_bias}, "
                f"context_bias={self.context_bias}")

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None):
        if x.dim() not in (1, 2):
            raise ValueError(f"SCRNCell expects a 1-D or 2-D input, got {x.dim()}-D")
        unbatched = x.dim() == 1
        if unbatched:
            x = x.unsqueeze(0)
        h, s = (None, None) if state is None else state
        zeros = x.new_zeros(x.shape[0], self.hidden_size)
        h = zeros if h is None else (h.unsqueeze(0) if unbatched and h.dim() == 1 else h)
        s = zeros if s is None else (s.unsqueeze(0) if unbatched and s.dim() == 1 else s)
        h_new, s_new = self.step(x @ self.weight_ih.t() + self.bias_ih, h, s)
        if unbatched:
            return h_new.squeeze(0), s_new.squeeze(0)
        return h_new, s_new

    def step(self, projected: torch.Tensor, h: torch.Tensor, s: torch.Tensor):
        """One step from the already projected input x W_ih^T + b_ih (lets a layer project all steps at once)."""
        hidden = self.hidden_size
        gx1, gx2 = projected.split(hidden, dim=-1)
        s_new = (1 - self.alpha) * gx1 + self.alpha * s
        gc1, gc2 = (s_new @ self.weight_ch.t() + self.bias_ch).split(hidden, dim=-1)
        z = torch.sigmoid(gx2 + h @ self.weight_hh[:hidden].t() + self.bias_hh[:hidden] + gc1)
        h_new = torch.tanh(z @ self.weight_hh[hidden:].t() + self.bias_hh[hidden:] + gc2)
        return h_new, s_new


class SCRN(nn.Module):
    """Stacked SCRN layers, torchrecurrent 0.2.5's SCRN layer.

    Input (L, N, input_size), (N, L, input_size) with batch_first, or unbatched (L, input_size) ->
    output in the same layout with hidden_size features, and (h_n, s_n) each (num_layers, N, hidden_size)
    ((num_layers, hidden_size) for unbatched input). Like torch's RNNs, `batch_first` does not apply to unbatched
    input, and an initial state must have the rank that goes with the input (2-D for unbatched, 3-D for batched).

    `dropout` acts on the outputs of every layer but the last (training only). Cell options (bias, recurrent_bias,
    context_bias, alpha, inits, device, dtype) go through **kwargs to every SCRNCell (`initialize_cells`).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                 batch_first: bool = False, **kwargs):
        # **kwargs are the cells' options: anything else is a misspelling (torchrecurrent would pass it to the
        # cell, which raises a bare TypeError)
        check_keywords(type(self).__name__, kwargs, (keywords_of(SCRN.__init__) | keywords_of(SCRNCell.__init__))
                       - {"input_size", "hidden_size"})
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.batch_first, self.dropout = batch_first, float(dropout)
        self.bias = bool(kwargs.get("bias", True))      # torchrecurrent's layer attribute (the cells' input bias)
        self.dropout_layer = nn.Dropout(self.dropout) if self.dropout > 0 else None
        self.initialize_cells(SCRNCell, **kwargs)

    def initialize_cells(self, cell_class, **kwargs) -> None:
        """Build `self.cells` (torchrecurrent's helper): `num_layers` cells of `cell_class`, the first taking
        input_size features, the others hidden_size; `kwargs` go to every cell."""
        self.cells = nn.ModuleList(
            cell_class(self.input_size if k == 0 else self.hidden_size, self.hidden_size, **kwargs)
            for k in range(self.num_layers))

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, dropout={self.dropout}, "
                f"batch_first={self.batch_first}")

    def _check(self, x: torch.Tensor, state) -> None:
        if x.dim() not in (2, 3):
            raise ValueError(f"SCRN expects a 2-D (unbatched (L, input_size)) or 3-D input, got {x.dim()}-D")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"SCRN: the input's last axis must be input_size={self.input_size}, got "
                             f"{x.shape[-1]} (shape {tuple(x.shape)})")
        if state is not None:
            ranks = tuple(t.dim() for t in state)
            if x.dim() == 2 and ranks != (2, 2):
                raise RuntimeError(f"For unbatched 2-D input, h_0 and s_0 should also be 2-D "
                                   f"(num_layers, hidden_size) but got {ranks[0]}-D and {ranks[1]}-D tensors")
            if x.dim() == 3 and ranks != (3, 3):
                raise RuntimeError(f"For batched 3-D input, h_0 and s_0 should also be 3-D "
                                   f"(num_layers, batch, hidden_size) but got {ranks[0]}-D and {ranks[1]}-D tensors")

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None):
        self._check(x, state)
        batched = x.dim() == 3
        if not batched:                                             # a batch of one, sequence first
            x = x.unsqueeze(1)
            if state is not None:
                state = (state[0].unsqueeze(1), state[1].unsqueeze(1))
        elif self.batch_first:
            x = x.transpose(0, 1)                                   # (L, N, features)
        steps, batch = x.shape[0], x.shape[1]
        if state is None:
            h0 = x.new_zeros(self.num_layers, batch, self.hidden_size)
            state = (h0, h0)
        h_n, s_n = [], []
        # Layer by layer (each layer's input projection for all steps in one matmul); the same arithmetic as
        # torchrecurrent's step-by-step loop over all layers, since layer k at step t needs only layer k-1 at t.
        for k, cell in enumerate(self.cells):
            projected = x @ cell.weight_ih.t() + cell.bias_ih      # (L, N, 2H)
            h, s = state[0][k], state[1][k]
            outputs = []
            for t in range(steps):
                h, s = cell.step(projected[t], h, s)
                outputs.append(h)
            x = torch.stack(outputs, dim=0)
            h_n.append(h)
            s_n.append(s)
            if self.dropout_layer is not None and k < self.num_layers - 1:
                x = self.dropout_layer(x)
        h_n, s_n = torch.stack(h_n, dim=0), torch.stack(s_n, dim=0)
        if not batched:
            return x.squeeze(1), (h_n.squeeze(1), s_n.squeeze(1))
        if self.batch_first:
            x = x.transpose(0, 1)
        return x, (h_n, s_n)
