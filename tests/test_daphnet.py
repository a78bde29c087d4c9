"""Daphnet text files: the real recordings in ../shared and the clear errors a malformed file gives."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from deploy.errors import DataError
from deploy.recording import read_recording, read_recordings

README_FACTS = {  # file: (subject, minutes with annotation != 0, freeze rows, freeze episodes), from its README
    "S02R01": ("S02", 6.7, 3537, 9), "S02R02": ("S02", 16.9, 8072, 15), "S03R02": ("S03", 4.3, 2306, 6),
    "S03R03": ("S03", 5.5, 0, 0), "S06R02": ("S06", 5.2, 0, 0),
    # experiment segments of five more recordings (annotation 1 or 2 only)
    "S03R01E0": ("S03", 14.3, 8153, 20), "S03R01E1": ("S03", 9.3, 7881, 23), "S04R01E1": ("S04", 8.5, 0, 0),
    "S06R01E0": ("S06", 13.3, 8052, 7), "S06R01E1": ("S06", 8.0, 272, 2), "S06R01E2": ("S06", 6.7, 89, 1),
    "S08R01E0": ("S08", 3.8, 2208, 2), "S08R01E1": ("S08", 2.7, 4571, 4), "S08R01E2": ("S08", 3.5, 1059, 3),
    "S08R01E3": ("S08", 2.8, 5021, 5), "S09R01E0": ("S09", 2.5, 323, 4), "S09R01E1": ("S09", 2.8, 4617, 6),
    "S09R01E2": ("S09", 9.2, 7283, 5), "S09R01E3": ("S09", 12.0, 4796, 11), "S09R01E4": ("S09", 2.5, 268, 1)}


def _line(t, trunk=(0, 1000, 0), ann=1):
    return " ".join(map(str, (t, 10, 990, 5, 20, 980, -5) + tuple(trunk) + (ann,)))


def test_the_shared_recordings_match_their_readme(daphnet_dir):
    from deploy.metrics import episodes
    recs = read_recordings([daphnet_dir])
    assert [r.meta["id"] for r in recs] == sorted(README_FACTS)
    for rec in recs:
        subject, minutes, rows, n_episodes = README_FACTS[rec.meta["id"]]
        assert rec.meta["subject"] == subject and rec.rate_hz == 64.0 and rec.units == "g"
        assert rec.mask.sum() / 64 / 60 == pytest.approx(minutes, abs=0.05)
        assert rec.labels[:, 0].sum() == rows and (rec.labels[:, 0] == rec.labels[:, 2]).all()
        assert len(episodes(rec.labels[:, 0] > 0)) == n_episodes
        assert rec.meta["label_kind"] == "any" and rec.meta["position"] == "trunk"
        # the trunk's vertical reads about +1 g at rest: gravity becomes AccV ~ -1 g, the Kaggle convention
        assert -1.05 < rec.acc[rec.mask, 0].mean() < -0.85


def test_mapping_positions_and_units(tmp_path):
    path = tmp_path / "S07R01.txt"
    path.write_text("\n".join(_line(15 * i + 15, trunk=(100, 950, -30), ann=(0, 1, 2, 2)[i % 4])
                              for i in range(8)) + "\n")
    rec = read_recording(path)
    np.testing.assert_allclose(rec.acc[0], [-0.95, -0.03, 0.1])          # AccV=-vertical, AccML=lateral, AccAP=fwd
    assert rec.mask.tolist() == [False, True, True, True] * 2
    assert rec.labels[:, 1].tolist() == [0, 0, 1, 1] * 2 and rec.meta["subject"] == "S07"
    ankle = read_recording(path, layout="daphnet-ankle")
    np.testing.assert_allclose(ankle.acc[0], [-0.99, 0.005, 0.01])
    assert ankle.meta["position"] == "ankle"
    assert read_recording(path, layout="daphnet").meta["position"] == "trunk"


def test_daphnet_replays_through_the_daemon_reader(tmp_path):
    from deploy.sources import ReplaySource
    path = tmp_path / "S01R01.txt"
    path.write_text("\n".join(_line(15 * i) for i in range(1, 200)) + "\n")
    assert ReplaySource(path).recording.n_samples == 199


@pytest.mark.parametrize("text,expected", [
    ("15 1 2 3 4 5 6 7 8 9 1\n31 1 2 3 4 5 6 7 8 1\n", "row 2"),
    ("15 1 2 3 4 5 6 7 8 9 1\n31 1 2 x 4 5 6 7 8 9 1\n", "ankle_lat"),
    ("15 1 2 3 4 5 6 7 8 9 1\n15 1 2 3 4 5 6 7 8 9 1\n", "does not increase"),
    ("15 1 2 3 4 5 6 7 8 9 1\n31 1 2 3 4 5 6 7 8 9 7\n", "annotation 7"),
])
def test_malformed_files_name_the_line_and_column(tmp_path, text, expected):
    path = tmp_path / "S01R01.txt"
    path.write_text(text)
    with pytest.raises(DataError) as err:
        read_recording(path, layout="daphnet")
    assert expected in str(err.value) and "S01R01.txt" in str(err.value)


def test_a_stray_text_file_in_a_folder_is_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hello world\n")
    with pytest.raises(DataError) as err:
        read_recordings([tmp_path])
    assert "notes.txt" in str(err.value)


def test_the_shared_files_are_the_ones_the_readme_hashed(daphnet_dir):
    digest = hashlib.sha256((daphnet_dir / "S03R02.txt").read_bytes()).hexdigest()
    assert digest == "08982a9238f2a6fdeed34bb1e1c4a18239bf6c29c21123c77511068a371fdaa5"
