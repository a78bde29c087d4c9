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
    """Stacked SCRN layers: input (L, N, input_size) or (N, L, input_size) with batch_first ->
    output (same layout, hidden_size), (h_n, s_n) each (num_layers, N, hidden_size).

    `dropout` acts on the outputs of every layer but the last (training only). Cell options (bias, alpha, inits)
    go through **kwargs to every SCRNCell.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                 batch_first: bool = False, **kwargs):
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.batch_first, self.dropout = batch_first, float(dropout)
        self.dropout_layer = nn.Dropout(self.dropout) if self.dropout > 0 else None
        self.cells = nn.ModuleList(
            SCRNCell(input_size if k == 0 else hidden_size, hidden_size, **kwargs) for k in range(num_layers))

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, dropout={self.dropout}, "
                f"batch_first={self.batch_first}")

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None):
        if self.batch_first:
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
        if self.batch_first:
            x = x.transpose(0, 1)
        return x, (torch.stack(h_n, dim=0), torch.stack(s_n, dim=0))
