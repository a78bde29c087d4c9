"""calibration.blend_choice: the rule that picks the default's fixed blend and threshold on the LOSO folds."""
import numpy as np
import pytest

from calibration.blend_choice import (SENS_FLOOR, card_table, choose, nested, nested_table, replay, rows_of,
                                      window_terms)


def _fold(subject, episodes, per_on):
    """A loso fold as calibration.loso writes it: per on-threshold any-FOG figures, and the freeze index's."""
    model = {on: {"any_fog": {"ap": ap, "sensitivity": sens, "false_alarms": fa, "hours": 0.5,
                              "false_alarms_per_hour": fa / 0.5, "episodes_true": episodes}}
             for on, (ap, sens, fa) in per_on.items()}
    return {"subject": subject, "model": model, "freeze_index": {"any_fog": {"episodes_true": episodes}}}


def test_rows_pool_over_subjects_and_seeds_and_judge_sensitivity_on_those_who_froze():
    nan = float("nan")
    seed0 = {"folds": [_fold("A", 10, {"0.5": (0.8, 0.9, 2), "0.7": (0.8, 0.6, 0)}),
                       _fold("B", 0, {"0.5": (nan, nan, 4), "0.7": (nan, nan, 1)})]}
    rows = {r["on"]: r for r in rows_of(0.5, 0.25, [seed0])}
    assert rows[0.5]["false_alarms_per_hour"] == 6 / 1.0 and rows[0.7]["false_alarms_per_hour"] == 1.0
    assert rows[0.5]["min_episode_sensitivity"] == 0.9 and rows[0.5]["mean_ap"] == 0.8   # B never froze
    seed1 = {"folds": [_fold("A", 10, {"0.5": (0.6, 0.5, 0), "0.7": (0.6, 0.5, 0)}),
                       _fold("B", 0, {"0.5": (nan, nan, 0), "0.7": (nan, nan, 3)})]}
    pooled = {r["on"]: r for r in rows_of(0.5, 0.25, [seed0, seed1])}
    assert pooled[0.5]["min_episode_sensitivity"] == pytest.approx(14 / 20)             # 9 + 5 of 10 + 10 found
    assert pooled[0.5]["false_alarms_per_hour"] == 6 / 2.0 and pooled[0.5]["mean_ap"] == pytest.approx(0.7)
    table = card_table(pooled[0.5], {"A": {"ap": 0.5, "sensitivity": 1.0, "false_alarms_per_hour": 9.0}, "B": {}})
    assert "| A | 0.700 (0.800, 0.600) / 0.500 | 0.70 / 1.00 | 2.0 / 9.0 |" in table
    assert "| B | - / - | - / - | 4.0 / - |" in table


def test_choice_keeps_the_sensitivity_floor_then_the_fewest_false_alarms_then_the_best_ap():
    def row(fa, sens, ap, tag):
        return {"false_alarms_per_hour": fa, "min_episode_sensitivity": sens, "mean_ap": ap, "tag": tag}
    rows = [row(1.0, SENS_FLOOR - 0.01, 0.9, "too insensitive"), row(5.0, 0.8, 0.7, "more alarms"),
            row(3.0, 0.75, 0.6, "tie, worse AP"), row(3.0, SENS_FLOOR, 0.65, "chosen")]
    assert choose(rows)["tag"] == "chosen"


def test_replayed_window_terms_equal_predicting_with_the_blended_model(tmp_path):
    """The choice scores each candidate from recorded window terms: the same probabilities as the model itself."""
    torch = pytest.importorskip("torch")
    from calibration.loso import Recipe, predict, predict_with, saved_fold_model
    from calibration.data import synthetic_recordings
    from models import create_model, get_preset

    torch.manual_seed(0)
    weights = tmp_path / "model-X.pt"
    torch.save(create_model("fog-small", fi_blend=0.0).state_dict(), weights)
    recordings = synthetic_recordings(1, seed=7, minutes=1.0)
    fi_kwargs = {k: v for k, v in get_preset("fog-small").kwargs["fi_kwargs"].items() if k != "power_weight"}
    calls, spec = window_terms(Recipe(), weights, recordings, fi_kwargs)
    for blend, power in ((0.5, 0.5), (1.0, 0.0)):
        recipe = Recipe(model={"fi_blend": blend, "fi_kwargs": {**fi_kwargs, "power_weight": power}})
        model, _ = saved_fold_model(recipe, weights)
        want = predict(model, spec, recordings)
        got = predict_with(replay(calls, blend, power), spec, recordings)
        np.testing.assert_allclose(got[0], want[0], atol=2e-6)


def test_nested_choice_scores_each_subject_at_the_setting_the_others_chose():
    """A and B froze: each is judged at the candidate chosen on the other subjects (never on itself)."""
    nan = float("nan")

    def run(a_sens, b_sens, c_alarms):
        return {"folds": [_fold("A", 10, {"0.5": (0.8, a_sens, 2)}), _fold("B", 10, {"0.5": (0.6, b_sens, 2)}),
                          _fold("C", 0, {"0.5": (nan, nan, c_alarms)})]}
    # x keeps A only, y keeps B only, z keeps both but raises the most alarms on C: on all three z is the choice
    candidates = {(0.25, 0.0): [run(0.9, 0.5, 3)], (0.5, 0.0): [run(0.5, 0.9, 1)], (1.0, 0.0): [run(0.8, 0.8, 5)]}
    assert choose([r for (b, p), res in candidates.items() for r in rows_of(b, p, res)])["fi_blend"] == 1.0
    chosen = nested(candidates, ["A", "B", "C"])
    assert (chosen["A"]["fi_blend"], chosen["A"]["sensitivity"]) == (0.5, 0.5)    # on B, C: y (fewer alarms than z)
    assert (chosen["B"]["fi_blend"], chosen["B"]["sensitivity"]) == (0.25, 0.5)   # on A, C: x
    assert chosen["C"]["fi_blend"] == 1.0 and chosen["C"]["chosen_on"] == ["A", "B"]
    assert chosen["C"]["false_alarms_per_hour"] == 10.0                           # z: 5 alarms in 0.5 h
    table = nested_table(chosen, {s: {} for s in "ABC"})
    assert "| A | 0.5 / 0 / 0.5 | 0.800 / - | 0.50 / - | 4.0 / - |" in table
