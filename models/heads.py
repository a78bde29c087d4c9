"""Output heads shared by the zoo, laid out like tsai 1.0.1's so tsai checkpoints load with strict=True.

tsai builds its heads as `nn.Sequential`s that include parameter-free layers (squeeze, reshape, ...). The position
of every layer shows up in the state_dict keys (`head.2.weight`), so these heads keep the same layers in the same
order; only the implementation is ours.
"""
from __future__ import annotations

import torch
from torch import nn

from ._keywords import strict_keywords


@strict_keywords
class Squeeze(nn.Module):
    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.squeeze(self.dim)


@strict_keywords
class Transpose(nn.Module):
    def __init__(self, dim0: int, dim1: int):
        super().__init__()
        self.dims = (dim0, dim1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(*self.dims)


@strict_keywords
class Reshape(nn.Module):
    """Keep the batch axis, reshape the rest to `shape` (no shape: flatten the rest)."""

    def __init__(self, *shape: int):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *(self.shape or (-1,)))


@strict_keywords
class Flatten(Reshape):
    def __init__(self):
        super().__init__()


@strict_keywords
class SigmoidRange(nn.Module):
    """Squash to (low, high) with a sigmoid, for regression targets with a known range."""

    def __init__(self, low: float, high: float):
        super().__init__()
        self.low, self.high = low, high

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x) * (self.high - self.low) + self.low


def activation(act) -> nn.Module:
    """'relu', 'gelu', or an nn.Module class (tsai's `get_activation_fn`)."""
    if act == "relu":
        return nn.ReLU()
    if act == "gelu":
        return nn.GELU()
    if isinstance(act, type) and issubclass(act, nn.Module):
        return act()
    raise ValueError(f"unknown activation {act!r}: use 'relu', 'gelu' or an nn.Module class")


def output_dims(n_out: int, d) -> list[int]:
    """A head's output shape after the batch axis for an output spec d (int or tuple; tsai's convention)."""
    return _output_shape(n_out, d)[1]


def _output_shape(n_out: int, d) -> tuple[int, list[int]]:
    """(number of output positions, shape after the batch axis) for an output spec d (None, int or tuple)."""
    if d is None:
        return 1, [n_out]
    if isinstance(d, (tuple, list)):
        positions = 1
        for size in d:
            positions *= int(size)
        return positions, [int(s) for s in d] + ([n_out] if n_out > 1 else [])
    return int(d), [int(d), n_out] if n_out > 1 else [int(d)]


@strict_keywords
class LinNdHead(nn.Sequential):
    """Linear head on a channels-first backbone output (bs, n_in, seq_len) -> (bs, *d, n_out).

    d=None: average over time + Linear (squeezed to (bs,) when n_out == 1), or flatten + Linear if `flatten`.
    d == seq_len (and not flatten): one shared Linear per time step -> (bs, seq_len, n_out).
    Any other d or a tuple d: flatten channels x time, one Linear to all outputs, reshape.
    """

    def __init__(self, n_in: int, n_out: int, seq_len: int | None = None, d=None, flatten: bool = False,
                 use_bn: bool = False, fc_dropout: float = 0.0):
        seq_len = 1 if seq_len is None else seq_len
        positions, shape = _output_shape(n_out, d)
        layers: list[nn.Module] = []
        if use_bn:
            layers.append(nn.BatchNorm1d(n_in))
        if fc_dropout:
            layers.append(nn.Dropout(fc_dropout))
        if d is None:
            if not flatten or seq_len == 1:
                layers += [nn.AdaptiveAvgPool1d(1), Squeeze(-1), nn.Linear(n_in, n_out)]
                if n_out == 1:
                    layers.append(Squeeze(-1))
            else:
                layers += [Reshape(), nn.Linear(n_in * seq_len, n_out)]
                if n_out == 1:
                    layers.append(Squeeze(-1))
        else:
            if seq_len == 1:
                layers.append(nn.AdaptiveAvgPool1d(1))
            if not flatten and positions == seq_len:
                layers += [Transpose(1, 2), nn.Linear(n_in, n_out)]
            else:
                layers += [Reshape(), nn.Linear(n_in * seq_len, n_out * positions)]
            layers.append(Reshape(*shape))
        super().__init__(*layers)


@strict_keywords
class FlattenHead(nn.Sequential):
    """RNNAttentionPlus's default head: activation, flatten (channels x time), dropout, Linear, optional range."""

    def __init__(self, n_in: int, n_out: int, act="gelu", fc_dropout: float = 0.0, y_range=None):
        layers = [activation(act), Flatten()]
        if fc_dropout:
            layers.append(nn.Dropout(fc_dropout))
        layers.append(nn.Linear(n_in, n_out))
        if y_range:
            layers.append(SigmoidRange(*y_range))
        super().__init__(*layers)


# tsai's name (tsai.models.layers.lin_nd_head), used by its TransformerRNNPlus and RNNAttentionPlus files.
lin_nd_head = LinNdHead
