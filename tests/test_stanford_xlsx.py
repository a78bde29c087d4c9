"""The Stanford IMU FOG study's original 128 Hz workbooks as recordings: the 15 in ../shared, and small workbooks
written here for the choices (IMU, gyroscope, labels) and every error a bad one gives."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from deploy.errors import DataError, MissingDependency
from deploy.metrics import episodes
from deploy.recording import read_recording, read_recordings
from tests.conftest import shared_path
from tests.stanford_files import HEADER, workbook_rows, write_trial, write_workbook

pytest.importorskip("openpyxl")

NAME = "pt6_visit_19_tbc_walklr_0_trial_2"
# file: (seconds, IMUs with data, episodes, FOG seconds), from ../shared/data/stanford-imu-fog/README.md
README = {
    "pt5_visit_27.1_tbc_walklr_1_trial_1": (50.3, 11, 4, 14.0), "pt5_visit_6_tbc_walklr_0_trial_1": (47.1, 6, 0, 0.0),
    "pt5_visit_6_tbc_walklr_0_trial_3": (48.2, 6, 0, 0.0), "pt5_visit_6_tbc_walklr_1_trial_2": (48.4, 6, 0, 0.0),
    "pt5_visit_6_tbc_walklr_1_trial_4": (48.7, 6, 0, 0.0), "pt6_visit_19_tbc_walklr_0_trial_2": (69.1, 6, 6, 14.0),
    "pt6_visit_19_tbc_walklr_1_trial_1": (53.6, 6, 1, 4.0), "pt6_visit_27_tbc_walklr_1_trial_1": (59.8, 11, 1, 2.4),
    "pt6_visit_33_tbc_walklr_0_trial_2": (58.0, 6, 0, 0.0), "pt6_visit_33_tbc_walklr_1_trial_1": (57.5, 6, 0, 0.0),
    "pt6_visit_50_tbc_walklr_0_trial_1": (29.3, 11, 0, 0.0), "pt6_visit_6_tbc_walklr_0_trial_1": (58.0, 6, 3, 7.0),
    "pt6_visit_6_tbc_walklr_0_trial_3": (53.7, 6, 2, 3.0), "pt6_visit_6_tbc_walklr_1_trial_2": (56.6, 6, 1, 3.0),
    "pt6_visit_6_tbc_walklr_1_trial_4": (55.2, 6, 2, 4.0)}


@pytest.fixture(scope="module")
def shared_workbooks():
    return read_recordings([shared_path("data", "stanford-imu-fog")])


@pytest.mark.shared
@pytest.mark.slow
def test_the_shared_workbooks_match_their_readme(shared_workbooks):
    assert sorted(r.meta["id"] for r in shared_workbooks) == sorted(README)
    for rec in shared_workbooks:
        seconds, imus, n_episodes, frozen_s = README[rec.meta["id"]]
        assert rec.rate_hz == 128.0 and rec.units == "m/s^2" and rec.meta["label_kind"] == "any"
        assert rec.duration_s == pytest.approx(seconds, abs=0.06)
        assert len(rec.meta["imus_with_data"]) == imus
        assert len(episodes(rec.labels[:, 0] > 0)) == n_episodes
        assert rec.labels[:, 0].sum() / 128 == pytest.approx(frozen_s, abs=0.06)
        assert rec.meta["gyro"].shape == rec.acc.shape and rec.meta["lab"] == "stanford"
        assert 9.0 < np.abs(rec.acc[:, 0].mean()) < 10.5            # ax is the vertical axis, either way up
        assert rec.meta["subject"] == rec.meta["id"][:3]


@pytest.mark.shared
@pytest.mark.slow
def test_pt6s_upside_down_visit_is_read_as_it_is_and_its_label_2_is_not_fog(shared_workbooks):
    by_id = {r.meta["id"]: r for r in shared_workbooks}
    for name, rec in by_id.items():
        upside_down = name.startswith("pt6_visit_19_")
        assert (rec.acc[:, 0].mean() > 9.0) == upside_down, name      # no per-file setting turns it round
    rec = by_id[NAME]
    assert rec.meta["study_subject_id"] == 20 and rec.meta["subject"] == "pt6"   # published as pt20
    assert rec.meta["labels_2_read_as_not_fog"] > 0 and set(np.unique(rec.labels)) == {0.0, 1.0}


@pytest.mark.shared
def test_a_workbook_and_its_64_hz_trial_carry_the_same_freezes():
    """The 64 Hz folder was rebuilt from a public copy and checked against these workbooks: the labels agree."""
    book = read_recording(shared_path("data", "stanford-imu-fog", NAME + ".xlsx"))
    trial = read_recording(shared_path("data", "stanford-imu-fog-64hz", NAME + ".npz"))
    assert 0 <= book.duration_s - trial.duration_s < 1.0      # the copy kept whole 1 s hops of its 2 s windows
    at_64 = book.labels[::2][:trial.n_samples, 0]              # 128 Hz -> 64 Hz, nearest sample
    assert np.array_equal(at_64, trial.labels[:, 0])


def test_the_imu_is_a_layout_and_the_gyroscope_is_kept(tmp_path):
    path = write_workbook(tmp_path / "pt9_visit_3_tbc_walklr_1_trial_2.xlsx", seconds=3)
    rows = workbook_rows(seconds=3)
    lumbar = read_recording(path)
    chest = read_recording(path, layout="stanford-chest")
    ankle = read_recording(path, layout="stanford-ankle_l")
    col = {name: HEADER.index(name) for name in HEADER}
    for rec, imu in ((lumbar, "lumbar"), (chest, "chest"), (ankle, "ankle_l")):
        assert rec.meta["position"] == imu and rec.rate_hz == 128.0 and rec.units == "m/s^2"
        # (openpyxl writes floats to 16-17 significant digits: equal to the last bit or two)
        assert rec.acc[5].tolist() == pytest.approx([rows[6][col[f"imu_{imu}_{a}"]] for a in ("ax", "ay", "az")],
                                                    rel=1e-15)
        assert rec.meta["gyro"][5].tolist() == pytest.approx([rows[6][col[f"imu_{imu}_{a}"]] for a in ("gx", "gy",
                                                                                                      "gz")], rel=1e-15)
    assert lumbar.meta["subject"] == "pt9" and lumbar.meta["layout"] == "stanford"
    assert chest.meta["layout"] == "stanford-chest" and "not documented" in chest.meta["axes"]
    assert lumbar.time[0] == pytest.approx(275.742188) and lumbar.meta["time_unit"] == "s"
    assert lumbar.labels[:, 0].tolist() == [float(r[-1]) for r in rows[1:]]


def _edit(rows, row, column, value):
    rows[row][HEADER.index(column)] = value
    return rows


def _twos(rows):
    for r in rows[1:40]:
        r[-1] = 2
    return rows


def test_label_2_reads_as_not_fog(tmp_path):
    rec = read_recording(write_workbook(tmp_path / "pt1_visit_1_tbc_walklr_0_trial_1.xlsx", _twos(workbook_rows())))
    assert rec.meta["labels_2_read_as_not_fog"] == 39 and not rec.labels[:39].any()


def _gap(rows):
    del rows[100:110]
    return rows


def _rate(rows):
    for i, r in enumerate(rows[1:]):
        r[1] = 10.0 + i / 100.0
    return rows


@pytest.mark.parametrize("change, words, row, column", [
    (lambda rows: _edit(rows, 7, "imu_lumbar_ay", "n/a"), "'n/a' is not a number", 8, "imu_lumbar_ay (J)"),
    (lambda rows: _edit(rows, 9, "imu_lumbar_gz", None), "empty cell", 10, "imu_lumbar_gz (N)"),
    (lambda rows: _edit(rows, 12, "freeze_label", 3), "3 is not 0, 1 or 2", 13, "freeze_label (BQ)"),
    (lambda rows: _edit(rows, 4, "time", rows[3][1]), "does not increase", 5, "time (B)"),
    (_gap, "a gap of 10 samples", 101, "time (B)"),
    (_rate, "not 1/128 s", None, "time (B)"),
])
def test_a_bad_workbook_names_row_column_and_problem(tmp_path, change, words, row, column):
    path = write_workbook(tmp_path / "pt2_visit_5_tbc_walklr_0_trial_1.xlsx", change(workbook_rows()))
    with pytest.raises(DataError, match=words) as err:
        read_recording(path)
    assert err.value.row == row and err.value.column == column and err.value.file == str(path)
    assert "pt2_visit_5" in str(err.value) and err.value.fix


def test_an_empty_imu_is_refused_naming_the_imus_with_data(tmp_path):
    path = write_workbook(tmp_path / "pt2_visit_5_tbc_walklr_0_trial_1.xlsx")
    with pytest.raises(DataError, match=r"the wrist_r IMU is empty .*IMUs with data: chest, lumbar, ankle_l, "
                                        r"ankle_r, foot_l, foot_r") as err:
        read_recording(path, layout="stanford-wrist_r")
    assert "--layout stanford-chest" in str(err.value)


@pytest.mark.parametrize("layout, words", [("stanford-chst", "did you mean 'stanford-chest'"),
                                           ("tdcsfog", "not with layout 'tdcsfog'")])
def test_a_wrong_layout_for_a_workbook_is_named(tmp_path, layout, words):
    path = write_workbook(tmp_path / "pt2_visit_5_tbc_walklr_0_trial_1.xlsx", seconds=1)
    with pytest.raises(DataError, match=words):
        read_recording(path, layout=layout)


def test_a_stanford_layout_on_a_csv_is_named(tmp_path):
    csv = tmp_path / "walk.csv"
    csv.write_text("Time,AccV,AccML,AccAP\n0,-1,0,0\n")
    with pytest.raises(DataError, match=r"reads the Stanford study's workbooks \(.xlsx\) and 64 Hz trial archives"):
        read_recording(csv, layout="stanford")


def test_files_that_are_not_study_workbooks_are_refused(tmp_path):
    junk = tmp_path / "pt1_visit_1_tbc_walklr_0_trial_1.xlsx"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="not a readable Excel workbook"):
        read_recording(junk)
    other = write_workbook(tmp_path / "sales.xlsx", [["region", "total"], ["north", 3]])
    with pytest.raises(DataError, match="missing column 'time': not a Stanford IMU FOG workbook") as err:
        read_recording(other)
    assert err.value.row == 1
    with pytest.raises(DataError, match="lumbar IMU only"):
        read_recording(write_trial(tmp_path / "pt1_visit_2_tbc_walklr_0_trial_1.npz", seconds=2),
                       layout="stanford-chest")


def test_without_openpyxl_the_error_names_the_extra(tmp_path, monkeypatch):
    path = write_workbook(tmp_path / "pt1_visit_1_tbc_walklr_0_trial_1.xlsx", seconds=1)
    monkeypatch.setitem(sys.modules, "openpyxl", None)      # what an import of a missing package sees
    with pytest.raises(MissingDependency, match=r"fog-edge-toolkit\[xlsx\]"):
        read_recording(path)


def test_a_folder_scan_reads_workbooks_and_skips_lock_files(tmp_path):
    write_workbook(tmp_path / "pt1_visit_1_tbc_walklr_0_trial_1.xlsx", seconds=1)
    (tmp_path / "~$pt1_visit_1_tbc_walklr_0_trial_1.xlsx").write_bytes(b"an editor's lock file")
    write_trial(tmp_path / "pt2_visit_1_tbc_walklr_0_trial_1.npz", seconds=2)
    recs = read_recordings([tmp_path])
    assert [(r.meta["subject"], r.rate_hz) for r in recs] == [("pt1", 128.0), ("pt2", 64.0)]


def test_one_trial_in_both_forms_is_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_workbook(tmp_path / "a" / "pt1_visit_1_tbc_walklr_0_trial_1.xlsx", seconds=1)
    write_trial(tmp_path / "b" / "pt1_visit_1_tbc_walklr_0_trial_1.npz", seconds=2)
    with pytest.raises(DataError, match="1 Stanford trial.s. are given twice, e.g. pt1_visit_1_tbc_walklr_0_trial_1"):
        read_recordings([tmp_path])
    assert len(read_recordings([tmp_path / "a"])) == len(read_recordings([tmp_path / "b"])) == 1
