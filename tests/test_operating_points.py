"""Operating points (deploy.operating_points, `toolkit evaluate --at-fa-per-hour`): the sweep scores events exactly as
evaluate does at one threshold, the choice keeps to the asked rate, the command prints, writes and draws it."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from deploy import operating_points as op
from deploy.recording import write_recording
from deploy.scoring import freeze_index_probability
from deploy.synth import synth_recording
from tests.helpers_bundle import make_bundle
from toolkit.api.evaluate import evaluate
from toolkit.cli import main

# per-class thresholds, on off the grid: the sweep must read them as evaluate does (the least strict class)
EVENTS = {"on": {"StartHesitation": 0.41, "Turn": 0.37, "Walking": 0.5}, "off": {"StartHesitation": 0.3,
                                                                                 "Turn": 0.25, "Walking": 0.3}}


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("bundle") / "b", events=EVENTS)


@pytest.fixture(scope="module")
def recordings():
    recs = [synth_recording(minutes=2.0, seed=s, rate_hz=64.0) for s in (11, 12)]
    free = synth_recording(minutes=2.0, seed=13, rate_hz=64.0)
    free.labels, free.mask = None, None                  # declared FOG-free: every event is a false alarm
    return recs + [free]


COMPARED = ("sensitivity", "episodes_true", "latency_median_s", "percent_time_called_fog")


def test_the_sweeps_point_at_the_bundles_threshold_is_evaluates_figures(bundle_dir, recordings):
    result = evaluate(bundle_dir, recordings, at_fa_per_hour=30.0)
    assert [r["name"] for r in result.results] == list(result.operating_points)
    for figures in result.results:
        sweep = result.operating_points[figures["name"]]
        (point,) = [p for p in sweep["points"] if p["on"] == sweep["current"]]
        labelled, free = figures["any_fog"], figures["unlabelled"]
        for key in COMPARED[:3]:
            assert point[key] == labelled[key] or (math.isnan(point[key]) and math.isnan(labelled[key])), key
        assert point["false_alarms_labelled"] == labelled["false_alarms"]
        assert point["false_alarms_fog_free"] == free["false_alarms"]
        assert point["hours"] == pytest.approx(labelled["hours"] + free["hours"], rel=1e-12)
        assert point["false_alarms_per_hour"] == pytest.approx(
            (labelled["false_alarms"] + free["false_alarms"]) / point["hours"], rel=1e-12)
        called = (labelled["percent_time_called_fog"] * labelled["hours"]
                  + free["percent_time_called_fog"] * free["hours"]) / point["hours"]
        assert point["percent_time_called_fog"] == pytest.approx(called, rel=1e-9)
    model, index = result.operating_points.values()
    assert model["current"] == 0.37 and index["current"] == 0.5          # the bundle's least strict class; Bachlin
    assert sum(p["false_alarms"] for p in model["points"]) > 0 and sum(p["episodes_found"] for p in model["points"])
    chosen = result.at_fa_per_hour["chosen"]
    assert result.at_fa_per_hour["target"] == 30.0 and set(chosen) == set(result.operating_points)


def test_a_point_is_the_settings_it_names(bundle_dir, recordings):
    """Evaluating with --on t --off min(off, t) gives the sweep's point at t: export can write (on, off) as chosen."""
    result = evaluate(bundle_dir, recordings, thresholds=(0.2, 0.6, 0.9))
    sweep = next(iter(result.operating_points.values()))
    for point in sweep["points"]:
        again = evaluate(bundle_dir, recordings, events={"on": point["on"], "off": point["off"]}, thresholds=None)
        labelled = again.results[0]["any_fog"]
        assert (point["episodes_found"], point["false_alarms_labelled"]) == (
            round(labelled["sensitivity"] * labelled["episodes_true"]), labelled["false_alarms"])
        assert point["false_alarms_fog_free"] == again.results[0]["unlabelled"]["false_alarms"]


def _p(on, fa, found, true=10):
    return {"on": on, "false_alarms_per_hour": fa, "episodes_found": found, "episodes_true": true}


def test_the_choice_comes_down_from_the_strictest_threshold_and_stops_over_the_rate():
    points = [_p(0.01, 0.0, 10), _p(0.1, 40.0, 9), _p(0.5, 9.0, 7), _p(0.7, 8.0, 7), _p(0.9, 2.0, 4)]
    # 0.01 has no false alarm (everything is one long event) but 0.1 above it is over the rate: not chosen
    assert op.choose(points, 10.0)["on"] == 0.5                 # most found; of 0.5 and 0.7 the lower
    assert op.choose(points, 100.0)["on"] == 0.01
    assert op.choose(points, 1.0) is None
    free = [_p(t, fa, 0, 0) for t, fa in ((0.2, 20.0), (0.4, 5.0), (0.8, 1.0))]
    assert op.choose(free, 6.0)["on"] == 0.4                    # no freezes: the lowest threshold within the rate


def test_a_probability_threshold_names_its_freeze_index():
    from deploy.freeze_index import freeze_index_scores
    rec = synth_recording(minutes=1.0, seed=2, rate_hz=64.0)
    fi = np.exp(freeze_index_scores(rec))
    for fi_threshold in (1.5, 2.0):
        prob = freeze_index_probability(rec, threshold=fi_threshold)
        for on in (0.1, 0.5, 0.9, 0.99):
            at = op.freeze_index_at(on, fi_threshold)
            clear = np.abs(np.log(fi / at)) > 1e-9                 # away from the boundary itself
            assert np.array_equal((prob >= on)[clear], (fi >= at)[clear]) and (fi >= at).any() != (fi < at).all()
    assert op.freeze_index_at(0.5, 1.5) == 1.5 and op.freeze_index_at(0.9, 1.5) == pytest.approx(1.5 * 9 ** 0.25)


def test_evaluate_prints_writes_and_draws_the_operating_points(bundle_dir, recordings, tmp_path, capsys):
    for i, rec in enumerate(recordings):
        write_recording(rec, tmp_path / f"r{i}.npz", "npz")
    out = tmp_path / "eval.json"
    plots = tmp_path / "plots"
    assert main(["evaluate", str(tmp_path), "--bundle", str(bundle_dir), "--at-fa-per-hour", "30", "--quiet",
                 "--json-out", str(out), "--plot", str(plots)]) == 0
    text = capsys.readouterr().out
    assert "operating points" in text and "at most 30 false alarms per hour" in text
    saved = json.loads(out.read_text())
    assert saved["at_fa_per_hour"]["target"] == 30.0 and len(saved["recordings_used"]) == 3
    assert all(len(r["sha256"]) == 64 for r in saved["recordings_used"])
    assert (plots / "operating-points.png").stat().st_size > 10_000
    assert main(["evaluate", str(tmp_path), "--thresholds", "0.3,0.6", "--quiet"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith(("0.3", "0.5", "0.6"))]
    assert [r.split()[0] for r in rows] == ["0.3", "0.5", "0.6"]    # the asked thresholds and the one in use


@pytest.mark.parametrize("value, words", [("0.5,1.5", "probabilities in (0, 1)"), ("a,b", "comma-separated")])
def test_bad_thresholds_are_named(value, words, capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--synthetic", "1", "--thresholds", value])
    assert words in capsys.readouterr().err


def test_a_negative_rate_is_refused(capsys):
    assert main(["evaluate", "--synthetic", "1", "--minutes", "0.5", "--at-fa-per-hour", "-1", "--quiet"]) == 2
    assert "rate >= 0" in capsys.readouterr().err


def test_the_grid_is_sorted_and_holds_the_current_threshold():
    assert list(op.GRID) == sorted(op.GRID) and 0 < op.GRID[0] and op.GRID[-1] < 1
    assert op.thresholds(0.37) == sorted({*op.GRID, 0.37})
    assert np.all(np.diff(op.thresholds(0.5)) > 0)
