"""Preprocessing: the spec, units, resampling, normalization modes, patching and block averaging."""
from __future__ import annotations

import json

import numpy as np
import pytest

from deploy.preprocess import (PreprocessSpec, Resampler, RunningNormalizer, SpecError, convert_units, cut_blocks,
                               normalize, overlap_average, patchify, prepare, resample, unpatchify)
from deploy.recording import Recording

FOG_SMALL = {"rate_hz": 64, "units": "g", "patch": 8, "n_patches": 128, "normalization": "window", "scale": 1.0,
             "layout": "BCT"}


def test_spec_round_trips_through_json():
    spec = PreprocessSpec.from_dict(FOG_SMALL)
    assert spec.window == 1024
    assert PreprocessSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(SpecError, match="unknown"):
        PreprocessSpec.from_dict({**FOG_SMALL, "bogus": 1})
    with pytest.raises(SpecError):
        PreprocessSpec.from_dict({**FOG_SMALL, "normalization": "zscore"})


def test_convert_units():
    assert np.allclose(convert_units(np.ones(3), "g", "m/s^2"), 9.80665)
    assert np.allclose(convert_units(convert_units(np.ones(3), "g", "m/s^2"), "m/s^2", "g"), 1.0)


@pytest.mark.parametrize("src,dst", [(128, 100), (100, 50), (100, 64), (128, 64), (50, 100)])
def test_resampling_keeps_a_sine_below_the_new_nyquist(src, dst):
    f = 0.8 * min(src, dst) / 2
    t = np.arange(30 * src) / src
    y = resample(np.sin(2 * np.pi * f * t), src, dst)
    assert len(y) == 30 * dst
    ref = np.sin(2 * np.pi * f * np.arange(len(y)) / dst)
    mid = slice(len(y) // 10, -len(y) // 10)
    assert abs(np.sqrt(2 * np.mean(y[mid] ** 2)) - 1) < 0.01
    assert np.abs(y[mid] - ref[mid]).max() < 0.01


def test_resampling_rejects_aliases_and_keeps_gravity():
    src, dst = 128, 64
    t = np.arange(30 * src) / src
    y = resample(np.sin(2 * np.pi * 45 * t), src, dst)  # 45 Hz would alias to 19 Hz at 64 Hz
    assert np.abs(y[100:-100]).max() < 0.01
    assert np.allclose(resample(np.full((500, 3), -1.0), 100, 64), -1.0, atol=1e-12)


def test_streaming_resampler_equals_one_shot():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3000, 3))
    rs, parts, i = Resampler(100, 64), [], 0
    while i < len(x):
        k = int(rng.integers(1, 300))
        parts.append(rs.process(x[i:i + k]))
        i += k
    parts.append(rs.flush())
    assert np.array_equal(np.concatenate(parts), resample(x, 100, 64))


def test_recording_normalization_matches_the_kaggle_recipe():
    x = np.random.default_rng(0).normal(size=(1000, 3)) * [1, 2, 3] + [5, 0, -1]
    x[:, 2] = 4.0  # constant axis: std 0 gives 0, not nan
    z = normalize(x, "recording")
    assert np.allclose(z[:, :2].mean(0), 0) and np.allclose(z[:, :2].std(0), 1)
    assert np.all(z[:, 2] == 0)


def test_running_normalization_is_causal_and_chunkable():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64 * 120, 3)) * [0.2, 0.1, 0.1] + [-1.0, 0.0, 0.2]
    one = RunningNormalizer(64, tau_s=30)(x)
    norm, parts, i = RunningNormalizer(64, tau_s=30), [], 0
    while i < len(x):
        k = int(rng.integers(1, 200))
        parts.append(norm(x[i:i + k]))
        i += k
    assert np.array_equal(np.concatenate(parts), one)
    assert np.all(one[:64] == 0)  # first block: no statistics yet
    assert np.allclose(one[64 * 60:].mean(0), 0, atol=0.1) and np.allclose(one[64 * 60:].std(0), 1, atol=0.1)
    # causal: changing the future leaves the past untouched
    y = x.copy()
    y[5000:] += 3
    assert np.array_equal(RunningNormalizer(64)(y)[:5000], RunningNormalizer(64)(x)[:5000])


def test_patchify_interleaves_axes_and_window_normalizes():
    spec = PreprocessSpec(rate_hz=64, patch=4, n_patches=3, normalization="recording", scale=2.0, layout="BTC")
    w = np.arange(12 * 3, dtype=float).reshape(1, 12, 3)
    btc = patchify(w, spec)
    assert btc.shape == (1, 3, 12) and btc.dtype == np.float32
    assert np.array_equal(btc[0, 0], w[0, :4].reshape(-1) / 2)  # [v0, ml0, ap0, v1, ...]
    bct = patchify(w, PreprocessSpec(**{**spec.to_dict(), "layout": "BCT"}))
    assert np.array_equal(bct, btc.transpose(0, 2, 1))
    win = patchify(w * 7 + 3, PreprocessSpec(**{**spec.to_dict(), "normalization": "window", "scale": 1.0}))
    assert np.allclose(win.reshape(1, 12, 3).mean(1), 0, atol=1e-6)


def test_patch_unpatch_round_trip():
    spec = PreprocessSpec(rate_hz=64, patch=8, n_patches=16, layout="BTC", normalization="recording")
    per_patch = np.random.default_rng(0).random((2, 16, 3))
    samples = unpatchify(per_patch, spec.patch)
    assert samples.shape == (2, 128, 3)
    assert np.array_equal(samples[:, ::8], per_patch)
    assert np.array_equal(samples.reshape(2, 16, 8, 3).max(2), per_patch)


@pytest.mark.parametrize("n,window,stride", [(1000, 128, 8), (1000, 128, 128), (100, 128, 16), (1031, 100, 33)])
def test_blocks_and_overlap_average_of_a_constant(n, window, stride):
    blocks, starts = cut_blocks(np.zeros((n, 3)), window, stride)
    assert blocks.shape[1:] == (window, 3) and starts[0] == 0 and starts[-1] + window >= n
    preds = np.full((len(starts), window, 2), 0.37)
    out = overlap_average(preds, starts, n)
    assert out.shape == (n, 2) and np.allclose(out, 0.37)


def test_prepare_converts_and_resamples():
    n = 128 * 10
    acc = np.tile([-9.80665, 0.0, 0.0], (n, 1)) + np.random.default_rng(0).normal(0, 0.5, (n, 3))
    rec = Recording(acc, 128, "m/s^2")
    spec = PreprocessSpec(rate_hz=64, units="g", normalization="window")
    x = prepare(rec, spec)
    assert x.shape == (640, 3) and x.dtype == np.float32
    assert abs(np.median(x[:, 0]) + 1) < 0.05
    z = prepare(rec, PreprocessSpec(rate_hz=64, units="g", normalization="recording"))
    assert np.allclose(z.mean(0), 0, atol=1e-5)


@pytest.mark.parametrize("src_rate,units,norm", [(100, "g", "running"), (128, "m/s^2", "window"),
                                                 (64, "g", "running")])
def test_streaming_preparer_equals_prepare(src_rate, units, norm):
    from deploy.preprocess import StreamingPreparer
    rng = np.random.default_rng(3)
    rec = Recording(rng.normal(size=(src_rate * 20, 3)) + [-1, 0, 0], src_rate, units)
    spec = PreprocessSpec(rate_hz=64, units="g", patch=8, n_patches=16, normalization=norm)
    stream, parts, i = StreamingPreparer(spec, src_rate, units), [], 0
    while i < rec.n_samples:
        k = int(rng.integers(0, 90))
        parts.append(stream.process(rec.acc[i:i + k]))
        i += k
    parts.append(stream.flush())
    assert np.array_equal(np.concatenate(parts), prepare(rec, spec))
    assert stream.delay_s < 0.6


def test_streaming_preparer_refuses_recording_normalization_unless_approximating():
    from deploy.preprocess import StreamingPreparer
    spec = PreprocessSpec(rate_hz=128, units="m/s^2", patch=18, n_patches=864, normalization="recording", scale=25)
    with pytest.raises(SpecError, match="whole recording"):
        StreamingPreparer(spec, 128, "m/s^2")
    assert StreamingPreparer(spec, 128, "m/s^2", approximate_recording=True).approximated


@pytest.mark.parametrize("shape,axis", [((3, 1024), 1), ((4, 256, 3), 1), ((500, 3), 0)])
def test_in_place_zscore_with_scratch_equals_a_plain_zscore(shape, axis):
    from deploy.preprocess import zscore_
    x = np.random.default_rng(1).normal(2.0, 0.3, shape)
    flat_axis = (slice(None),) * (x.ndim - 1) + (0,) if axis != x.ndim - 1 else (0,)
    x[flat_axis] = 0.1          # a flat axis (0.1 is not exact in binary): std 0 gives exactly 0
    mean, std = x.mean(axis=axis, keepdims=True), x.std(axis=axis, keepdims=True)
    assert 0 < std.min() < 1e-15  # rounding: a naive z-score would turn the flat axis into -1s
    varies = std > 1e-12
    expected = np.where(varies, (x - mean) / np.where(varies, std, 1.0), 0.0)
    scratch = np.empty(mean.shape), np.empty(mean.shape)
    got = x.copy()
    assert zscore_(got, axis, *scratch) is got
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert np.all(got[flat_axis] == 0.0)


def test_gravity_alignment_puts_the_window_mean_on_minus_accv_and_floors_the_std():
    from dataclasses import replace as _replace
    from deploy.preprocess import gravity_rotation
    rng = np.random.default_rng(4)
    spec = PreprocessSpec(rate_hz=64, patch=8, n_patches=16, normalization="window", gravity_align=True)
    for _ in range(5):
        g = rng.normal(size=3)
        rot = gravity_rotation(g)
        np.testing.assert_allclose(rot @ (g / np.linalg.norm(g)), [-1, 0, 0], atol=1e-12)
        np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
    still = np.tile([0.0, 0.6, -0.8], (128, 1)) + rng.normal(size=(128, 3)) * 1e-3
    tokens = patchify(still[None], _replace(spec, gravity_align=False, min_std=0.05))
    assert np.abs(tokens).max() < 0.2                      # noise stays small instead of becoming unit variance
    assert patchify(still[None], _replace(spec, gravity_align=False)).std() == pytest.approx(1, abs=0.01)
    with pytest.raises(SpecError):
        PreprocessSpec(rate_hz=64, normalization="running", gravity_align=True)


def _rotation(rng, mirror=False):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))                       # a uniformly random orthogonal matrix
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q @ np.diag([1.0, 1.0, -1.0]) if mirror else q


def _walking(rng, n=512, rate=64.0):
    """Gravity on a tilted sensor, steps at 1.8 Hz (vertical) and sway at 0.9 Hz (one horizontal axis)."""
    t = np.arange(n) / rate
    x = np.stack([-1 + 0.2 * np.sin(2 * np.pi * 1.8 * t) ** 3, 0.1 * np.sin(2 * np.pi * 0.9 * t + 0.3),
                  0.15 * np.sin(2 * np.pi * 1.8 * t + 1.0) + 0.05 * np.sin(2 * np.pi * 3.6 * t)], 1)
    return x @ _rotation(rng).T + rng.normal(size=x.shape) * 0.01


def test_the_principal_frame_gives_the_same_input_however_the_sensor_is_turned_or_mirrored():
    """Upside down, tilted, turned about the vertical, AP and ML swapped or negated: one model input."""
    from deploy.preprocess import window_frame
    rng = np.random.default_rng(7)
    spec = PreprocessSpec(rate_hz=64, patch=8, n_patches=64, normalization="window", min_std=1.0,
                          gravity_align=True, horizontal="principal")
    windows = np.stack([_walking(rng) for _ in range(4)])
    want = patchify(windows, spec)
    upside_down, swap = np.diag([-1.0, -1.0, 1.0]), np.array([[1.0, 0, 0], [0, 0, 1], [0, 1, 0]])
    for turn in [upside_down, swap, -swap, *(_rotation(rng, mirror=m) for m in (False, True) for _ in range(4))]:
        np.testing.assert_allclose(patchify(windows @ turn.T, spec), want, atol=1e-5)
    frame = window_frame(np.ascontiguousarray(windows[0].T), spec)
    np.testing.assert_allclose(frame @ frame.T, np.eye(3), atol=1e-12)       # a rotation or a mirror, no scaling
    seen = frame @ windows[0].T
    assert seen[0].mean() == pytest.approx(-np.linalg.norm(windows[0].mean(0)))   # gravity reads -|g| on AccV
    assert seen[1].var() >= seen[2].var() and (seen[1:] - seen[1:].mean(1, keepdims=True)) ** 3 @ np.ones(512) \
        == pytest.approx(np.abs((seen[1:] - seen[1:].mean(1, keepdims=True)) ** 3 @ np.ones(512)))
    # without the principal frame the heading is the sensor's: a turn about the vertical changes the input
    vertical_only = PreprocessSpec(rate_hz=64, patch=8, n_patches=64, normalization="window", gravity_align=True)
    assert np.abs(patchify(windows @ swap.T, vertical_only) - patchify(windows, vertical_only)).max() > 0.5
    with pytest.raises(SpecError, match="gravity_align"):
        PreprocessSpec(rate_hz=64, horizontal="principal")
    with pytest.raises(SpecError, match="horizontal"):
        PreprocessSpec(rate_hz=64, gravity_align=True, horizontal="north")


def test_specs_without_the_horizontal_field_read_as_before():
    old = {"rate_hz": 64, "units": "g", "patch": 8, "n_patches": 128, "normalization": "window", "scale": 1.0,
           "layout": "BCT", "running_tau_s": 30.0, "running_block_s": 1.0, "min_std": 1.0, "gravity_align": False}
    spec = PreprocessSpec.from_dict(old)
    assert spec.horizontal == "sensor" and PreprocessSpec.from_dict(spec.to_dict()) == spec
