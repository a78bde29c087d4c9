"""offline.predict_recording: the hop grid, padding, look-ahead, and per-patch/per-sample outputs."""
from __future__ import annotations

import numpy as np
import pytest

from deploy.offline import predict_recording, window_ends
from deploy.preprocess import PreprocessSpec, patchify, prepare
from deploy.recording import Recording


def _rec(n=64 * 40, seed=0):
    return Recording(np.random.default_rng(seed).normal(size=(n, 3)), 64.0, "g")


SPEC = PreprocessSpec(rate_hz=64, patch=8, n_patches=16, normalization="recording", layout="BCT")


def test_constant_model_gives_the_constant_everywhere():
    for n in (64 * 40, 64 * 40 + 5, 50):
        out = predict_recording(_rec(n), SPEC, lambda x: np.full((len(x), 16, 3), 0.25), hop_samples=32)
        assert out.shape == (n, 3) and np.allclose(out, 0.25)


def test_grid_window_ends_and_padding():
    assert list(window_ends(100, 32)) == [32, 64, 96, 128]
    seen = []

    def infer(x):  # BCT -> recover the first axis of each window's samples
        seen.append(x.transpose(0, 2, 1).reshape(len(x), -1, 3)[:, :, 0].copy())
        return np.zeros((len(x), 16, 1))

    rec = Recording(np.arange(100, dtype=float)[:, None].repeat(3, 1), 64.0, "g")
    spec = PreprocessSpec(rate_hz=64, patch=8, n_patches=16, normalization="recording", scale=1.0)
    predict_recording(rec, spec, infer, hop_samples=32, batch_size=3)
    windows = np.concatenate(seen)
    x = prepare(rec, spec)[:, 0]
    assert len(windows) == 4
    assert np.allclose(windows[0][-32:], x[:32]) and np.allclose(windows[0][:-32], x[0])  # start: first sample
    assert np.allclose(windows[3][-28:], x[-1]) and np.allclose(windows[3][-32:-28], x[96:100])  # tail padded


def test_lookahead_zero_uses_only_the_first_covering_window():
    # the model answers with the index of the window it was given: we can read which window fed each sample
    counter = iter(range(10 ** 6))

    def infer(x):
        return np.stack([np.full((16, 1), float(next(counter))) for _ in x])

    out = predict_recording(_rec(200), SPEC, infer, hop_samples=32, lookahead_samples=0)[:, 0]
    assert np.array_equal(out, np.arange(200) // 32)


def test_full_overlap_average_matches_manual():
    rec = _rec(300)
    w = np.random.default_rng(5).normal(size=(48,))

    def infer(x):  # a deterministic per-patch function of the input
        t = x.transpose(0, 2, 1)  # (B, 16, 24)
        return 1 / (1 + np.exp(-(t @ w[:24])))[..., None]

    out = predict_recording(rec, SPEC, infer, hop_samples=64)[:, 0]
    x = prepare(rec, SPEC)
    total, count = np.zeros(300), np.zeros(300)
    for e in range(64, 320 + 1, 64):
        idx = np.clip(np.arange(e - 128, e), 0, 299)
        p = np.repeat(infer(patchify(x[idx][None], SPEC))[0, :, 0], 8)
        for j, t in enumerate(range(e - 128, e)):
            if 0 <= t < 300:
                total[t] += p[j]
                count[t] += 1
    assert np.allclose(out, total / count, atol=1e-6)


def test_bad_hop_and_bad_model_output_are_clear():
    from deploy.errors import FogError
    with pytest.raises(FogError, match="hop_samples"):
        predict_recording(_rec(), SPEC, lambda x: None, hop_samples=0)
    with pytest.raises(FogError, match="patches"):
        predict_recording(_rec(), SPEC, lambda x: np.zeros((len(x), 7, 3)), hop_samples=32)
