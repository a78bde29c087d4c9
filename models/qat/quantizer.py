"""TensorQuantizer: symmetric INT8 fake quantization that exports as ONNX QuantizeLinear/DequantizeLinear.

One quantizer per GEMM input. Activations are quantized per tensor (scalar `amax`), weights per output channel
(`amax` 1-D over axis 0 of an (out, in) weight), as TensorRT requires. `scale = amax / 127`, zero point 0.

Modes (`quantizer.mode`):
- "disabled":    identity; the QAT model then equals the float model.
- "calibrating": identity, but records the running absolute maximum and calls `collector(x)` if one is set, so a
                 calibration package can gather histograms without knowing where the quantizers sit.
- "quantizing":  fake quantization. In eval (and so during export) `torch.fake_quantize_per_*_affine` with
                 quant range [-128, 127]: the TorchScript exporter turns it into Q/DQ with an explicit INT8 zero
                 point, which TensorRT 8.5/8.6 need. In training it is the same rounding with a straight-through
                 estimator; with `learn_amax=True` amax is a Parameter and gets a gradient (LSQ-style).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

MODES = ("disabled", "calibrating", "quantizing")
QMIN, QMAX = -128, 127


class TensorQuantizer(nn.Module):
    """Fake-quantizes one tensor. `channels=None`: per tensor; `channels=n`: per channel on axis 0."""

    def __init__(self, channels: int | None = None, learn_amax: bool = False):
        super().__init__()
        self.channels = channels
        self.axis = None if channels is None else 0
        shape = () if channels is None else (channels,)
        self.register_buffer("amax", torch.zeros(shape))
        self.register_buffer("calib_amax", torch.zeros(shape))
        self.learn_amax = learn_amax
        self.mode = "disabled"
        # Called with each detached input while calibrating (e.g. a histogram collector).
        self.collector: Callable[[torch.Tensor], None] | None = None

    def extra_repr(self) -> str:
        kind = "per-tensor" if self.axis is None else f"per-channel(axis=0, n={self.channels})"
        return f"{kind}, mode={self.mode}"

    @property
    def scale(self) -> torch.Tensor:
        return self.amax / QMAX

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown quantizer mode {mode!r}; use one of {MODES}")
        self.mode = mode

    def load_calibration(self, amax: torch.Tensor | float | None = None) -> None:
        """Fix `amax` from the collected running max (or from an explicit value), keeping it positive."""
        value = self.calib_amax if amax is None else torch.as_tensor(amax, dtype=torch.float32)
        value = value.detach().reshape(self.amax.shape).clamp_min(1e-8)
        if isinstance(self.amax, nn.Parameter):
            self.amax.data.copy_(value)
        elif self.learn_amax:
            del self._buffers["amax"]
            self.amax = nn.Parameter(value.clone())
        else:
            self.amax.copy_(value)

    def _observe(self, x: torch.Tensor) -> None:
        x = x.detach()
        if self.axis is None:
            current = x.abs().amax()
        else:
            current = x.abs().reshape(x.shape[0], -1).amax(dim=1)
        torch.maximum(self.calib_amax, current.to(self.calib_amax), out=self.calib_amax)
        if self.collector is not None:
            self.collector(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "disabled":
            return x
        if self.mode == "calibrating":
            self._observe(x)
            return x
        if self.training and isinstance(self.amax, nn.Parameter):
            return self._learnable_fake_quant(x)
        scale = self.scale.detach() if not self.training else self.scale
        if self.axis is None:
            zero = torch.zeros((), dtype=torch.int32, device=x.device)
            return torch.fake_quantize_per_tensor_affine(x, scale, zero, QMIN, QMAX)
        zero = torch.zeros(self.channels, dtype=torch.int32, device=x.device)
        return torch.fake_quantize_per_channel_affine(x, scale, zero, 0, QMIN, QMAX)

    def _learnable_fake_quant(self, x: torch.Tensor) -> torch.Tensor:
        # Rounding with a straight-through estimator; the clamp passes gradient to amax for clipped values.
        scale = self.scale if self.axis is None else self.scale.reshape(-1, *([1] * (x.dim() - 1)))
        scaled = x / scale
        rounded = scaled + (torch.round(scaled) - scaled).detach()
        return torch.clamp(rounded, QMIN, QMAX) * scale
