"""Moore's freeze index: the non-learned baseline every learned model must beat.

FI(t) = power in the freeze band (3-8 Hz) / power in the locomotor band (0.5-3 Hz) of one axis (AccV by default),
over a Hann-windowed, mean-removed window of `window_s` centred on t, evaluated every `step_s` and held for the
samples nearest each centre. Moore 2008 used 6 s on the shank, Bachlin 2010 4 s with an extra total-power gate so
standing is not called frozen (`min_power`); Zach 2015 2 s at the waist. A sample is frozen when
ln(FI) > ln(threshold) (and the gate, if any, passes).
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

WINDOW_S = 4.0           # Bachlin 2010
THRESHOLD = 1.5          # Bachlin 2010: a sample is frozen where FI > 1.5
FREEZE_BAND = (3.0, 8.0)
LOCO_BAND = (0.5, 3.0)


def freeze_index(x: np.ndarray, rate_hz: float, window_s: float = WINDOW_S, step_s: float = 0.25,
                 freeze_band=FREEZE_BAND, loco_band=LOCO_BAND, return_power: bool = False):
    """Per-sample freeze index of a 1-D signal (and the 0.5-8 Hz band power per sample if return_power)."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    win = max(8, int(round(window_s * rate_hz)))
    step = max(1, int(round(step_s * rate_hz)))
    half = win // 2
    padded = np.concatenate([np.full(half, x[0]), x, np.full(win - half, x[-1])])
    centres = np.arange(0, n, step)
    frames = sliding_window_view(padded, win)[centres]
    frames = (frames - frames.mean(axis=1, keepdims=True)) * np.hanning(win)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    freqs = np.fft.rfftfreq(win, 1.0 / rate_hz)

    def band(lo, hi):
        return power[:, (freqs >= lo) & (freqs < hi)].sum(axis=1)

    fz, lc = band(*freeze_band), band(*loco_band)
    fi = fz / np.maximum(lc, 1e-12)
    nearest = np.minimum(np.round(np.arange(n) / step).astype(int), len(centres) - 1)
    if return_power:
        band_ms = 2 * (fz + lc) / (win * np.sum(np.hanning(win) ** 2))  # mean square of the 0.5-8 Hz part
        return fi[nearest], band_ms[nearest]
    return fi[nearest]


def freeze_index_scores(recording, window_s: float = WINDOW_S, step_s: float = 0.25, axis: int = 0,
                        min_power: float | None = None) -> np.ndarray:
    """ln(FI) per sample of a Recording (AccV by default), in g; samples whose 0.5-8 Hz power is below
    `min_power` (g^2, Bachlin's standing gate) get the lowest score."""
    from deploy.preprocess import convert_units
    x = convert_units(recording.acc[:, axis], recording.units, "g")
    fi, power = freeze_index(x, recording.rate_hz, window_s, step_s, return_power=True)
    score = np.log(np.maximum(fi, 1e-12))
    if min_power is not None:
        score = np.where(power >= min_power, score, np.log(1e-12))
    return score


def freeze_index_detect(recording, threshold: float = THRESHOLD, window_s: float = WINDOW_S, step_s: float = 0.25,
                        axis: int = 0, min_power: float | None = None) -> np.ndarray:
    """Boolean per sample: FI above `threshold` (Bachlin's 1.5 by default)."""
    return freeze_index_scores(recording, window_s, step_s, axis, min_power) > np.log(threshold)
