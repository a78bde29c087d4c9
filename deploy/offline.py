"""Offline prediction on a whole recording, on exactly the hop grid the streaming daemon uses.

The grid (all in samples at the model rate, after `prepare`; W = spec.window, h = hop_samples, n = prepared length):
- Window k (k = 0, 1, ..., K-1 with K = ceil(n / h)) ends, exclusive, at e_k = (k + 1) * h and covers
  [e_k - W, e_k). This is the window a streaming device runs as soon as sample e_k - 1 has arrived.
- Start: positions before 0 hold the first prepared sample (as if the person had been still before the
  recording began), so the first decision comes after one hop, not after a full window.
- End: the last hop may be partial (n not a multiple of h): its window still ends at K * h, and positions from n
  on hold the last prepared sample (the daemon does the same when its stream ends: `flush`).
- Combining: window k's per-sample outputs (after `unpatchify`) are used for its last
  L = min(W, (lookahead_samples // h + 1) * h) samples only; each sample's probability is the mean over the
  windows that contribute to it, summed in window order. lookahead_samples=None uses whole windows (classic
  overlap averaging, up to W - h samples of look-ahead); 0 uses only the first window that contains the sample
  (the daemon's lowest-latency setting, decision at most one hop after the sample).
"""
from __future__ import annotations

import numpy as np

from deploy.errors import FogError
from deploy.preprocess import PreprocessSpec, patchify, prepare, unpatchify


def window_ends(n: int, hop: int) -> np.ndarray:
    """Exclusive end positions of the windows for a prepared signal of n samples."""
    return np.arange(1, -(-n // hop) + 1) * hop


def contribution(window: int, hop: int, lookahead_samples: int | None) -> int:
    """How many of a window's last samples it contributes to the timeline."""
    if lookahead_samples is None:
        return window
    return min(window, (int(lookahead_samples) // hop + 1) * hop)


def extract_windows(x: np.ndarray, ends: np.ndarray, window: int) -> np.ndarray:
    """(len(ends), window, 3) windows ending at `ends`, edge-extended on both sides."""
    idx = np.clip(ends[:, None] - window + np.arange(window)[None, :], 0, len(x) - 1)
    return x[idx]


def windows_to_samples(probs: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Model output -> (B, window, C): per-patch outputs are tiled, per-sample ones (length window) kept."""
    probs = np.asarray(probs)
    if probs.ndim != 3:
        raise FogError(f"the model returned shape {probs.shape}; expected (batch, n_patches, classes)")
    if probs.shape[1] == spec.window:
        return probs
    if probs.shape[1] == spec.n_patches:
        return unpatchify(probs, spec.patch)
    raise FogError(f"the model returned {probs.shape[1]} steps per window; expected {spec.n_patches} patches "
                   f"or {spec.window} samples")


def predict_prepared(x: np.ndarray, spec: PreprocessSpec, infer, hop_samples: int,
                     lookahead_samples: int | None = None, batch_size: int = 16, progress=None) -> np.ndarray:
    """Like predict_recording, for a signal already through `prepare`."""
    n, window = len(x), spec.window
    hop = int(hop_samples)
    if hop < 1 or hop > window:
        raise FogError(f"hop_samples must be in 1..{window} (the window), got {hop_samples}")
    if n == 0:
        raise FogError("the recording is empty")
    ends = window_ends(n, hop)
    keep = contribution(window, hop, lookahead_samples)
    total, count = None, np.zeros(n)
    for b in range(0, len(ends), batch_size):
        batch_ends = ends[b:b + batch_size]
        out = windows_to_samples(infer(patchify(extract_windows(x, batch_ends, window), spec)), spec)
        if total is None:
            total = np.zeros((n, out.shape[2]))
        for e, p in zip(batch_ends, out):
            s, stop = max(0, e - keep), min(n, e)
            total[s:stop] += p[window - (e - s): window - (e - stop)]
            count[s:stop] += 1
        if progress:
            progress(min(b + batch_size, len(ends)), len(ends))
    return (total / count[:, None]).astype(np.float32)


def predict_recording(recording, spec: PreprocessSpec, infer, hop_samples: int,
                      lookahead_samples: int | None = None, batch_size: int = 16, progress=None) -> np.ndarray:
    """(n, C) per-sample probabilities at the model rate (n = len(prepare(recording, spec))).

    `infer(model_input) -> probs` gets float32 batches shaped per spec.layout; it must return probabilities
    (apply the activation yourself if the model gives logits). See the module docstring for the exact grid.
    """
    if isinstance(spec, dict):
        spec = PreprocessSpec.from_dict(spec)
    return predict_prepared(prepare(recording, spec), spec, infer, hop_samples, lookahead_samples,
                            batch_size, progress)
