"""Subjects as the data names them (issue 27): score and evaluate count people, not files, and say where each name
came from; the score's progress bar totals right (never past 100 %, never a negative ETA) whatever its first
estimate of a recording's length was."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from deploy.recording import Recording, read_recordings, write_recording
from deploy.subjects import FROM_FILE, Owners, unique_names
from tests.conftest import shared_path
from tests.helpers_bundle import make_bundle
from toolkit.cli import main as toolkit


def _walk(seconds: float, rate: float = 100.0, seed: int = 0) -> Recording:
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    acc = np.column_stack([1.0 + 0.2 * np.sin(np.arange(n) / rate * 2 * np.pi * 2), rng.normal(0, 0.1, (n, 2))])
    return Recording(acc, rate, "g")


@pytest.fixture
def tree(tmp_path) -> Path:
    """A mobgap-like study (cohort/id folders named in participant_metadata.json, the same file names for
    everyone), Daphnet- and Stanford-named files, a Kaggle-like folder with its metadata table, a lone file."""
    root = tmp_path / "data"
    for cohort, person in (("HA", "001"), ("HA", "002"), ("MS", "001")):
        folder = root / "study" / cohort / person
        folder.mkdir(parents=True)
        write_recording(_walk(20), folder / "Test5_Trial1.csv", "test")
    (root / "study" / "participant_metadata.json").write_text(json.dumps(
        {"HA": {"001": {"cohort": "HA"}, "002": {"cohort": "HA"}}, "MS": {"001": {"cohort": "MS"}}}))
    (root / "kaggle").mkdir()
    for rid in ("a1b2", "c3d4"):
        write_recording(_walk(20), root / "kaggle" / f"{rid}.csv", "test")
    (root / "kaggle" / "tdcsfog_metadata.csv").write_text("Id,Subject,Visit\na1b2,K07,2\nc3d4,K07,3\n")
    (root / "named").mkdir()
    for name in ("S02R01.npz", "S02R02.npz", "pt6_visit_19_tbc_walklr_0_trial_2.npz", "lone.npz"):
        write_recording(_walk(20), root / "named" / name, "npz")
    return root


def test_owners_come_from_what_the_data_says(tree):
    owners = Owners([tree])
    got = {f.relative_to(tree).as_posix(): owners.of(f) for f in sorted(tree.rglob("*")) if f.suffix in (".csv", ".npz")
           and "metadata" not in f.name}
    assert {k: v.subject for k, v in got.items()} == {
        "kaggle/a1b2.csv": "K07", "kaggle/c3d4.csv": "K07", "named/S02R01.npz": "S02", "named/S02R02.npz": "S02",
        "named/lone.npz": "lone", "named/pt6_visit_19_tbc_walklr_0_trial_2.npz": "pt6",
        "study/HA/001/Test5_Trial1.csv": "HA-001", "study/HA/002/Test5_Trial1.csv": "HA-002",
        "study/MS/001/Test5_Trial1.csv": "MS-001"}
    assert got["kaggle/a1b2.csv"].visit == "2" and "tdcsfog_metadata.csv" in got["kaggle/a1b2.csv"].source
    assert got["named/lone.npz"].source == FROM_FILE
    assert "participant_metadata.json" in got["study/MS/001/Test5_Trial1.csv"].source
    # a folder deeper than the study's root still finds the study's own table above it
    assert Owners([tree / "study" / "HA" / "002"]).of(tree / "study" / "HA" / "002" / "Test5_Trial1.csv").subject \
        == "HA-002"


def test_files_sharing_a_name_get_their_paths(tree):
    names = unique_names(sorted(tree.joinpath("study").rglob("*.csv")))
    assert sorted(names.values()) == ["HA/001/Test5_Trial1", "HA/002/Test5_Trial1", "MS/001/Test5_Trial1"]


def test_read_recordings_carries_subject_and_source(tree):
    recs = read_recordings([tree / "study", tree / "named"])
    subjects = {r.meta["name"]: (r.meta["subject"], r.meta["subject_from"]) for r in recs}
    assert subjects["HA/002/Test5_Trial1"][0] == "HA-002" and subjects["S02R02"][0] == "S02"
    assert subjects["lone"] == ("lone", FROM_FILE)
    assert len({s for s, _ in subjects.values()}) == 6


def test_evaluate_counts_people_and_says_where_names_came_from(tree, capsys):
    assert toolkit(["evaluate", str(tree / "study"), str(tree / "named"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "7 recordings of 6 subjects" in out
    assert "3 from folders named in participant_metadata.json" in out and "1 named by nothing but the file" in out


def test_score_counts_people_with_subject_from(tree, tmp_path):
    pytest.importorskip("pyarrow")
    bundle = make_bundle(tmp_path / "bundle")
    out = tmp_path / "out"
    assert toolkit(["score", str(tree / "study"), str(tree / "kaggle"), str(tree / "named"), "--bundle",
                    str(bundle), "--out", str(out), "--jobs", "1", "--quiet"]) == 0
    with open(out / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_subject = {r["subject"]: r["subject_from"] for r in rows}
    assert sorted(by_subject) == ["HA-001", "HA-002", "K07", "MS-001", "S02", "lone", "pt6"]
    assert by_subject["lone"] == FROM_FILE and "tdcsfog_metadata.csv" in by_subject["K07"]
    with open(out / "recordings.csv", newline="") as fh:
        names = sorted(r["recording"] for r in csv.DictReader(fh))
    assert "HA/001/Test5_Trial1" in names and "MS/001/Test5_Trial1" in names


def test_score_of_daphnet_and_mobgap_counts_their_people(tmp_path, capsys):
    pytest.importorskip("pyarrow")
    daphnet, mobgap = shared_path("data", "daphnet"), shared_path("data", "mobgap-walking")
    folder = tmp_path / "daphnet"
    folder.mkdir()
    for name in ("S02R01.txt", "S02R02.txt"):         # one person in two recordings
        (folder / name).symlink_to(daphnet / name)
    bundle = make_bundle(tmp_path / "bundle")
    assert toolkit(["score", str(folder), str(mobgap), "--bundle", str(bundle), "--out", str(tmp_path / "out"),
                    "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "11 recordings of 4 subjects" in out
    with open(tmp_path / "out" / "summary.csv", newline="") as fh:
        assert sorted({r["subject"] for r in csv.DictReader(fh)}) == ["HA-001", "HA-002", "MS-001", "S02"]


class RecordedBar:
    """Stands in for the tqdm bar: keeps (scored, total) after every change."""
    disable = False

    def __init__(self, total, *args, **kw):
        self.total, self.n, self.seen = total, 0.0, []

    def update(self, n=1):
        self.n += n
        self.seen.append((self.n, self.total))

    def set_postfix_str(self, *a, **kw):
        pass

    def write(self, *a, **kw):
        pass

    def close(self):
        pass


@pytest.mark.parametrize("jobs", [1, 2])
def test_score_progress_never_passes_its_total(tmp_path, monkeypatch, jobs):
    """Recordings that begin with walking (long rows of floats) and then lie still (short "1,0,0" rows: the sensor on
    a table): the estimate from the first 64 KiB's bytes per row is several times short, so a fixed total would end
    far past 100 %."""
    from toolkit.score import api

    folder = tmp_path / "cohort"
    folder.mkdir()
    lengths = []
    for k in range(2):
        rec = _walk(240 + 60 * k, seed=k)
        rec.acc[2000:] = np.round(rec.acc[2000:])        # ~60-byte rows, then ~12-byte "t,1,0,0" rows
        write_recording(rec, folder / f"r{k}.csv", "test")
        lengths.append(rec.duration_s)
    bundle, bars = make_bundle(tmp_path / "bundle"), []
    monkeypatch.setattr(api.progress, "bar", lambda total, *a, **kw: bars.append(RecordedBar(total)) or bars[-1])
    result = api.score_cohort([folder], bundle, jobs=jobs, progress=True)
    assert len(result.recordings) == 2 and len(bars) == 1
    seen = bars[0].seen
    assert seen, "the bar never moved"
    assert all(n <= total + 1e-9 for n, total in seen), max(n / total for n, total in seen)
    final_n, final_total = seen[-1]
    assert final_n == pytest.approx(sum(lengths) / 3600, abs=1e-4)
    assert final_total == pytest.approx(sum(lengths) / 3600, abs=1e-4)
