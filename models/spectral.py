"""SpectralBands: fixed (non-trainable) band powers per patch, the freeze index's ingredients inside the model.

Freezing of gait shows as power moving from the locomotor band (0.5-3 Hz) into the freeze band (3-8 Hz) (Moore
2008; reference/fog-domain.md). A learnt patch embedding of 125 ms patches has to discover that from scratch and,
on three real subjects, does not; these features hand it over. For every patch of a per-patch input
(B, patch * 3, n_patches), channels [v0, ml0, ap0, v1, ...] as `deploy.preprocess.patchify` writes them:

- a Hann-windowed DFT of about `window_s` seconds centred on the patch is taken by ONE Conv1d over the patch
  channels with fixed cos/sin kernels (the bins inside the bands only; no reshapes, static shapes);
- squared, the bins are summed into band powers by a fixed 1x1 Conv1d: per axis and summed over the axes, for the
  locomotor and the freeze band;
- ln(power + eps), shifted and scaled to about [-2, 2]. The ratio of the bands (the freeze index) is the
  difference of two features, which the next (learnt) Linear computes; it is scale-free, so it survives the
  window z-score.

Exports as Conv/Mul/Conv/Add/Log/Transpose (no MatMul, so the INT8 Q/DQ rules leave it float; the
learnt Linear after it is quantized as any other). The kernels are buffers that are not saved (persistent=False):
they follow from the constructor's arguments alone, so a state_dict holds only learnt weights.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

LOCO_BAND = (0.5, 3.0)
FREEZE_BAND = (3.0, 8.0)


def _band_kernels(rate_hz: float, length: int, bands) -> tuple[np.ndarray, np.ndarray]:
    """(cos/sin kernels (2K, L), band membership (n_bands, 2K)) for the DFT bins falling inside `bands`."""
    freqs = np.fft.rfftfreq(length, 1.0 / rate_hz)
    bins = [k for k, f in enumerate(freqs) if any(lo <= f < hi for lo, hi in bands)]
    hann = np.hanning(length)
    norm = 1.0 / math.sqrt(length * np.sum(hann ** 2))       # power ~ mean square of the band's part
    t = np.arange(length)
    kernels = np.concatenate([[hann * np.cos(2 * np.pi * k * t / length) * norm for k in bins],
                              [hann * np.sin(2 * np.pi * k * t / length) * norm for k in bins]])
    member = np.array([[float(lo <= freqs[k] < hi) for k in bins] * 2 for lo, hi in bands])
    return kernels, member


class SpectralBands(nn.Module):
    """(B, patch * n_axes, n_patches) -> (B, n_patches, n_features): ln band powers around every patch.

    The DFT window is a whole, odd number of patches (about `window_s`), centred on the patch, so the DFT is one
    Conv1d straight over the patch channels (zero padding: the window's mean, after the z-score, past its ends).
    n_features = n_bands * (n_axes + 1) (each axis and their sum); with `only_axis`, n_bands (that axis alone)."""

    def __init__(self, patch: int, rate_hz: float, window_s: float = 4.0, n_axes: int = 3,
                 bands=(LOCO_BAND, FREEZE_BAND), eps: float = 1e-4, shift: float = 3.0, scale: float = 2.0,
                 only_axis: int | None = None):
        super().__init__()
        taps = int(round(window_s * rate_hz / patch)) // 2 * 2 + 1          # odd number of patches
        kernels, member = _band_kernels(rate_hz, taps * patch, bands)        # (2K, taps * patch)
        per_patch = kernels.reshape(len(kernels), taps, patch)               # [k, tap, sample in patch]
        weight = np.zeros((n_axes, len(kernels), patch, n_axes, taps))       # [axis, k, sample, axis', tap]
        for a in range(n_axes):
            weight[a, :, :, a, :] = per_patch.transpose(0, 2, 1)
        if only_axis is not None:   # one axis's bands only (the freeze index's): a third of the DFT's work
            weight, n_out = weight[only_axis:only_axis + 1], 1
        else:
            n_out = n_axes
        self.register_buffer("dft", torch.tensor(weight.reshape(n_out * len(kernels), patch * n_axes, taps),
                                                 dtype=torch.float32), persistent=False)
        # band sums per axis, then per band over every axis (cos^2 + sin^2 of every bin inside the band)
        rows = [np.kron(np.eye(n_out)[a], m) for m in member for a in range(n_out)]
        if only_axis is None:
            rows += [np.kron(np.ones(n_axes), m) for m in member]
        self.register_buffer("bands", torch.tensor(np.array(rows)[:, :, None], dtype=torch.float32),
                             persistent=False)
        self.pad, self.eps, self.shift, self.scale = taps // 2, eps, shift, scale
        self.n_features = len(rows)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coeffs = F.conv1d(x, self.dft, padding=self.pad)                    # (B, axes * 2K, n_patches)
        power = F.conv1d(coeffs * coeffs, self.bands)                       # (B, n_features, n_patches)
        return ((torch.log(power + self.eps) + self.shift) / self.scale).transpose(1, 2)


class FreezeIndexLogit(nn.Module):
    """(B, patch * n_axes, n_patches) -> (B, n_patches, 1): `slope` * (ln FI - ln `threshold`) of axis `axis`
    (AccV by default), with FI = freeze-band / locomotor-band power of `SpectralBands` around each patch: Moore's
    freeze index (Bachlin's 4 s and 1.5), as a logit that is 0 at the threshold (deploy.scoring's FI_SLOPE).
    Fixed: no parameters. `TransformerRNNPlus(fi_blend=w)` adds w times it to every class logit."""

    def __init__(self, patch: int, rate_hz: float, window_s: float = 4.0, threshold: float = 1.5,
                 slope: float = 4.0, axis: int = 0, n_axes: int = 3):
        super().__init__()
        self.bands = SpectralBands(patch, rate_hz, window_s, n_axes=n_axes, only_axis=axis)
        self.loco, self.freeze = 0, 1                                  # feature rows: that axis's loco, freeze band
        self.offset, self.slope = math.log(threshold), slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.bands(x)
        ln_fi = (f[..., self.freeze:self.freeze + 1] - f[..., self.loco:self.loco + 1]) * self.bands.scale
        return (ln_fi - self.offset) * self.slope
