"""The Stanford IMU FOG study's 64 Hz trial archives: the real recordings in ../shared and the errors a bad one gives."""
from __future__ import annotations

import numpy as np
import pytest

from deploy.errors import DataError
from deploy.metrics import episodes
from deploy.recording import read_recording, read_recordings
from tests.conftest import shared_path

# person: (trials, episodes, seconds frozen), from ../shared/data/stanford-imu-fog-64hz/README.md
README_FACTS = {"pt1": (7, 31, 137.5), "pt2": (5, 9, 100.0), "pt5": (9, 18, 89.0), "pt6": (14, 19, 45.4)}


def _trial(path, n=640, **changes):
    arrays = {"acc": np.tile(np.float32([-9.8, 0.2, 0.5]), (n, 1)), "gyro": np.zeros((n, 3), np.float32),
              "fog": np.int8(np.arange(n) % 200 < 50), "rate_hz": np.float32(64.0)}
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_the_shared_trials_match_their_readme():
    recs = read_recordings([shared_path("data", "stanford-imu-fog-64hz")])
    for person, (trials, n_episodes, frozen_s) in README_FACTS.items():
        mine = [r for r in recs if r.meta["subject"] == person]
        assert len(mine) == trials
        assert sum(len(episodes(r.labels[:, 0] > 0)) for r in mine) == n_episodes
        assert sum(r.labels[:, 0].sum() for r in mine) / 64 == pytest.approx(frozen_s, abs=0.5)
    for rec in recs:
        assert rec.rate_hz == 64.0 and rec.units == "m/s^2" and rec.meta["label_kind"] == "any"
        assert rec.meta["lab"] == "stanford" and rec.meta["gyro"].shape == rec.acc.shape
        assert -10.5 < rec.acc[:, 0].mean() < -9.0   # axis 0 is vertical, gravity negative (Kaggle's AccV sign)


def test_a_trial_reads_subject_labels_and_gyroscope(tmp_path):
    rec = read_recording(_trial(tmp_path / "pt9_visit_3_tbc_walklr_1_trial_2.npz"))
    assert rec.meta["subject"] == "pt9" and rec.meta["id"] == "pt9_visit_3_tbc_walklr_1_trial_2"
    assert rec.labels.shape == (640, 3) and (rec.labels[:, 0] == rec.labels[:, 2]).all()
    assert len(episodes(rec.labels[:, 0] > 0)) == 4
    assert rec.acc[0].tolist() == pytest.approx([-9.8, 0.2, 0.5]) and "gyro" in rec.meta


@pytest.mark.parametrize("change, words", [
    ({"fog": np.int8([0, 1, 2] * 10)}, "rows"),
    ({"fog": np.full(640, 3, np.int8)}, "not 0 or 1"),
    ({"acc": np.full((640, 3), np.nan, np.float32)}, "not a finite number"),
    ({"acc": np.zeros((640, 2), np.float32)}, "shape"),
    ({"rate_hz": np.float32(-1)}, "positive"),
])
def test_a_bad_trial_names_the_array_and_the_problem(tmp_path, change, words):
    with pytest.raises(DataError, match=words) as err:
        read_recording(_trial(tmp_path / "pt9_visit_1_tbc_walklr_0_trial_1.npz", **change))
    assert "pt9_visit_1" in str(err.value)
