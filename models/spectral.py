"""SpectralBands: fixed (non-trainable) band powers per patch, the freeze index's ingredients inside the model.

Freezing of gait shows as power moving from the locomotor band (0.5-3 Hz) into the freeze band (3-8 Hz) (Moore
2008; reference/fog-domain.md). A learnt patch embedding of 125 ms patches has to discover that from scratch and,
on three real subjects, does not; these features hand it over. For every patch of a per-patch input
(B, patch * 3, n_patches), channels [v0, ml0, ap0, v1, ...] as `deploy.preprocess.patchify` writes them:

- a Hann-windowed DFT of about `window_s` seconds centred on the patch is taken by ONE grouped Conv1d (a group
  per axis) over the patch channels with fixed cos/sin kernels (the bins inside the bands only; static shapes);
- squared, the bins are summed into band powers by a fixed 1x1 Conv1d: per axis and summed over the axes, for the
  locomotor and the freeze band;
- ln(power + eps), shifted and scaled to about [-2, 2]. The ratio of the bands (the freeze index) is the
  difference of two features, which the next (learnt) Linear computes; it is scale-free, so it survives the
  window z-score.

Exports as Reshape/Transpose (the axes regrouped) and Conv/Mul/Conv/Add/Log (no MatMul, so the INT8 Q/DQ rules
leave it float; the learnt Linear after it is quantized as any other). The kernels are buffers that are not saved (persistent=False):
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
    grouped Conv1d (a group per axis) over the patch channels regrouped axis by axis (zero padding: the window's
    mean, after the z-score, past its ends). n_features = n_bands * (n_axes + 1) (each axis and their sum); with
    `only_axis`, n_bands (that axis alone); `total` appends one feature: every band of every axis summed."""

    def __init__(self, patch: int, rate_hz: float, window_s: float = 4.0, n_axes: int = 3,
                 bands=(LOCO_BAND, FREEZE_BAND), eps: float = 1e-4, shift: float = 3.0, scale: float = 2.0,
                 only_axis: int | None = None, total: bool = False):
        super().__init__()
        taps = int(round(window_s * rate_hz / patch)) // 2 * 2 + 1          # odd number of patches
        kernels, member = _band_kernels(rate_hz, taps * patch, bands)        # (2K, taps * patch)
        per_patch = kernels.reshape(len(kernels), taps, patch).transpose(0, 2, 1)   # [k, sample in patch, tap]
        n_out = n_axes if only_axis is None else 1
        self.register_buffer("dft", torch.tensor(np.concatenate([per_patch] * n_out), dtype=torch.float32),
                             persistent=False)                               # (n_out * 2K, patch, taps)
        # band sums per axis, then per band over every axis (cos^2 + sin^2 of every bin inside the band)
        rows = [np.kron(np.eye(n_out)[a], m) for m in member for a in range(n_out)]
        if only_axis is None:
            rows += [np.kron(np.ones(n_axes), m) for m in member]
        if total:
            rows.append(np.kron(np.ones(n_out), member.sum(axis=0)))
        self.register_buffer("bands", torch.tensor(np.array(rows)[:, :, None], dtype=torch.float32),
                             persistent=False)
        self.patch, self.n_axes, self.only_axis, self.n_out = patch, n_axes, only_axis, n_out
        self.pad, self.eps, self.shift, self.scale = taps // 2, eps, shift, scale
        self.n_features = len(rows)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[-1]
        per_axis = x.reshape(-1, self.patch, self.n_axes, n).transpose(1, 2)     # (B, axes, patch, n_patches)
        if self.only_axis is not None:   # one axis's bands only (the freeze index's): a third of the DFT's work
            per_axis = per_axis[:, self.only_axis:self.only_axis + 1]
        coeffs = F.conv1d(per_axis.reshape(-1, self.n_out * self.patch, n), self.dft, padding=self.pad,
                          groups=self.n_out)                                 # (B, axes * 2K, n_patches)
        power = F.conv1d(coeffs * coeffs, self.bands)                       # (B, n_features, n_patches)
        return ((torch.log(power + self.eps) + self.shift) / self.scale).transpose(1, 2)


class FreezeIndexLogit(nn.Module):
    """(B, patch * n_axes, n_patches) -> (B, n_patches, 1): `slope` * (ln FI - ln `threshold`) of axis `axis`
    (AccV by default), with FI = freeze-band / locomotor-band power of `SpectralBands` around each patch: Moore's
    freeze index (Bachlin's 4 s and 1.5), as a logit that is 0 at the threshold (deploy.scoring's FI_SLOPE).

    `power_weight` > 0 adds `slope * power_weight * (ln P - ln power_ref)`, P the mean square of the 0.5-8 Hz part
    of all three axes summed (deploy.freeze_index's band power): Bachlin's power gate made soft (standing still has
    a noisy, often high FI but hardly any power). It needs an input that keeps its amplitude (the preset's spec
    centres each window without dividing by its std below `min_std`; P and power_ref are then in g^2; 0.02 g^2 is
    about the median of the real Daphnet trunk recordings, 0.028). Fixed: no parameters. `TransformerRNNPlus(fi_blend=w)` adds w
    times it to every class logit."""

    def __init__(self, patch: int, rate_hz: float, window_s: float = 4.0, threshold: float = 1.5,
                 slope: float = 4.0, axis: int = 0, n_axes: int = 3, power_weight: float = 0.0,
                 power_ref: float = 0.02, eps: float = 1e-4):
        super().__init__()
        every_axis = bool(power_weight)
        self.bands = SpectralBands(patch, rate_hz, window_s, n_axes=n_axes, eps=eps,
                                   only_axis=None if every_axis else axis, total=every_axis)
        # feature rows: [loco of each axis, freeze of each axis, loco sum, freeze sum, total] or [loco, freeze]
        self.loco, self.freeze = (axis, n_axes + axis) if every_axis else (0, 1)
        self.offset, self.slope = math.log(threshold), slope
        self.power_weight, self.power_offset = float(power_weight), math.log(power_ref)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.bands(x)
        scale = self.bands.scale
        ln_fi = (f[..., self.freeze:self.freeze + 1] - f[..., self.loco:self.loco + 1]) * scale
        logit = (ln_fi - self.offset) * self.slope
        if self.power_weight:
            # the bands sum |X_k|^2 over positive frequencies only: x2 for the mean square (Parseval)
            ln_power = f[..., -1:] * scale - self.bands.shift + math.log(2.0)
            logit = logit + (ln_power - self.power_offset) * (self.slope * self.power_weight)
        return logit


class WindowZScore(nn.Module):
    """(B, patch * n_axes, n_patches) -> the same, each axis z-scored over the whole window (population std; a
    constant axis gives 0): deploy.preprocess's "window" normalization inside the graph. A model whose spec keeps
    the amplitude (for `FreezeIndexLogit`'s power) gives its learnt part the z-scored window it was trained on."""

    def __init__(self, n_axes: int = 3, eps: float = 1e-12):
        super().__init__()
        self.n_axes, self.eps = n_axes, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        per_axis = x.reshape(-1, x.shape[1] // self.n_axes, self.n_axes, x.shape[2])
        centred = per_axis - per_axis.mean(dim=(1, 3), keepdim=True)
        var = (centred * centred).mean(dim=(1, 3), keepdim=True)
        return (centred * torch.rsqrt(var + self.eps)).reshape(x.shape)
