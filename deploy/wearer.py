"""How a stream is normalized when the model's declared normalization cannot stream (or as export chose).

A model trained with "recording" normalization (each recording z-scored with its own mean and std, the Kaggle way)
has no causal twin: the device never has the whole recording. The options, each measured at export against the
model offline under its declared normalization (deploy.fidelity; the manifest's `streaming` section holds the
figures and the choice):
- "declared": what the spec says ("recording" becomes the spec's "running", as before this module);
- "window": a z-score per model window (exactly the same offline and streaming);
- "running": `deploy.preprocess.RunningNormalizer` (30 s time constant; the first second gives 0);
- "running-warm": the same exponential statistics, with a proper warm-up: before the first block completes a
  sample uses the mean and std of the samples so far (itself included) instead of 0;
- "wearer": statistics of the first `capture_s` seconds of the wearer's session (the same warm-up while they are
  captured), then frozen; kept in a state file so a restart of the daemon starts with them;
- "fixed": a mean and std per axis from training/calibration data, carried in the manifest.
Every normalizer maps (k, 3) chunks to (k, 3) and gives the same output however the stream is chunked.
"""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from deploy.errors import FogError

log = logging.getLogger("deploy.wearer")

CAPTURE_S = 120.0   # the wearer's first two minutes
_TINY = 1e-9


def _safe_scale(x, mean, std):
    ok = std > _TINY * np.maximum(1.0, np.abs(mean))
    return np.where(ok, (x - mean) / np.where(ok, std, 1.0), 0.0)


class FixedNormalizer:
    """(x - mean) / std with fixed per-axis statistics."""

    def __init__(self, mean, std):
        self.mean, self.std = np.asarray(mean, np.float64), np.asarray(std, np.float64)

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        return _safe_scale(np.asarray(chunk, np.float64), self.mean, self.std)


class BlockNormalizer:
    """Per-axis statistics updated once per `block_s` block: weight max(1 - exp(-block/tau), 1/k) for the k-th
    block (tau None: equal weights, a plain average); after `capture_s` seconds (if given) they are frozen and
    written to `state_path` (if given), which a later instance reads back and starts frozen with. Before the first
    block completes, each sample uses the expanding statistics of the samples so far."""

    def __init__(self, rate_hz: float, tau_s: float | None = 30.0, capture_s: float | None = None,
                 state_path=None, block_s: float = 1.0):
        self.block = max(1, int(round(block_s * rate_hz)))
        self.alpha = 0.0 if tau_s is None else 1.0 - math.exp(-block_s / tau_s)
        self.capture_blocks = None if capture_s is None else max(1, int(round(capture_s / block_s)))
        self.state_path = Path(state_path) if state_path else None
        self.mean = self.meansq = None
        self.blocks, self.frozen = 0, False
        self._pending = np.zeros((0, 3))
        if self.state_path and self.state_path.is_file():
            self._load()

    def _load(self) -> None:
        try:
            state = json.loads(self.state_path.read_text())
            self.mean, std = np.asarray(state["mean"], float), np.asarray(state["std"], float)
        except (ValueError, KeyError, TypeError) as exc:
            raise FogError(f"{self.state_path}: not a wearer state file ({exc}); delete it to capture the "
                           "wearer's statistics again") from None
        if self.mean.shape != (3,) or std.shape != (3,):
            raise FogError(f"{self.state_path}: mean and std need 3 axes; delete the file to capture again")
        self.meansq, self.frozen = std ** 2 + self.mean ** 2, True
        log.info("wearer statistics from %s (captured %s s)", self.state_path, state.get("captured_s"))

    def _save(self) -> None:
        if not self.state_path:
            return
        std = np.sqrt(np.maximum(self.meansq - self.mean ** 2, 0.0))
        tmp = self.state_path.with_suffix(self.state_path.suffix + ".tmp")
        tmp.write_text(json.dumps({"mean": self.mean.tolist(), "std": std.tolist(),
                                   "captured_s": self.blocks * self.block}))
        os.replace(tmp, self.state_path)   # atomic: a crash never leaves half a file

    def _scale_warmup(self, part: np.ndarray) -> np.ndarray:
        """Samples before any block completed: expanding mean/std over the pending samples and these."""
        seen = np.concatenate([self._pending, part])
        k = np.arange(1, len(seen) + 1)[:, None]
        mean = np.cumsum(seen, axis=0) / k
        var = np.maximum(np.cumsum(seen ** 2, axis=0) / k - mean ** 2, 0.0)
        lo = len(self._pending)
        return _safe_scale(part, mean[lo:], np.sqrt(var[lo:]))

    def _scale(self, part: np.ndarray) -> np.ndarray:
        if self.mean is None:
            return self._scale_warmup(part)
        return _safe_scale(part, self.mean, np.sqrt(np.maximum(self.meansq - self.mean ** 2, 0.0)))

    def _complete_block(self) -> None:
        self.blocks += 1
        a = max(self.alpha, 1.0 / self.blocks)
        m, msq = self._pending.mean(axis=0), (self._pending ** 2).mean(axis=0)
        self.mean = m if self.mean is None else (1 - a) * self.mean + a * m
        self.meansq = msq if self.meansq is None else (1 - a) * self.meansq + a * msq
        self._pending = np.zeros((0, 3))
        if self.capture_blocks is not None and self.blocks >= self.capture_blocks:
            self.frozen = True
            self._save()

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        chunk = np.asarray(chunk, dtype=np.float64).reshape(-1, 3)
        if self.frozen:
            return self._scale(chunk)
        out = np.empty_like(chunk)
        i = 0
        while i < len(chunk) and not self.frozen:
            take = min(self.block - len(self._pending), len(chunk) - i)
            part = chunk[i:i + take]
            out[i:i + take] = self._scale(part)
            self._pending = np.concatenate([self._pending, part])
            if len(self._pending) == self.block:
                self._complete_block()
            i += take
        if i < len(chunk):
            out[i:] = self._scale(chunk[i:])
        return out


def recording_statistics(prepared) -> dict:
    """Per-axis mean and std over prepared (unnormalized) signals, for "fixed" normalization."""
    x = np.concatenate([np.asarray(p, np.float64).reshape(-1, 3) for p in prepared])
    return {"mean": x.mean(axis=0).tolist(), "std": x.std(axis=0).tolist(), "samples": int(len(x))}


def stream_setup(spec, streaming=None, state_path=None):
    """(spec for the stream, normalizer factory or None) for the manifest's `streaming` section (a
    deploy.contract.runtime.StreamingSection, None: the declared normalization); the factory is called per stream
    segment ("wearer" returns one shared normalizer, so its statistics survive gaps)."""
    mode = streaming.normalization if streaming is not None else "declared"
    if mode == "declared":
        return spec, None
    if mode == "window":
        return replace(spec, normalization="window"), None
    running = replace(spec, normalization="running", gravity_align=False, horizontal="sensor", min_std=0.0)
    tau = float(streaming.tau_s or spec.running_tau_s)
    if mode == "running":
        return replace(running, running_tau_s=tau), None
    if mode == "running-warm":
        return running, lambda: BlockNormalizer(spec.rate_hz, tau)
    if mode == "fixed":
        stats = streaming.fixed or {}
        if "mean" not in stats or "std" not in stats:
            raise FogError("manifest streaming.normalization is 'fixed' but streaming.fixed has no mean/std; "
                           "re-export the bundle")
        return running, lambda: FixedNormalizer(stats["mean"], stats["std"])
    shared = BlockNormalizer(spec.rate_hz, None, float(streaming.capture_s or CAPTURE_S), state_path)
    return running, lambda: shared
