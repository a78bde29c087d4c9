"""evaluate says which figures are in-sample (issue 27): `toolkit train` keeps each training recording's fingerprint
(name, subject, content sha256) beside its checkpoint, export carries it into the manifest (model.trained_on), and
`toolkit evaluate` marks the recordings the model was trained on (by content: a renamed copy is still in-sample) and
the other recordings of people it was trained on."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from toolkit.cli import main as toolkit

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(a folder of 3 synthetic subjects' recordings, the run folder of a 1-step training on two of them)."""
    root = tmp_path_factory.mktemp("insample")
    data = root / "data"
    assert toolkit(["synth", "--subjects", "3", "--minutes", "2", "--seed", "5", "--out-dir", str(data)]) == 0
    with open(data / "metadata.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    froze = max(rows, key=lambda r: float(r["FrozenFraction"]))
    assert float(froze["FrozenFraction"]) > 0
    run = root / "run"
    torch.manual_seed(0)
    assert toolkit(["train", str(data), "--val-subjects", froze["Subject"], "--epochs", "1", "--steps", "1",
                    "--batch-size", "4", "--out", str(run), "--quiet"]) == 0
    return data, run


def test_training_keeps_each_recordings_fingerprint(trained):
    data, run = trained
    info = json.loads((run / "model.json").read_text())
    prints = info["train_data"]["fingerprints"]
    assert len(prints) == 2 and all(len(p["sha256"]) == 64 and p["subject"] for p in prints)


def test_evaluate_marks_the_training_recordings_and_their_people(trained, tmp_path, capsys):
    data, run = trained
    info = json.loads((run / "model.json").read_text())
    first = info["train_data"]["fingerprints"][0]["name"]
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(data / f"{first}.csv", other / "renamed.csv")        # same bytes, another name
    assert toolkit(["evaluate", str(data), str(other), "--model", str(run / "model.pt"), "--json-out",
                    str(tmp_path / "eval.json"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "in-sample: 3 of 4 recordings are ones the model was trained on" in out
    used = {r["name"]: r["in_sample"] for r in json.loads((tmp_path / "eval.json").read_text())["recordings_used"]}
    assert used["renamed"] == "recording" and list(used.values()).count(None) == 1


def test_the_bundle_carries_what_it_was_trained_on(trained, tmp_path, capsys):
    data, run = trained
    out = tmp_path / "bundle"
    assert toolkit(["export", "--model", str(run / "model.pt"), "--target", "cpu", "--out", str(out),
                    "--verify-windows", "4", "--no-fidelity", "--quiet"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["model"]["trained_on"]["recordings"]) == 2
    capsys.readouterr()
    assert toolkit(["evaluate", str(data), "--bundle", str(out), "--quiet"]) == 0
    assert "in-sample: 2 of 3 recordings are ones the model was trained on" in capsys.readouterr().out
