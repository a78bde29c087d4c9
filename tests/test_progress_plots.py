"""Progress bars (tqdm: totals, rate, ETA; quiet off a terminal or with --quiet), the random-weights warning at the
start of an export and in inspect and the daemon's log, and the plots of train, calibrate and bench, each rendered
and opened."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402

from calibration import progress as bars  # noqa: E402
from toolkit.cli import main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


class Terminal(io.StringIO):
    def isatty(self):
        return True


def png_size(path) -> tuple[int, int]:
    image = mpimg.imread(str(path))
    return image.shape[1], image.shape[0]


def test_bars_show_total_rate_and_eta_on_a_terminal_only(monkeypatch):
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    with bars.bar(40, "calibrate", unit="window") as bar:
        for _ in range(4):
            bar.update(10)
    text = screen.getvalue()
    assert "calibrate" in text and "40/40" in text and "window/s" in text and "<" in text  # elapsed<remaining
    quiet = Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    with bars.bar(40, "calibrate", unit="window", enabled=False) as bar:   # --quiet
        bar.update(40)
    pipe = io.StringIO()                                                   # not a terminal: a log, a CI run
    monkeypatch.setattr(sys, "stderr", pipe)
    with bars.bar(40, "calibrate", unit="window") as bar:
        bar.update(40)
    assert quiet.getvalue() == "" and pipe.getvalue() == ""


def test_step_bar_names_each_step_with_its_time(monkeypatch):
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    steps = bars.StepBar(2, "export")
    steps.start("float ONNX")
    steps.done("12 nodes")
    steps.start("manifest")
    steps.done()
    steps.close()
    text = screen.getvalue()
    assert "[export 1/2] float ONNX: 12 nodes" in text and "[export 2/2] manifest" in text and "2/2 steps" in text


def _calibrated_fog_small(windows=16):
    from calibration import ptq
    from calibration.checkpoint import load_model
    from calibration.data import WindowReader, synthetic_recordings
    from models import get_preset
    from models.qat import to_qat

    model, preset, _ = load_model("fog-small")
    spec = get_preset(preset).preprocess
    qat = to_qat(model, batch_size=8, seq_len=spec["n_patches"])
    reader = WindowReader(synthetic_recordings(1, seed=2, minutes=1), spec, limit=windows, batch_size=8)
    return ptq.calibrate(qat, reader, "mse", progress=True)


@pytest.mark.slow
def test_calibration_counts_windows_of_the_total_and_its_histograms_show_the_chosen_range(tmp_path, monkeypatch):
    from toolkit.plots import calibration_figure, plot_calibration

    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    cache = _calibrated_fog_small(16)
    assert "calibrate" in screen.getvalue() and "16/16" in screen.getvalue()
    assert cache.data["windows"] == 16
    assert cache.histograms and set(cache.histograms) <= set(cache.amax)
    names = sorted(cache.histograms)[:5]
    fig = calibration_figure(cache.histograms, "mse", names)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 5
    for ax, name in zip(visible, names):
        amax = cache.histograms[name][2]
        assert pytest.approx(amax, rel=1e-6) == float(cache.amax[name])   # the range that ships
        assert any(np.allclose(line.get_xdata(), [amax, amax]) for line in ax.get_lines())
        assert ax.get_yscale() == "log" and ax.get_xlabel() == "|activation|"
    pages = plot_calibration(tmp_path, cache.histograms, "mse", per_page=12)
    assert len(pages) == -(-len(cache.histograms) // 12)
    width, height = png_size(pages[0])
    assert width >= 600 and height >= 200


@pytest.mark.slow
def test_calibrate_and_train_write_their_plots_from_the_command_line(tmp_path, capsys):
    assert main(["calibrate", "--synthetic", "1", "--synthetic-minutes", "1", "--windows", "16", "--batch-size", "8",
                 "--out", str(tmp_path / "cal.json"), "--plot", str(tmp_path / "cal")]) == 0
    pages = sorted((tmp_path / "cal").glob("calibration-*.png"))
    assert pages and all(png_size(p)[0] > 300 for p in pages)
    assert main(["train", "--synthetic", "2", "--synthetic-minutes", "1", "--epochs", "2", "--steps", "2",
                 "--batch-size", "4", "--patience", "5", "--out", str(tmp_path / "run"), "--plot",
                 str(tmp_path / "run"), "--quiet"]) == 0
    assert "training curves in" in capsys.readouterr().out
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    width, height = png_size(tmp_path / "run" / "training.png")
    assert width == 800 and height == 288                          # 10 x 3.6 in at 80 dpi

    from toolkit.plots import training_figure
    fig = training_figure(history)
    loss_ax, val_ax = fig.axes
    assert list(loss_ax.get_lines()[0].get_xdata()) == [1, 2]
    assert list(loss_ax.get_lines()[0].get_ydata()) == [row["train_loss"] for row in history]
    assert loss_ax.get_ylabel() == "loss" and val_ax.get_ylabel() == "validation mAP"


def test_bench_sweep_draws_the_real_time_budget(tmp_path):
    from toolkit.bench.report import plot_sweep, sweep_figure

    rows = [{"batch": b, "median_ms": 2.0 * b, "cpu_median_ms": 2.0 * b, "clock": "wall",
             "windows_per_s": 500.0} for b in (1, 4, 16)]
    report = {"model": {"name": "m", "hop_s": 0.25, "window_s": 16.0},
              "machine": {"class": "x", "cpu": "y", "threads": 1},
              "backends": {"onnxruntime-fp32": {"sweep": rows}}}
    fig = sweep_figure(report)
    rate_ax, latency_ax = fig.axes
    budget = [ln for ln in latency_ax.get_lines() if "real-time budget" in str(ln.get_label())]
    assert len(budget) == 1 and np.allclose(budget[0].get_ydata(), [250.0, 250.0])   # 0.25 s hop = 250 ms
    rate_budget = [ln for ln in rate_ax.get_lines() if "real-time budget" in str(ln.get_label())]
    assert np.allclose(rate_budget[0].get_ydata(), [4.0, 4.0])                     # 1 / 0.25 s windows/s
    path = plot_sweep(report, tmp_path / "sweep.png")
    assert png_size(path) == (1000, 400)


@pytest.mark.slow
def test_random_weights_are_said_at_the_start_and_shown_by_inspect_and_the_daemon(tmp_path, capsys):
    from calibration.data import synthetic_recordings
    from deploy.recording import write_recording

    out = tmp_path / "gru"
    assert main(["export", "--model", "fog-gru", "--target", "cpu", "--out", str(out), "--verify-windows", "2",
                 "--no-fidelity", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("export: warning: random initial weights")
    assert "note: random initial weights" in captured.out                      # and in the summary, as before
    assert main(["inspect", str(out)]) == 0
    assert "note       random initial weights" in capsys.readouterr().out
    rec = tmp_path / "walk.npz"
    write_recording(synthetic_recordings(1, seed=4, minutes=0.5)[0], rec, "npz")
    result = subprocess.run([sys.executable, "-m", "deploy", str(out), "--replay", str(rec)], capture_output=True,
                            text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "bundle note: random initial weights" in result.stderr
