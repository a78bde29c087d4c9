"""Both Stanford forms (the 128 Hz workbook and the 64 Hz trial archive) through every command that reads
recordings: evaluate, train, calibrate, export --calib-data, score and the daemon's replay. Files are written here
(small, from the synthetic generator); the real ones in ../shared are read where present."""
from __future__ import annotations

import csv
import json

import pytest

from deploy.config import build_config
from deploy.daemon import run as run_daemon
from deploy.recording import read_recording, write_recording
from tests.conftest import shared_path
from tests.helpers_bundle import make_bundle
from tests.stanford_files import write_trial, write_workbook
from toolkit.cli import main as toolkit

pytest.importorskip("openpyxl")

BOOK, TRIAL = "pt7_visit_1_tbc_walklr_0_trial_1", "pt8_visit_2_tbc_walklr_1_trial_3"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("stanford")
    write_workbook(root / f"{BOOK}.xlsx", seconds=40, seed=7)
    write_trial(root / f"{TRIAL}.npz", seconds=40, seed=6)
    return root


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    # a low threshold, so the stand-in model's events are there to compare
    return make_bundle(tmp_path_factory.mktemp("bundle") / "b", events={"on": 0.3, "off": 0.2})


def _evaluate_json(args, capsys) -> dict:
    assert toolkit(["evaluate", *map(str, args), "--json", "--quiet"]) == 0
    return json.loads(capsys.readouterr().out)


def test_evaluate_scores_each_form_as_the_same_samples_written_in_the_projects_own_formats(folder, bundle_dir,
                                                                                           tmp_path, capsys):
    """A workbook scores exactly as its samples written as a tdcsfog CSV (128 Hz, m/s^2), a trial as the project's
    npz: the new readers hand evaluate the same recording a proven reader does."""
    got = _evaluate_json([folder, "--bundle", bundle_dir], capsys)
    assert got["recordings"] == 2 and got["hours"] == pytest.approx(80 / 3600)
    book = read_recording(folder / f"{BOOK}.xlsx")
    write_recording(book, tmp_path / f"{BOOK}.csv", "tdcsfog")
    write_recording(read_recording(folder / f"{TRIAL}.npz"), tmp_path / f"{TRIAL}.npz", "npz")
    same = _evaluate_json([tmp_path, "--bundle", bundle_dir], capsys)
    for mine, theirs in zip(got["results"], same["results"]):
        for a, b in zip(mine["per_recording"], theirs["per_recording"]):
            assert a["name"] == b["name"] and a["event_metrics"]["episodes_true"] > 0
            for key in ("any_fog_ap", "events", "percent_time_called_fog", "event_metrics"):
                assert a[key] == b[key], (a["name"], key)


def test_train_and_calibrate_read_both_forms(folder, tmp_path):
    run = tmp_path / "run"
    assert toolkit(["train", str(folder), "--out", str(run), "--epochs", "1", "--steps", "1", "--batch-size", "4",
                    "--threads", "1", "--val-subjects", "pt8", "--quiet"]) == 0
    info = json.loads((run / "model.json").read_text())
    assert info["train_data"]["subjects"] == ["pt7"] and info["val_data"]["subjects"] == ["pt8"]
    cache = tmp_path / "cal.json"
    assert toolkit(["calibrate", str(folder), "--layout", "stanford", "--windows", "8", "--batch-size", "8",
                    "--threads", "1", "--quiet", "--out", str(cache)]) == 0
    assert set(json.loads(cache.read_text())["data"]["subjects"]) == {"pt7", "pt8"}


@pytest.mark.slow
def test_export_calibrates_on_both_forms(folder, tmp_path):
    out = tmp_path / "bundle"
    assert toolkit(["export", "--target", "jetson", "--out", str(out), "--calib-data", str(folder / f"{BOOK}.xlsx"),
                    str(folder / f"{TRIAL}.npz"), "--quiet"]) == 0
    calibration = json.loads((out / "manifest.json").read_text())["export"]["calibration"]
    assert calibration["source"] == "export-calibrated" and set(calibration["data"]["subjects"]) == {"pt7", "pt8"}


def _daemon_events(bundle_dir, path, out) -> list[tuple]:
    config = build_config(None, [{"bundle": str(bundle_dir), "threads": 1, "backend": "onnxruntime",
                                  "source": {"kind": "replay", "path": str(path)},
                                  "sinks": [{"kind": "jsonl", "path": str(out)}], "log": {"status_interval_s": 0}}])
    counters = run_daemon(config)
    assert counters["balanced"] and counters["resets"] == 0 and counters["interpolated"] == 0
    messages = [json.loads(line) for line in out.read_text().splitlines()]
    return sorted((m["class"], m["onset_s"], m["offset_s"], m["detect_s"], m["peak"])
                  for m in messages if m["type"] == "event")


def test_score_finds_both_forms_and_its_events_are_the_daemons_replay(folder, bundle_dir, tmp_path):
    pytest.importorskip("pyarrow")
    out = tmp_path / "score"
    assert toolkit(["score", str(folder), "--bundle", str(bundle_dir), "--out", str(out), "--jobs", "1",
                    "--quiet"]) == 0
    with open(out / "events.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    total = 0
    for name, suffix in ((BOOK, ".xlsx"), (TRIAL, ".npz")):
        expected = _daemon_events(bundle_dir, folder / f"{name}{suffix}", tmp_path / f"{name}.jsonl")
        got = sorted((r["class"], *(round(float(r[k]), 4) for k in ("onset_s", "offset_s", "detect_s", "peak")))
                     for r in rows if r["recording"] == name)
        assert got == expected, name
        total += len(expected)
    assert total > 0, "the stand-in bundle should fire on these recordings"


@pytest.mark.shared
def test_the_daemon_replays_a_shared_workbook_upside_down_as_it_is(bundle_dir, tmp_path):
    path = shared_path("data", "stanford-imu-fog", "pt6_visit_19_tbc_walklr_1_trial_1.xlsx")
    _daemon_events(bundle_dir, path, tmp_path / "replay.jsonl")     # counters balanced, no resets: the clock is read
