"""`toolkit evaluate`: the baseline table and JSON, a torch model through the registry, clear bundle errors."""
from __future__ import annotations

import json
import sys
import types

import pytest

from toolkit.cli import main


def test_baseline_on_synthetic_json(capsys):
    assert main(["evaluate", "--synthetic", "2", "--minutes", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)  # strict JSON: NaN must not appear
    (fi,) = out["results"]
    assert fi["name"].startswith("freeze index") and 0 < fi["ap"]["mean"] <= 1
    assert fi["any_fog"]["episodes_true"] > 0 and fi["any_fog"]["hours"] == pytest.approx(4 / 60)


def test_files_and_folders_table(tmp_path, capsys):
    from deploy.synth import synth_dataset
    synth_dataset(tmp_path, subjects=2, minutes=1, seed=3, layout="defog")
    assert main(["evaluate", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 recordings" in out and "freeze index" in out and "mAP" in out and "AUROC" in out


def test_torch_model_through_the_registry(monkeypatch, capsys):
    torch = pytest.importorskip("torch")

    class PerPatch(torch.nn.Module):  # (B, patch*3, n_patches) -> logits (B, n_patches, 3)
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(24, 3)

        def forward(self, x):
            return self.lin(x.transpose(1, 2))

    preset = types.SimpleNamespace(preprocess={"rate_hz": 64, "units": "g", "patch": 8, "n_patches": 16,
                                               "normalization": "window", "scale": 1.0, "layout": "BCT"},
                                   events={}, classes=("StartHesitation", "Turn", "Walking"))
    fake = types.SimpleNamespace(list_presets=lambda: ["tiny"], create_model=lambda name, pretrained=False: PerPatch(),
                                 get_preset=lambda name: preset, pretrained_path=lambda name: None)
    monkeypatch.setitem(sys.modules, "models", fake)
    assert main(["evaluate", "--synthetic", "1", "--minutes", "1", "--model", "tiny", "--json"]) == 0
    names = [r["name"] for r in json.loads(capsys.readouterr().out)["results"]]
    assert names[0] == "tiny (untrained)" and names[1].startswith("freeze index")


def test_a_preset_is_scored_with_its_shipped_weights_and_the_bundle_event_settings(capsys):
    pytest.importorskip("torch")
    import models
    from deploy.events import DEFAULT_SETTINGS

    if models.pretrained_path("fog-small") is None:
        pytest.skip("no shipped weights for fog-small in this checkout")
    assert main(["evaluate", "--synthetic", "1", "--minutes", "1", "--model", "fog-small", "--json"]) == 0
    model, baseline = json.loads(capsys.readouterr().out)["results"]
    assert model["name"] == "fog-small (shipped weights)"
    # the default events are the bundle defaults: a stricter minimum duration can only find fewer episodes
    assert main(["evaluate", "--synthetic", "1", "--minutes", "1", "--model", "fog-small", "--json",
                 "--min-duration-s", str(DEFAULT_SETTINGS["min_duration_s"] + 3)]) == 0
    strict = json.loads(capsys.readouterr().out)["results"][0]
    assert strict["any_fog"]["episodes_detected"] <= model["any_fog"]["episodes_detected"]
    assert strict["ap"] == model["ap"]                    # thresholds never change the per-sample scores


def test_the_freeze_index_keeps_its_own_threshold_whatever_the_models_event_thresholds(capsys):
    """A bundle may call FOG at 0.9; the baseline beside it stays Bachlin's FI > 1.5 (probability 0.5)."""
    runs = []
    for flags in ([], ["--on", "0.9", "--off", "0.8"]):
        assert main(["evaluate", "--synthetic", "1", "--minutes", "2", "--json", *flags]) == 0
        out = json.loads(capsys.readouterr().out)
        runs.append(out["results"][-1]["any_fog"])
    assert runs[0]["episodes_true"] > 0 and runs[0] == runs[1]


def test_bad_inputs_are_clear(tmp_path, capsys):
    assert main(["evaluate", "--synthetic", "1", "--minutes", "0.5", "--bundle", str(tmp_path)]) == 2
    assert "manifest.json" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nope.csv")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", "x.pt", "--synthetic", "1"]) == 2


def test_old_event_flag_spellings_still_work(capsys):
    assert main(["evaluate", "--synthetic", "1", "--minutes", "1", "--json", "--min-duration", "4",
                 "--smoothing", "1", "--refractory", "3"]) == 0
    settings = json.loads(capsys.readouterr().out)["events"]
    assert (settings["min_duration_s"], settings["smoothing_s"], settings["refractory_s"]) == (4, 1, 3)


def test_unlabelled_recordings_are_scored_as_fog_free(tmp_path, capsys):
    from deploy.recording import write_recording
    from deploy.synth import synth_recording
    rec = synth_recording(2.0, seed=5, rate_hz=100.0)
    rec.labels = None
    write_recording(rec, tmp_path / "walk.npz", "npz")
    assert main(["evaluate", str(tmp_path), "--json"]) == 0
    (fi,) = json.loads(capsys.readouterr().out)["results"]
    free = fi["unlabelled"]
    assert free["recordings"] == 1 and free["hours"] == pytest.approx(2 / 60)
    assert free["false_alarms_per_hour"] == pytest.approx(free["false_alarms"] / free["hours"])
    assert "any_fog" not in fi and "ap" not in fi
    assert main(["evaluate", str(tmp_path)]) == 0
    assert "declared FOG-free" in capsys.readouterr().out


def test_plots_are_written_and_open(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from PIL import Image
    assert main(["evaluate", "--synthetic", "1", "--minutes", "1", "--plot", str(tmp_path)]) == 0
    png, chart = sorted(tmp_path.glob("*.png"))              # the recording, and the operating points
    assert chart.name == "operating-points.png"
    for path in (png, chart):
        with Image.open(path) as image:
            width, height = image.size
        assert width > 600 and height > 300


def test_plot_draws_the_scorers_any_fog_rule(tmp_path, monkeypatch):
    """A softmax model's any-FOG is the sum of its event classes (the manifest's rule): the plot must draw and
    detect on that sum, not on the largest class."""
    pytest.importorskip("matplotlib")
    import numpy as np

    from deploy.contract import EVENT_DEFAULTS
    from deploy.synth import synth_recording
    from toolkit import plots
    rec = synth_recording(minutes=0.5, seed=3)
    probs = np.full((rec.n_samples, 3), 0.3)
    drawn = []
    real = plots.any_fog_events
    monkeypatch.setattr(plots, "any_fog_events", lambda p, *a: drawn.append(np.array(p)) or real(p, *a))
    plots.plot_recordings(tmp_path, [rec], {"model": [probs]}, dict(EVENT_DEFAULTS), {"model": "sum"})
    plots.plot_recordings(tmp_path, [rec], {"model": [probs]}, dict(EVENT_DEFAULTS))
    assert np.allclose(drawn[0], 0.9) and np.allclose(drawn[1], 0.3)


def test_the_episode_table_finds_what_the_pooled_figures_count(tmp_path, capsys):
    # --episodes: one row per labelled episode and scorer; the rows marked found are the episode sensitivity's
    # numerator, scorer by scorer, and a found episode's peak reached the scorer's on-threshold or ran on from one
    import csv
    pytest.importorskip("torch")
    table = tmp_path / "episodes.csv"
    table.write_text("an old table, replaced\n")
    assert main(["evaluate", "--synthetic", "4", "--minutes", "3", "--model", "fog-small", "--json",
                 "--episodes", str(table)]) == 0     # 14 episodes: the model finds 4, the freeze index 8
    results = json.loads(capsys.readouterr().out)["results"]
    rows = list(csv.DictReader(table.open()))
    assert {r["scorer"] for r in rows} == {f["name"] for f in results}
    for figures in results:
        mine = [r for r in rows if r["scorer"] == figures["name"]]
        pooled = figures["any_fog"]
        assert len(mine) == pooled["episodes_true"] > 0 and 0 < pooled["sensitivity"] < 1
        assert sum(r["found"] == "True" for r in mine) == round(pooled["sensitivity"] * pooled["episodes_true"])
        assert all(0.0 <= float(r["rank"]) <= 1.0 and float(r["duration_s"]) > 0 for r in mine)


def test_output_paths_are_checked_before_any_work(tmp_path, capsys, monkeypatch):
    # a folder given as an output file is refused up front, naming the flag, instead of a traceback after the whole
    # evaluation; a missing folder is made
    import toolkit.commands.evaluate as command

    def no_work(*args, **kwargs):
        raise AssertionError("evaluated before the output paths were checked")
    monkeypatch.setattr(command, "evaluate", no_work)
    for flag in ("--episodes", "--json-out"):
        assert main(["evaluate", "--synthetic", "1", "--minutes", "0.5", flag, str(tmp_path)]) == 2
        assert f"{flag} {tmp_path} is a folder" in capsys.readouterr().err
    (tmp_path / "a-file").write_text("")
    assert main(["evaluate", "--synthetic", "1", "--minutes", "0.5", "--json-out",
                 str(tmp_path / "a-file" / "e.json")]) == 2
    assert "--json-out" in capsys.readouterr().err
    monkeypatch.undo()
    out = tmp_path / "new" / "deeper"
    assert main(["evaluate", "--synthetic", "1", "--minutes", "0.5", "--quiet", "--json-out", str(out / "e.json"),
                 "--episodes", str(out / "e.csv")]) == 0
    assert (out / "e.json").is_file() and (out / "e.csv").is_file()
