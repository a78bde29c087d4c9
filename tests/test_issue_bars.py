"""calibration.issue_bars: issue 25's bars read off a blend_choice result, each met or not, missing figures not met."""
import json

from calibration import issue_bars


def lab(ap, fi_ap, sens, fa, fi_fa):
    return {"ap": ap, "fi_ap": fi_ap, "sensitivity": sens, "false_alarms_per_hour": fa,
            "fi_false_alarms_per_hour": fi_fa}


def person(episodes, ap, fi_ap, fa=10.0, fi_fa=20.0):
    return {"episodes": episodes, "ap": ap, "fi_ap": fi_ap, "false_alarms_per_hour": fa,
            "fi_false_alarms_per_hour": fi_fa}


def choice(walking=5.0):
    return {"chosen": {"network": "n", "fi_blend": 0.25, "power_weight": 1.0, "on": 0.5,
                       "walking_false_alarms_per_hour": walking,
                       "labs": {"a": lab(0.5, 0.3, 0.8, 10.0, 20.0), "b": lab(0.35, 0.3, 0.6, 30.0, 20.0)}},
            "per_subject": {"p1": person(5, 0.4, 0.3), "p2": person(3, 0.2, 0.3), "p3": person(2, float("nan"), 0.1),
                            "never": person(0, None, None, fa=5.0, fi_fa=5.0)}}


def met(rows):
    return {name: ok for name, _, ok in rows}


def test_each_bar_is_judged_against_its_own_figure():
    rows = met(issue_bars.bars(choice()))
    assert len(rows) == 2 * 3 + 4 + 1
    assert rows["a: pooled AP >= FI + 0.1"] and not rows["b: pooled AP >= FI + 0.1"]   # 0.35 < 0.40
    assert rows["a: episode sensitivity >= 0.7"] and not rows["b: episode sensitivity >= 0.7"]
    assert rows["a: false alarms/h <= FI's"] and not rows["b: false alarms/h <= FI's"]
    assert rows["p1: AP >= FI's"] and not rows["p2: AP >= FI's"]
    assert not rows["p3: AP >= FI's"]                         # an AP that could not be computed is not met
    assert not rows["never (never froze): false alarms/h < FI's"]   # equal is not fewer
    assert rows["real walking: false alarms/h <= 10"]


def test_walking_not_measured_is_not_met(tmp_path, capsys):
    path = tmp_path / "choice.json"
    path.write_text(json.dumps(choice(walking=None)))
    assert issue_bars.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "NOT met  real walking: false alarms/h <= 10: not measured" in out
    assert "4 of 11 bars met" in out


def test_a_missing_file_is_named_with_the_fix(tmp_path, capsys):
    assert issue_bars.main([str(tmp_path / "nope.json")]) == 2
    assert "blend_choice" in capsys.readouterr().err
