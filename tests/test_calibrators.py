"""Range calibrators on known distributions, the one-pass histogram, and the calibration cache."""
from __future__ import annotations

import numpy as np
import pytest

from calibration.cache import CalibrationCache, CalibrationCacheError
from calibration.calibrators import (AbsHistogram, EntropyCalibrator, MaxCalibrator, MSECalibrator,
                                     PercentileCalibrator, make_calibrator)


def gaussian_with_outliers(seed=0, n=200_000, n_outliers=20):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    x[:n_outliers] = rng.choice([-1.0, 1.0], n_outliers) * rng.uniform(20.0, 40.0, n_outliers)
    return rng.permutation(x)


def collect_in_batches(calibrator, x, batches=10):
    for part in np.array_split(x, batches):
        calibrator.collect(part)
    return calibrator.compute_amax()


def test_max_returns_the_max():
    x = gaussian_with_outliers()
    assert collect_in_batches(MaxCalibrator(), x) == pytest.approx(np.abs(x).max())


def test_max_per_channel_reduces_all_other_axes():
    w = np.array([[1.0, -3.0], [0.5, 0.25], [-7.0, 2.0]])
    cal = MaxCalibrator(axis=0)
    cal.collect(w)
    cal.collect(w * 0.5)
    np.testing.assert_allclose(cal.compute_amax(), [3.0, 0.5, 7.0])


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_clipping_calibrators_clip_rare_outliers_of_a_gaussian(method):
    x = gaussian_with_outliers()
    amax = collect_in_batches(make_calibrator(method), x)
    # Clipped well below the outliers (20..40), but keeps the bulk of a unit Gaussian.
    assert 2.5 < amax < 10.0, amax
    assert amax < np.abs(x).max() / 2


def test_percentile_matches_numpy_quantile():
    x = np.random.default_rng(1).normal(size=100_000)
    for p in (99.0, 99.9):
        amax = collect_in_batches(PercentileCalibrator(percentile=p), x)
        expected = np.quantile(np.abs(x), p / 100)
        assert amax == pytest.approx(expected, rel=0.01)


def test_mse_clips_a_gaussian_below_its_max_but_not_a_uniform():
    rng = np.random.default_rng(2)
    g = rng.normal(size=200_000)
    amax = collect_in_batches(MSECalibrator(), g)
    assert 2.5 < amax < np.abs(g).max()
    u = rng.uniform(-1, 1, size=100_000)
    assert collect_in_batches(MSECalibrator(), u) > 0.95


def test_entropy_keeps_the_full_range_of_a_uniform():
    u = np.random.default_rng(3).uniform(-1, 1, size=100_000)
    assert collect_in_batches(EntropyCalibrator(), u) > 0.95


def test_histogram_grows_in_one_pass_and_equals_a_two_pass_histogram():
    rng = np.random.default_rng(4)
    parts = [rng.normal(scale=s, size=5000) for s in (0.1, 1.0, 8.0)]   # the range grows twice
    h = AbsHistogram(num_bins=512)
    for p in parts:
        h.add(p)
    everything = np.abs(np.concatenate(parts))
    reference, _ = np.histogram(everything, bins=h.edges)
    # Equal up to values lying on a bin edge within float rounding (x/width vs k*width).
    assert h.counts.sum() == reference.sum()
    assert np.abs(h.counts - reference).sum() <= 4
    assert h.total == everything.size and h.max == everything.max()


def test_all_zero_tensor_gives_zero_and_no_data_is_an_error():
    cal = EntropyCalibrator()
    cal.collect(np.zeros(10))
    assert cal.compute_amax() == 0.0
    with pytest.raises(ValueError, match="no data"):
        PercentileCalibrator().compute_amax()
    with pytest.raises(ValueError, match="NaN"):
        MSECalibrator().collect(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="unknown calibrator"):
        make_calibrator("minmax-ish")


def test_cache_round_trip_and_model_check(tmp_path):
    torch = pytest.importorskip("torch")
    from calibration.cache import model_hash
    model = torch.nn.Linear(4, 2)
    cache = CalibrationCache(amax={"a.input": 1.5, "a.weight": [0.1, 0.2]}, calibrator={"method": "entropy"},
                             data={"windows": 8, "seed": 0}, model_hash=model_hash(model), preset="fog-small")
    path = cache.save(tmp_path / "cal.json")
    again = CalibrationCache.load(path)
    assert again.to_dict() == cache.to_dict()
    again.check_model(model)
    with torch.no_grad():
        model.weight.add_(1.0)
    with pytest.raises(CalibrationCacheError, match="recalibrate"):
        again.check_model(model)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CalibrationCacheError, match="not a readable"):
        CalibrationCache.load(tmp_path / "bad.json")
