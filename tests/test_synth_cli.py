"""`toolkit synth`: one file in a Kaggle layout, or a dataset folder."""
from __future__ import annotations

from deploy.recording import read_recording
from toolkit.cli import main


def test_one_file_and_a_dataset(tmp_path, capsys):
    assert main(["synth", "--minutes", "0.5", "--seed", "2", "--layout", "tdcsfog", "--out",
                 str(tmp_path / "a.csv")]) == 0
    rec = read_recording(tmp_path / "a.csv")
    assert rec.meta["layout"] == "tdcsfog" and rec.n_samples == 128 * 30
    assert main(["synth", "--subjects", "2", "--minutes", "0.25", "--out-dir", str(tmp_path / "ds")]) == 0
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == ["metadata.csv", "s00r0.csv", "s01r0.csv",
                                                                    "subjects.json"]
    assert main(["synth", "--out", "x.csv", "--out-dir", "y"]) == 2
    assert "exactly one" in capsys.readouterr().err
