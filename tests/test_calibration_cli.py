"""`toolkit calibrate` and `toolkit train` from the command line: help, a real small run, clear errors."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from calibration.checkpoint import DEFAULT_PRESET  # noqa: E402
from toolkit.cli import main  # noqa: E402


@pytest.mark.parametrize("command, phrase", [("train", "QAT fine-tuning"), ("calibrate", "entropy")])
def test_help_explains(command, phrase, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert phrase in out and "--synthetic" in out and "--seed" in out


def test_calibrate_writes_a_cache_and_an_agreement_report(tmp_path, capsys):
    from calibration.cache import CalibrationCache
    from models import create_model
    from models.qat import quantizers, to_qat

    cache_path, report_path = tmp_path / "cal.json", tmp_path / "ptq.json"
    rc = main(["calibrate", "--synthetic", "2", "--synthetic-minutes", "1", "--windows", "32", "--batch-size", "16",
               "--method", "max", "--threads", "1", "--quiet", "--out", str(cache_path), "--eval",
               "--eval-windows", "32", "--report", str(report_path)])
    assert rc == 0
    cache = CalibrationCache.load(cache_path)
    assert set(cache.amax) == set(quantizers(to_qat(create_model(DEFAULT_PRESET), 16, 128)))
    assert cache.data["windows"] == 32 and cache.preset == DEFAULT_PRESET
    report = json.loads(report_path.read_text())
    assert report["windows"] == 32 and 0 <= report["mean_abs_prob_error"] <= report["max_abs_prob_error"]
    assert "probability error" in capsys.readouterr().out


def test_errors_are_one_line_and_say_what_to_do(tmp_path, capsys):
    assert main(["train", "--synthetic", "2", "--qat", "--out", str(tmp_path)]) == 2
    assert "give --weights" in capsys.readouterr().err   # --checkpoint: its old spelling, still accepted
    assert main(["calibrate", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "c.json")]) == 2
    err = capsys.readouterr().err
    assert "no such file" in err and "Traceback" not in err
