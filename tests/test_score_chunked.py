"""deploy.chunked equals deploy.offline.predict_recording bit for bit, whatever the chunking (issue 16)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from deploy.chunked import ChunkedPredictor, predict_chunks, recording_stats
from deploy.offline import predict_recording
from deploy.preprocess import PreprocessSpec
from deploy.recording import Recording


def _toy_infer(spec):
    """A deterministic stand-in model: per-patch mean and spread mixed into 3 'probabilities'."""
    def infer(x):
        x = np.asarray(x, np.float64)                     # (B, patch*3, n_patches) for BCT
        a = np.tanh(x.mean(axis=1))
        b = np.tanh(x.std(axis=1))
        return np.stack([1 / (1 + np.exp(-a)), 1 / (1 + np.exp(-b)), 1 / (1 + np.exp(-(a - b)))], -1)
    return infer


def _recording(seconds, rate, units="g", seed=0):
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    acc = np.stack([-1 + 0.2 * np.sin(2 * np.pi * 1.8 * t), 0.1 * np.sin(2 * np.pi * 0.9 * t),
                    0.05 * np.cos(2 * np.pi * 5 * t)], 1) + rng.normal(0, 0.02, (n, 3))
    if units == "m/s^2":
        acc = acc * 9.80665
    return Recording(acc, rate, units)


def _chunked(rec, spec, infer, hop, look, chunk, batch=16, stats=None):
    chunks = (rec.acc[i:i + chunk] for i in range(0, rec.n_samples, chunk))
    pieces = list(predict_chunks(chunks, rec.rate_hz, rec.units, spec, infer, hop, look, batch, stats))
    starts = [p[0] for p in pieces]
    assert starts == sorted(starts)
    out = np.concatenate([p[1] for p in pieces])
    assert starts[0] == 0 and all(a[0] + len(a[1]) == b[0] for a, b in zip(pieces, pieces[1:]))
    return out


SPEC = PreprocessSpec(rate_hz=64, units="g", patch=8, n_patches=32, normalization="window")


@pytest.mark.parametrize("rate,units,norm,hop,look,chunk,batch", [
    (64, "g", "window", 32, 64, 1000, 16),
    (64, "g", "window", 32, None, 77, 4),
    (100, "g", "window", 32, 0, 5000, 16),
    (128, "m/s^2", "running", 20, 64, 333, 8),
    (100, "g", "window", 256, 64, 100000, 16),
])
def test_chunked_equals_offline_exactly(rate, units, norm, hop, look, chunk, batch):
    rec = _recording(190.3, rate, units)
    spec = replace(SPEC, normalization=norm)
    infer = _toy_infer(spec)
    whole = predict_recording(rec, spec, infer, hop, look, batch_size=batch)
    got = _chunked(rec, spec, infer, hop, look, chunk, batch)
    assert got.dtype == whole.dtype and got.shape == whole.shape
    assert np.array_equal(got, whole)


def test_recording_normalization_with_first_pass_stats_is_close():
    rec = _recording(120, 100)
    spec = replace(SPEC, normalization="recording")
    infer = _toy_infer(spec)
    whole = predict_recording(rec, spec, infer, 32, 64)
    stats = recording_stats((rec.acc[i:i + 999] for i in range(0, rec.n_samples, 999)), spec, rec.rate_hz, rec.units)
    got = _chunked(rec, spec, infer, 32, 64, 999, stats=stats)
    np.testing.assert_allclose(got, whole, atol=1e-6)


def test_memory_is_bounded_by_the_chunk():
    """What the predictor holds does not grow with the recording's length."""
    spec = SPEC
    pred = ChunkedPredictor(spec, _toy_infer(spec), 32, 64)
    rng = np.random.default_rng(1)
    held = []
    for _ in range(200):
        pred.push(rng.normal(size=(640, 3)).astype(np.float32))
        held.append(len(pred.x) + len(pred.total))
    assert max(held[50:]) <= spec.window + 640 + 64 + 2 * 16 * 32


def test_skip_leaves_the_kept_samples_exact():
    rec = _recording(200, 64)
    infer = _toy_infer(SPEC)
    whole = predict_recording(rec, SPEC, infer, 32, 64)
    n = len(whole)
    unused = np.zeros(n, bool)
    unused[3000:9000] = True
    asked = []

    def skip(first, stop):
        asked.append((first, stop))
        return bool(unused[first:stop].all())
    pieces = list(predict_chunks((rec.acc[i:i + 500] for i in range(0, rec.n_samples, 500)), rec.rate_hz,
                                 rec.units, SPEC, infer, 32, 64, skip=skip, n_classes=3))
    got = np.concatenate([p[1] for p in pieces])
    assert np.array_equal(got[~unused], whole[~unused])
    assert np.isnan(got[unused]).any() and not np.isnan(got[~unused]).any()
