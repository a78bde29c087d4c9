"""`toolkit score` (issue 16): on a synthetic cohort (CSV, plus a Parquet copy) the events equal those of the daemon
replaying the same recordings, for the local runner and for Ray Data (a real local Ray instance with 2 CPUs; that
test skips only where ray cannot be imported). Also: resume by content hash, not-worn detection, day summary."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from deploy.config import build_config
from deploy.daemon import run as run_daemon
from deploy.errors import DataError
from deploy.recording import Recording, read_recording, write_recording
from tests.helpers_bundle import make_bundle
from toolkit.cli import main as toolkit

pytest.importorskip("pyarrow", reason="Parquet needs pyarrow (the `score` extra)")

SUBJECTS, MINUTES = 3, 3.0


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("bundle") / "b")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """`toolkit synth --subjects 3 --out-dir` (defog CSV, 100 Hz, g), and the same recordings as Parquet."""
    from toolkit.score.read import write_parquet
    root = tmp_path_factory.mktemp("cohort")
    assert toolkit(["synth", "--subjects", str(SUBJECTS), "--minutes", str(MINUTES), "--seed", "7",
                    "--out-dir", str(root / "csv")]) == 0
    (root / "parquet").mkdir()
    shutil.copy(root / "csv" / "metadata.csv", root / "parquet" / "metadata.csv")
    for f in sorted((root / "csv").glob("*.csv")):
        if f.name != "metadata.csv":
            write_parquet(read_recording(f), root / "parquet" / f"{f.stem}.parquet", row_group_rows=5000)
    return root


def _daemon_events(bundle_dir, path, tmp_path) -> list[tuple]:
    out = tmp_path / f"daemon-{Path(path).stem}.jsonl"
    config = build_config(None, [{"bundle": str(bundle_dir), "threads": 1, "backend": "onnxruntime",
                                  "source": {"kind": "replay", "path": str(path)},
                                  "sinks": [{"kind": "jsonl", "path": str(out)}], "log": {"status_interval_s": 0}}])
    counters = run_daemon(config)
    assert counters["balanced"]
    messages = [json.loads(line) for line in out.read_text().splitlines()]
    return sorted((m["class"], m["onset_s"], m["offset_s"], m["detect_s"], m["peak"])
                  for m in messages if m["type"] == "event")


def _events_csv(out: Path) -> dict[str, list[tuple]]:
    """events.csv per recording, rounded as the daemon's sink rounds (4 decimals)."""
    per = {}
    with open(out / "events.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            per.setdefault(row["recording"], []).append(
                (row["class"], *(round(float(row[k]), 4) for k in ("onset_s", "offset_s", "detect_s", "peak"))))
    return {k: sorted(v) for k, v in per.items()}


@pytest.fixture(scope="module")
def local_run(bundle_dir, cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "out"
    assert toolkit(["score", str(cohort / "csv"), str(cohort / "parquet"), "--bundle", str(bundle_dir),
                    "--out", str(out), "--jobs", "2", "--quiet"]) == 0
    return out


def test_local_runner_events_equal_the_daemon_replaying_each_recording(local_run, cohort, bundle_dir, tmp_path):
    got = _events_csv(local_run)
    recordings = sorted(f for f in (cohort / "csv").glob("*.csv") if f.name != "metadata.csv")
    assert len(recordings) == SUBJECTS
    total = 0
    for f in recordings:
        expected = _daemon_events(bundle_dir, f, tmp_path)
        # the CSV and the Parquet copy (read in row groups of 5000) give the daemon's events
        assert got.get(f"csv/{f.stem}", []) == expected
        assert got.get(f"parquet/{f.stem}", []) == expected
        total += len(expected)
    assert total > 0, "the stand-in bundle should fire on the synthetic cohort"
    # both copies are in the table, with the subject from metadata.csv
    with open(local_run / "events.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * total and {r["subject"] for r in rows} == {"s00", "s01", "s02"}
    for name in ("events.parquet", "summary.csv", "summary.parquet", "recordings.csv", "fog_minutes_per_day.png",
                 "run.json"):
        assert (local_run / name).is_file(), name
    import pyarrow.parquet as pq
    table = pq.read_table(local_run / "events.parquet")
    assert table.num_rows == 2 * total
    assert {"recording", "subject", "class", "onset_s", "offset_s", "duration_s", "peak"} <= set(table.column_names)


def test_summary_per_subject_and_day(local_run):
    with open(local_run / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["subject"] for r in rows] == ["s00", "s01", "s02"] and {r["day"] for r in rows} == {"1"}
    for r in rows:
        assert float(r["hours_recorded"]) == pytest.approx(2 * MINUTES / 60)   # the CSV and its Parquet copy
        assert float(r["hours_not_worn"]) == 0
        assert 0 <= float(r["fog_minutes"]) <= 2 * MINUTES and int(r["episodes"]) >= 0


def test_resume_skips_recordings_already_scored(local_run, cohort, bundle_dir, tmp_path):
    from toolkit.score import score_cohort
    out = tmp_path / "copy"
    shutil.copytree(local_run, out)
    before = (out / "events.csv").read_text()
    again = score_cohort([cohort / "csv", cohort / "parquet"], bundle_dir, out=out, jobs=1)
    assert (again.scored, again.resumed) == (0, 2 * SUBJECTS)
    assert (out / "events.csv").read_text() == before
    # a changed recording is scored again, the others are not
    changed = tmp_path / "changed"
    shutil.copytree(cohort / "csv", changed)
    rec = read_recording(changed / "s01r0.csv")
    rec.acc[:100] += 0.01
    write_recording(rec, changed / "s01r0.csv", "defog")
    third = score_cohort([changed, cohort / "parquet"], bundle_dir, out=out, jobs=1)
    assert (third.scored, third.resumed) == (1, 2 * SUBJECTS - 1)
    # other settings are another signature: everything is scored again
    fourth = score_cohort([cohort / "parquet"], bundle_dir, out=out, jobs=1, hop_s=0.25)
    assert fourth.scored == SUBJECTS


@pytest.mark.slow
def test_ray_runner_equals_local_runner(local_run, cohort, bundle_dir, tmp_path):
    pytest.importorskip("ray.data", reason="ray[data] is not installed (pip install 'fog-edge-toolkit[ray]')")
    from toolkit.score import score_cohort
    result = score_cohort([cohort / "csv", cohort / "parquet"], bundle_dir, runner="ray", jobs=2, out=tmp_path / "ray")
    assert result.scored == 2 * SUBJECTS
    for name in ("events.csv", "summary.csv"):
        assert (tmp_path / "ray" / name).read_text() == (local_run / name).read_text(), name


def test_not_worn_stretch_is_excluded_and_reported(bundle_dir, tmp_path):
    """Walking, 12 minutes of a sensor lying still on a table, walking: the still part is not scored."""
    from deploy.synth import synth_recording
    from toolkit.score import score_cohort
    walk = synth_recording(2.0, seed=11, rate_hz=100.0, units="g")
    rng = np.random.default_rng(0)
    table = np.array([0.02, -0.01, 0.99]) + rng.normal(0, 0.001, (12 * 60 * 100, 3))   # lying flat, 1 mg noise
    acc = np.concatenate([walk.acc, table, walk.acc])
    (tmp_path / "data").mkdir()
    write_recording(Recording(acc, 100.0, "g"), tmp_path / "data" / "table.npz", "npz")
    result = score_cohort([tmp_path / "data"], bundle_dir, out=tmp_path / "out", worn={"min_s": 300.0})
    (a, b), = result.recordings[0]["not_worn"]
    assert a == pytest.approx(120, abs=60) and b == pytest.approx(840, abs=60)
    assert all(e["offset_s"] <= a + 1 or e["onset_s"] >= b - 1 for e in result.events)
    day, = result.summary
    assert day["hours_not_worn"] == pytest.approx((b - a) / 3600)
    # with detection off the same stretch is scored like any other
    off = score_cohort([tmp_path / "data"], bundle_dir, worn={"min_s": 0})
    assert off.recordings[0]["not_worn"] == []


def test_parquet_reader(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from toolkit.score.read import RecordingFile, write_parquet
    rec = Recording(np.random.default_rng(0).normal(size=(12345, 3)) * 0.1 + [-1, 0, 0], 128.0, "g")
    write_parquet(rec, tmp_path / "r.parquet", row_group_rows=1000)
    reader = RecordingFile(tmp_path / "r.parquet", "x").open()
    assert (reader.rate_hz, reader.units, reader.n_samples) == (128.0, "g", 12345)
    assert np.array_equal(np.concatenate(list(reader.chunks(777))), rec.acc)
    # Kaggle's own files carry no rate or units: gravity ~1 means 100 Hz in g (as its test CSVs)
    pq.write_table(pa.table({"Time": np.arange(500), "AccV": np.full(500, -0.98), "AccML": np.zeros(500),
                             "AccAP": np.full(500, 0.1)}), tmp_path / "kaggle.parquet")
    kaggle = RecordingFile(tmp_path / "kaggle.parquet", "x").open()
    assert (kaggle.rate_hz, kaggle.units) == (100.0, "g")
    pq.write_table(pa.table({"Time": np.arange(5), "AccV": np.zeros(5)}), tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="missing columns"):
        RecordingFile(tmp_path / "bad.parquet", "x").open()


def test_days_follow_the_recording_start_time():
    from toolkit.score.report import summary_rows
    result = {"name": "r", "subject": "s", "visit": "1", "start_of_day_s": 23 * 3600.0, "duration_s": 2 * 3600.0,
              "not_worn": [[1800.0, 5400.0]],
              "events": [{"class": "Turn", "onset_s": 3540.0, "offset_s": 3660.0},     # 23:59 - 00:01
                         {"class": "Walking", "onset_s": 3600.0, "offset_s": 3630.0}]}  # inside the first: one episode
    day1, day2 = summary_rows([result])
    assert (day1["day"], day2["day"]) == (1, 2)
    assert day1["hours_recorded"] == pytest.approx(1.0) and day2["hours_recorded"] == pytest.approx(1.0)
    assert day1["hours_not_worn"] == pytest.approx(0.5) and day2["hours_not_worn"] == pytest.approx(0.5)
    assert (day1["episodes"], day2["episodes"]) == (1, 0)
    assert day1["fog_minutes"] == pytest.approx(1.0) and day2["fog_minutes"] == pytest.approx(1.0)
    assert day1["longest_s"] == pytest.approx(120.0)


def test_errors_are_clear(bundle_dir, tmp_path, capsys):
    assert toolkit(["score", str(tmp_path / "nothing"), "--bundle", str(bundle_dir), "--out", str(tmp_path)]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert toolkit(["score", str(tmp_path / "empty"), "--bundle", str(bundle_dir), "--out", str(tmp_path)]) == 2
    assert "no recordings found" in capsys.readouterr().err


def test_a_bad_recording_is_reported_and_the_rest_scored(bundle_dir, cohort, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(cohort / "csv", data)
    lines = (data / "s01r0.csv").read_text().splitlines()
    lines[10] = lines[10].replace(lines[10].split(",")[1], "oops", 1)
    (data / "s01r0.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    assert toolkit(["score", str(data), "--bundle", str(bundle_dir), "--out", str(out), "--jobs", "1",
                    "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "s01r0.csv" in err and "non-numeric cell 'oops'" in err and "row 11" in err
    assert "s01r0" in (out / "errors.csv").read_text()
    assert len(list((out / "parts").glob("*.json"))) == SUBJECTS - 1
    assert {r["recording"] for r in csv.DictReader(open(out / "events.csv"))} <= {"s00r0", "s02r0"}
