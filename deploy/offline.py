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
- What a model output row decides (`output_per`, also written as the manifest's `output.per`): a sample
  (B, W, C), a patch (B, n_patches, C; tiled over its samples by `unpatchify`) or the whole window (B, C: a
  per-window classifier such as `models.RecurrentClassifier` without per_step). A window's single decision is held
  over every sample of the window and then combined like any other output: it counts for the window's last L
  samples, its contribution span, averaged with the other windows that decide them. So lookahead 0 holds each
  window's decision over its last hop (each sample takes the decision of the first window that contains it, at
  most one hop late), and a larger look-ahead averages the decisions of the windows ending within it. Not the
  window's centre: that would delay every decision by half a window (8 s for fog-small's windows) whatever the
  look-ahead, and the zoo's per-window classifier reads its last step, whose state is about the newest samples.
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


def output_per(shape, spec: PreprocessSpec) -> str:
    """What one output row decides, from the model output's shape (batch first): "window" for (B, C), "sample" for
    (B, window, C), "patch" for (B, n_patches, C)."""
    shape = tuple(int(d) for d in shape)
    if len(shape) == 2:
        return "window"
    if len(shape) == 3 and shape[1] in (spec.window, spec.n_patches):
        return "sample" if shape[1] == spec.window else "patch"
    raise FogError(f"the model outputs shape {shape}; expected (batch, classes) per window, (batch, {spec.n_patches} "
                   f"patches, classes) or (batch, {spec.window} samples, classes) (re-export the bundle)")


def windows_to_samples(probs: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Model output -> (B, window, C): per-sample outputs kept, per-patch ones tiled over their patch, a per-window
    output held over the whole window (the caller keeps each window's contribution span, see the module docstring)."""
    probs = np.asarray(probs)
    per = output_per(probs.shape, spec)
    if per == "window":
        return np.broadcast_to(probs[:, None, :], (len(probs), spec.window, probs.shape[1]))
    return probs if per == "sample" else unpatchify(probs, spec.patch)


def batch_infer(engine):
    """`infer(batch)` over an engine with a fixed batch size (`engine.input_shape[0]`, usually 1 in a bundle): slices
    of that size, the last one padded with copies of its last window, outputs copied out of the engine's reused
    buffer. `predict_recording` applies it itself to an engine or an engine's `infer`, so either can be passed."""
    batch = int(engine.input_shape[0])

    def infer(x):
        out = []
        for i in range(0, len(x), batch):
            part = x[i:i + batch]
            if len(part) < batch:
                part = np.concatenate([part, np.repeat(part[-1:], batch - len(part), axis=0)])
            out.append(np.array(engine.infer(np.ascontiguousarray(part)))[:min(batch, len(x) - i)])
        return np.concatenate(out)
    infer.fixed_batch = batch
    return infer


def as_infer(infer):
    """A callable taking any number of windows: an engine (or an engine's bound `infer`) with a static batch is
    wrapped by `batch_infer`; any other callable is used as it is."""
    engine = getattr(infer, "__self__", infer)   # an engine's bound `infer` -> the engine
    if hasattr(engine, "infer") and getattr(engine, "input_shape", None) is not None:
        return batch_infer(engine)
    return infer


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
    infer = as_infer(infer)
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
    (apply the activation yourself if the model gives logits). A bundle's engine, or its `infer`, may be passed
    as it is: its static batch (usually 1) is handled here (`batch_infer`). See the module docstring for the exact grid.
    """
    if isinstance(spec, dict):
        spec = PreprocessSpec.from_dict(spec)
    return predict_prepared(prepare(recording, spec), spec, infer, hop_samples, lookahead_samples,
                            batch_size, progress)
