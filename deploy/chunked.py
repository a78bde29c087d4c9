"""`deploy.offline.predict_recording` over a recording that arrives in chunks, with memory bounded by a chunk.

The grid, the edge rules and the combining are those of `deploy.offline` (read its docstring first); only the
bookkeeping differs. Equality is exact (bit for bit), not approximate:
- preparing: `StreamingPreparer` (units, the streaming resampler, running normalization) equals `prepare` exactly;
- windows are cut from a buffer of prepared samples with the same edge extension, and are grouped into the same
  batches as `predict_prepared` (batch b holds windows b*batch_size ... (b+1)*batch_size - 1 of the whole
  recording), so `infer` sees the very same arrays;
- each sample's sum runs over the same windows in the same order in float64, then is divided by its count and cast
  to float32, as in `predict_prepared`.
A sample is handed out once the last window that can contribute to it has run (the daemon's rule: up to
e_next - keep + hop), so what is held is one window of prepared samples plus the look-ahead, plus the chunk.

"recording" normalization needs the whole recording's mean and std before the first window: give them
(`recording_stats`, from a first pass: `recording_stats`) and the prepared samples are z-scored with them. That is
the same formula as `deploy.preprocess.zscore_` but summed in another order, so it equals `prepare` to rounding
(~1e-7 in float32), not bit for bit; "window" and "running" specs are exact.
"""
from __future__ import annotations

import numpy as np

from deploy.errors import FogError
from dataclasses import replace

from deploy.offline import contribution, windows_to_samples
from deploy.preprocess import PreprocessSpec, StreamingPreparer, patchify


class ChunkedPredictor:
    """Feed prepared samples with `push`, then `finish`; both return (first_index, probs (m, C) float32) pieces that
    together equal `predict_prepared` of the concatenated samples.

    `skip(first, stop)` (optional, needs `n_classes`) is asked before each batch of windows, with the samples
    [first, stop) those windows feed: True means none of them will be used (the sensor was not worn, say), so the
    batch is not run and those samples come out NaN. Samples the predicate keeps are exactly as without it."""

    def __init__(self, spec: PreprocessSpec, infer, hop_samples: int, lookahead_samples: int | None = None,
                 batch_size: int = 16, skip=None, n_classes: int | None = None):
        self.spec, self.infer, self.batch_size = spec, infer, int(batch_size)
        self.W = spec.window
        self.hop = int(hop_samples)
        if self.hop < 1 or self.hop > self.W:
            raise FogError(f"hop_samples must be in 1..{self.W} (the window), got {hop_samples}")
        if skip is not None and not n_classes:
            raise FogError("ChunkedPredictor: skip needs n_classes")
        self.keep = contribution(self.W, self.hop, lookahead_samples)
        self.skip = skip
        self.x = np.zeros((0, 3), np.float32)   # prepared samples [x_start, n)
        self.x_start = 0
        self.n = 0
        self.total = np.zeros((0, n_classes or 0))   # float64 sums for samples [done, done + len)
        self.count = np.zeros(0)
        self.done = 0                           # samples handed out so far
        self.k_next = 0                         # index of the next window to run (window k ends at (k+1)*hop)

    # ------------------------------------------------------------------ input

    def push(self, x: np.ndarray) -> list[tuple[int, np.ndarray]]:
        if len(x) == 0:
            return []
        self.x = np.concatenate([self.x, x]) if len(self.x) else np.array(x)
        self.n += len(x)
        self._grow()
        # run every whole batch whose windows all end within the samples received (no end padding needed)
        while (self.k_next + self.batch_size) * self.hop <= self.n:
            self._run(self.k_next, self.k_next + self.batch_size)
        return self._emit(min(self.n, (self.k_next + 1) * self.hop - self.keep))

    def finish(self) -> list[tuple[int, np.ndarray]]:
        if self.n == 0:
            raise FogError("the recording is empty")
        k_end = -(-self.n // self.hop)      # K = ceil(n / hop) windows in all
        while self.k_next < k_end:
            self._run(self.k_next, min(k_end, self.k_next + self.batch_size))
        return self._emit(self.n)

    # ------------------------------------------------------------------ work

    def _run(self, k0: int, k1: int) -> None:
        ends = np.arange(k0 + 1, k1 + 1) * self.hop
        first, stop = max(0, int(ends[0]) - self.keep), min(self.n, int(ends[-1]))
        W, keep, done = self.W, self.keep, self.done
        if self.skip is not None and self.skip(first, stop):
            self.total[first - done:stop - done] = np.nan
            self.count[first - done:stop - done] += 1
        else:
            # extract_windows on the whole signal, done on the buffer: indices clipped to [0, n-1] as there
            idx = np.clip(ends[:, None] - W + np.arange(W)[None, :], 0, self.n - 1) - self.x_start
            if idx.min() < 0:
                raise FogError("chunked prediction lost samples it still needed (a bug, please report it)")
            out = windows_to_samples(self.infer(patchify(self.x[idx], self.spec)), self.spec)
            if self.total.shape[1] != out.shape[2]:
                if self.total.shape[1]:
                    raise FogError(f"the model returned {out.shape[2]} classes, expected {self.total.shape[1]}")
                self.total = np.zeros((len(self.total), out.shape[2]))
            for e, p in zip(ends, out):
                s, stop = max(0, e - keep), min(self.n, e)
                self.total[s - done:stop - done] += p[W - (e - s): W - (e - stop)]
                self.count[s - done:stop - done] += 1
        self.k_next = k1
        # prepared samples the next window can still need: from its start (sample 0 pads the start, n-1 the end)
        keep_from = max(0, min(self.n - 1, (self.k_next + 1) * self.hop - W))
        if keep_from > self.x_start:
            self.x = self.x[keep_from - self.x_start:]
            self.x_start = keep_from

    def _grow(self) -> None:
        """Accumulators cover samples [done, n)."""
        need = self.n - self.done - len(self.count)
        if need > 0:
            self.total = np.concatenate([self.total, np.zeros((need, self.total.shape[1]))])
            self.count = np.concatenate([self.count, np.zeros(need)])

    def _emit(self, upto: int) -> list[tuple[int, np.ndarray]]:
        m = upto - self.done
        if m <= 0:
            return []
        probs = (self.total[:m] / self.count[:m, None]).astype(np.float32)
        out = [(self.done, probs)]
        self.total, self.count = self.total[m:], self.count[m:]
        self.done = upto
        return out


def recording_stats(chunks, spec: PreprocessSpec, rate_hz: float, units: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-axis mean and population std of the prepared (unit-converted, resampled) signal, in one pass over
    `chunks` (for "recording" normalization)."""
    preparer = StreamingPreparer(replace(spec, normalization="window"), rate_hz, units)
    total, total_sq, n = np.zeros(3), np.zeros(3), 0
    for chunk in chunks:
        x = preparer.process(np.asarray(chunk, np.float64).reshape(-1, 3)).astype(np.float64)
        total, total_sq, n = total + x.sum(0), total_sq + (x * x).sum(0), n + len(x)
    x = preparer.flush().astype(np.float64)
    total, total_sq, n = total + x.sum(0), total_sq + (x * x).sum(0), n + len(x)
    mean = total / max(n, 1)
    return mean, np.sqrt(np.maximum(total_sq / max(n, 1) - mean ** 2, 0.0))


class _RecordingNormalizer:
    """The z-score of `zscore_` with given statistics (a constant axis gives 0, as there)."""

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, np.float64)
        std = np.asarray(std, np.float64)
        ok = std > 1e-12 * np.maximum(1.0, np.abs(self.mean))
        self.inv = np.where(ok, 1.0 / np.where(ok, std, 1.0), 0.0)

    def __call__(self, x):
        return (np.asarray(x, np.float64) - self.mean) * self.inv


def predict_chunks(chunks, rate_hz: float, units: str, spec: PreprocessSpec, infer, hop_samples: int,
                   lookahead_samples: int | None = None, batch_size: int = 16, recording_stats=None, skip=None,
                   n_classes: int | None = None):
    """Yield (first_index, probs) pieces at the model rate for raw (k, 3) chunks of one recording (its rate and
    units); together they equal `predict_recording` of the whole recording (see the module docstring)."""
    if isinstance(spec, dict):
        spec = PreprocessSpec.from_dict(spec)
    normalize = None
    prep_spec = spec
    if spec.normalization == "recording":
        if recording_stats is None:
            raise FogError("'recording' normalization needs the recording's statistics first: pass "
                           "recording_stats=deploy.chunked.recording_stats(...) from a first pass")
        normalize = _RecordingNormalizer(*recording_stats)
        prep_spec = replace(spec, normalization="window")   # units and resampling only; z-score below
    preparer = StreamingPreparer(prep_spec, rate_hz, units)
    predictor = ChunkedPredictor(spec, infer, hop_samples, lookahead_samples, batch_size, skip, n_classes)

    def finish_prep(x):
        if normalize is not None and len(x):
            x = normalize(x).astype(np.float32)
        return x

    for chunk in chunks:
        x = finish_prep(preparer.process(np.asarray(chunk, np.float64).reshape(-1, 3)))
        yield from predictor.push(x)
    yield from predictor.push(finish_prep(preparer.flush()))
    yield from predictor.finish()


