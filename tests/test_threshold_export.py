"""`toolkit export --on-threshold-from EVAL.json`: the threshold `toolkit evaluate --at-fa-per-hour` chose goes into a
bundle with the settings it was scored with, the manifest records the choice and its recordings, and the new bundle
scores exactly the chosen point; a choice for other weights, beside event flags, or missing is refused clearly."""
from __future__ import annotations

import json

import pytest

from deploy.bundle import Bundle
from deploy.recording import write_recording
from deploy.synth import synth_recording
from toolkit.api.threshold import chosen_events
from toolkit.cli import main

pytest.importorskip("torch")
# the shipped weights (a threshold belongs to one model's probabilities), the cpu target's fp32 graph, few checks
FAST = ["--target", "cpu", "--verify-windows", "4", "--no-fidelity", "--quiet"]


@pytest.fixture(scope="module")
def chosen(tmp_path_factory):
    root = tmp_path_factory.mktemp("threshold")
    for seed in (21, 22):
        write_recording(synth_recording(minutes=3.0, seed=seed, rate_hz=64.0), root / f"s{seed}.npz", "npz")
    assert main(["export", *FAST, "--out", str(root / "a")]) == 0
    assert main(["evaluate", str(root / "s21.npz"), str(root / "s22.npz"), "--bundle", str(root / "a"),
                 "--at-fa-per-hour", "40", "--json-out", str(root / "eval.json"), "--quiet"]) == 0
    return root


@pytest.mark.slow
def test_the_chosen_threshold_ships_with_its_settings_and_its_record(chosen, capsys):
    evaluation = json.loads((chosen / "eval.json").read_text())
    name = evaluation["results"][0]["name"]
    point = evaluation["at_fa_per_hour"]["chosen"][name]
    assert point is not None and point["false_alarms_per_hour"] <= 40
    assert main(["export", *FAST, "--out", str(chosen / "b"), "--on-threshold-from", str(chosen / "eval.json")]) == 0
    manifest = Bundle.load(chosen / "b").manifest
    assert set(manifest["events"]["on"].values()) == {point["on"]}
    assert set(manifest["events"]["off"].values()) == {point["off"]}
    for key in ("hop_s", "lookahead_s", "smoothing_s", "min_duration_s", "refractory_s"):
        assert manifest["events"][key] == evaluation["events"][key], key
    record = manifest["export"]["events_chosen"]
    assert record["fa_per_hour_asked"] == 40 and record["point"] == point
    assert [r["name"] for r in record["recordings"]] == ["s21", "s22"]
    assert all(len(r["sha256"]) == 64 for r in record["recordings"])
    assert record["scored"]["weights_sha256"] == manifest["model"]["weights_sha256"] and record["weights_checked"]
    capsys.readouterr()
    # the new bundle, scored on the same recordings, is the point that was chosen
    assert main(["evaluate", str(chosen / "s21.npz"), str(chosen / "s22.npz"), "--bundle", str(chosen / "b"),
                 "--json", "--quiet"]) == 0
    again = json.loads(capsys.readouterr().out)["results"][0]["any_fog"]
    assert (again["sensitivity"], again["false_alarms"], again["latency_median_s"]) == (
        point["sensitivity"], point["false_alarms"], point["latency_median_s"])


@pytest.mark.slow
def test_a_choice_is_refused_beside_event_flags_and_for_other_weights(chosen, tmp_path, capsys):
    assert main(["export", *FAST, "--out", str(tmp_path / "c"), "--on-threshold-from", str(chosen / "eval.json"),
                 "--on", "0.7"]) == 2
    assert "--on would change what it was chosen for" in capsys.readouterr().err
    evaluation = json.loads((chosen / "eval.json").read_text())
    evaluation["model"]["weights_sha256"] = "0" * 64                   # as if another model had been evaluated
    other = tmp_path / "other.json"
    other.write_text(json.dumps(evaluation))
    assert main(["export", *FAST, "--out", str(tmp_path / "d"), "--on-threshold-from", str(other)]) == 2
    assert "chose its threshold for weights sha256 000000000000" in capsys.readouterr().err


def _evaluation(tmp_path, **changes) -> str:
    data = {"results": [{"name": "bundle b (fp32, onnxruntime)"}], "events": {"on": 0.5, "off": 0.35},
            "operating_points": {"bundle b (fp32, onnxruntime)": {"current": 0.5, "points": [
                {"on": 0.5, "off": 0.35, "false_alarms_per_hour": 50.0}]}},
            "precision": "fp32", "at_fa_per_hour": {"target": 10.0, "chosen": {"bundle b (fp32, onnxruntime)": None}}}
    data.update(changes)
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize("changes, words", [
    ({}, "no threshold of the sweep kept bundle b (fp32, onnxruntime) to 10 false alarms per hour (fewest: 50.0"),
    ({"at_fa_per_hour": None}, "no chosen one"),
    ({"precision": None}, "scored the freeze index only"),
    ({"operating_points": None, "results": None}, "is not what `toolkit evaluate --json-out` writes"),
])
def test_an_evaluation_without_a_usable_choice_says_what_to_run(tmp_path, changes, words):
    data = _evaluation(tmp_path, **changes)
    if changes.get("results", 1) is None:
        raw = json.loads(open(data).read())
        del raw["results"], raw["operating_points"]
        open(data, "w").write(json.dumps(raw))
    with pytest.raises(Exception, match=words.replace("(", r"\(").replace(")", r"\)")) as err:
        chosen_events(data)
    assert "eval.json" in str(err.value)


def test_a_file_that_is_not_json_is_named(tmp_path):
    path = tmp_path / "eval.json"
    path.write_text("{not json")
    with pytest.raises(Exception, match="eval.json: is not JSON"):
        chosen_events(path)
