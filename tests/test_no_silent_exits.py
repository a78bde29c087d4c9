"""No silent exits (issue 27): what would have ended with exit 0 and a useless result is refused before work starts,
or ends with a named warning, each saying the fix:
- `--n-patches` on a preset with shipped weights (a bundle with random weights) and input-spec flags on trained
  weights, unless `--untrained`;
- `--precision int8` (or fp16) where that graph would not run (fp32 scored under an int8 label);
- a training validation split whose subjects never froze ("best validation mAP None", an empty curve);
- `toolkit score` without pyarrow or matplotlib (no Parquet, no PNG).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from deploy.recording import Recording, write_recording
from tests.helpers_bundle import make_bundle
from toolkit.cli import main as toolkit

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cpu_bundle(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("cpu") / "bundle")     # target cpu, fp32 only


def _walk(minutes: float, rate: float = 100.0, freeze: tuple[float, float] | None = None, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = int(minutes * 60 * rate)
    t = np.arange(n) / rate
    acc = np.column_stack([-1.0 + 0.3 * np.sin(2 * np.pi * 1.8 * t), rng.normal(0, 0.1, (n, 2))])
    labels = np.zeros((n, 3))
    if freeze:
        labels[int(freeze[0] * rate):int(freeze[1] * rate), 0] = 1.0
    return Recording(acc, rate, "g", labels=labels, mask=np.ones(n, bool))


def test_n_patches_on_shipped_weights_is_refused_before_work(tmp_path, capsys):
    out = tmp_path / "bundle"
    assert toolkit(["export", "--model", "fog-small", "--n-patches", "64", "--target", "cpu", "--out", str(out),
                    "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "shipped weights are for n_patches=" in err and "--untrained" in err and "--weights" in err
    assert not out.exists()


def test_input_flags_may_not_change_trained_weights(tmp_path, capsys):
    assert toolkit(["export", "--model", "fog-small", "--rate-hz", "50", "--target", "cpu", "--out",
                    str(tmp_path / "b"), "--quiet"]) == 2
    assert "rate_hz 64 -> 50.0" in capsys.readouterr().err


def test_untrained_says_it_and_keeps_no_shipped_weights():
    pytest.importorskip("torch")
    from toolkit.export.source import resolve
    source = resolve("fog-small", n_patches=16, untrained=True)
    assert source.weights_sha256 is None and source.preprocess["n_patches"] == 16
    assert any(note.startswith("random initial weights: asked for (--untrained)") for note in source.notes)


@pytest.mark.parametrize("precision, said", [("int8", "the bundle carries no int8 graph (it has fp32)"),
                                             ("fp16", "onnxruntime on a CPU has no fp16 kernels")])
def test_evaluate_a_precision_that_would_not_run_is_refused(cpu_bundle, capsys, precision, said):
    assert toolkit(["evaluate", "--synthetic", "1", "--synthetic-minutes", "0.5", "--bundle", str(cpu_bundle),
                    "--precision", precision, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert said in err and "its fp32 graph would run instead" in err


def test_score_a_precision_that_would_not_run_is_refused_before_scoring(cpu_bundle, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    write_recording(_walk(0.5), data / "a.csv", "test")
    out = tmp_path / "out"
    assert toolkit(["score", str(data), "--bundle", str(cpu_bundle), "--out", str(out), "--precision", "int8",
                    "--quiet"]) == 2
    assert "no int8 graph" in capsys.readouterr().err and not (out / "parts").exists()


def test_a_validation_split_that_never_froze_is_refused_before_training(tmp_path, capsys):
    pytest.importorskip("torch")
    data = tmp_path / "data"
    data.mkdir()
    for name, freeze in (("a", (10.0, 25.0)), ("b", None), ("c", (5.0, 12.0))):
        rec = _walk(0.5, rate=128.0, freeze=freeze, seed=len(name))
        rec.acc *= 9.80665
        write_recording(Recording(rec.acc, 128.0, "m/s^2", labels=rec.labels), data / f"{name}.csv", "tdcsfog")
    out = tmp_path / "run"
    assert toolkit(["train", str(data), "--val-subjects", "b", "--epochs", "1", "--steps", "1", "--out", str(out),
                    "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "validation subjects ['b'] never froze" in err and "--val-subjects (here: a, c)" in err
    assert not (out / "best.pt").exists() and not (out / "model.pt").exists()


def test_score_without_pyarrow_or_matplotlib_names_what_was_not_written(cpu_bundle, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_recording(_walk(0.5), data / "a.csv", "test")
    code = textwrap.dedent(f'''
        import sys
        sys.modules["pyarrow"] = sys.modules["matplotlib"] = None       # neither is installed
        from toolkit.cli import main
        sys.exit(main(["score", {str(data)!r}, "--bundle", {str(cpu_bundle)!r}, "--out", {str(tmp_path / "out")!r},
                       "--jobs", "1", "--quiet"]))
    ''')
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-1500:]
    assert "toolkit score: warning: no Parquet tables written" in done.stderr
    assert "toolkit score: warning: no fog_minutes_per_day.png written" in done.stderr
    assert done.stderr.count("fog-edge-toolkit[score]") == 2
    assert (tmp_path / "out" / "summary.csv").is_file() and not (tmp_path / "out" / "summary.parquet").exists()
