"""calibration.blend_choice: the rule that picks the default's network, fixed blend and threshold on the folds."""
import numpy as np
import pytest

from calibration.blend_choice import (SENS_FLOOR, Summary, choose, nested, replay, replayed, subject_figures,
                                      subject_table, summarize, window_terms)
from calibration.loso import THRESHOLDS

LABS = {"A": "one", "B": "one", "C": "two"}


def _summary(lab_ap: dict, per_on: dict) -> Summary:
    """lab_ap: lab -> {left-out subject or "": AP}; per_on: on -> subject -> (episodes, found, alarms, hours)."""
    counts = {s: {} for s in LABS}
    for on, subjects in per_on.items():
        for s, (episodes, found, alarms, hours) in subjects.items():
            counts[s][on] = {"episodes": episodes, "found": found, "alarms": alarms, "hours": hours, "ap": 0.5}
    return Summary(dict(LABS), counts, lab_ap)


FI = _summary({"one": {"": 0.3, "A": 0.3, "B": 0.3}, "two": {"": 0.2, "C": 0.2}},
              {"fi": {"A": (10, 10, 10, 1.0), "B": (0, 0, 10, 1.0), "C": (10, 10, 20, 1.0)}})


def _every_on(subjects):
    return {f"{on:g}": subjects for on in THRESHOLDS}


def test_the_worst_lab_margin_chooses_the_candidate_then_the_floor_and_alarm_ratio_the_threshold():
    good_one_lab = _summary({"one": {"": 0.9, "A": 0.9, "B": 0.9}, "two": {"": 0.22, "C": 0.22}},
                            _every_on({"A": (10, 10, 0, 1.0), "B": (0, 0, 0, 1.0), "C": (10, 10, 0, 1.0)}))
    per_on = _every_on({"A": (10, 10, 20, 1.0), "B": (0, 0, 20, 1.0), "C": (10, 10, 30, 1.0)})
    per_on["0.8"] = {"A": (10, 8, 5, 1.0), "B": (0, 0, 0, 1.0), "C": (10, 7, 10, 1.0)}    # sens 0.7, ratios 0.25
    per_on["0.9"] = {"A": (10, 9, 0, 1.0), "B": (0, 0, 0, 1.0), "C": (10, 6, 0, 1.0)}     # C below the floor
    both_labs = _summary({"one": {"": 0.5, "A": 0.5, "B": 0.5}, "two": {"": 0.4, "C": 0.4}}, per_on)
    candidates = {("net", 0.5, 1.0): [good_one_lab], ("net", 1.0, 1.0): [both_labs]}
    chosen = choose(candidates, FI, sorted(LABS))
    assert (chosen["fi_blend"], chosen["on"]) == (1.0, 0.8)          # margins +0.2/+0.2 beat +0.6/+0.02
    assert chosen["worst_lab_margin"] == pytest.approx(0.2) and chosen["keeps_floor"]
    assert chosen["labs"]["two"]["sensitivity"] == pytest.approx(0.7) and SENS_FLOOR == 0.7
    assert chosen["labs"]["one"]["false_alarms_per_hour"] == pytest.approx(2.5)    # 5 alarms in 2 h
    # two seeds: AP is their mean, episodes and alarms are pooled
    second = _summary({"one": {"": 0.3, "A": 0.3, "B": 0.3}, "two": {"": 0.2, "C": 0.2}}, per_on)
    two_seeds = choose({("net", 1.0, 1.0): [both_labs, second]}, FI, sorted(LABS))
    assert two_seeds["worst_lab_margin"] == pytest.approx(0.1) and two_seeds["labs"]["one"]["ap_runs"] == [0.5, 0.3]


class _Walking:
    """A walking budget (calibration.walking_budget.WalkingBudget's interface) with given rates per threshold."""
    max_per_hour = 10.0

    def __init__(self, rates):
        self.rates, self.asked = rates, []

    def per_hour(self, network, blend, power, thresholds, hysteresis):
        self.asked.append((network, blend, power))
        return {on: self.rates(on) for on in thresholds}


def test_the_walking_budget_keeps_only_thresholds_quiet_on_real_walking():
    # no threshold keeps the sensitivity floor: without the budget the lowest wins (the highest sensitivity)
    # (episodes, found, alarms, hours): fewer found at each higher threshold, 0.65 at the lowest
    per_on = {f"{on:g}": {"A": (20, 13 - i, 5, 1.0), "B": (0, 0, 5, 1.0), "C": (20, 13 - i, 5, 1.0)}
              for i, on in enumerate(THRESHOLDS)}
    candidates = {("net", 0.5, 1.0): [_summary({"one": {"": 0.5, "A": 0.5, "B": 0.5}, "two": {"": 0.4, "C": 0.4}},
                                               per_on)]}
    assert choose(candidates, FI, sorted(LABS))["on"] == min(THRESHOLDS)
    walking = _Walking(lambda on: 0.0 if on >= 0.85 else 40.0)
    chosen = choose(candidates, FI, sorted(LABS), walking)
    assert chosen["on"] == 0.85 and chosen["walking_false_alarms_per_hour"] == 0.0
    assert walking.asked == [("net", 0.5, 1.0)]                    # asked about the chosen network and blend only
    # nothing within the budget: the threshold raising the fewest alarms on walking, the higher on a tie
    assert choose(candidates, FI, sorted(LABS), _Walking(lambda on: 50.0 - 10 * (on >= 0.8)))["on"] == max(THRESHOLDS)


def test_nested_judges_each_subject_at_the_setting_chosen_without_it():
    # x wins on lab one only through A; without A (only B, who never froze, left in lab one) y wins
    x = _summary({"one": {"": 0.9, "A": 0.1, "B": 0.9}, "two": {"": 0.5, "C": 0.5}},
                 _every_on({"A": (10, 10, 1, 1.0), "B": (0, 0, 1, 1.0), "C": (10, 10, 1, 1.0)}))
    y = _summary({"one": {"": 0.6, "A": 0.6, "B": 0.6}, "two": {"": 0.45, "C": 0.45}},
                 _every_on({"A": (10, 3, 4, 1.0), "B": (0, 0, 4, 1.0), "C": (10, 10, 4, 1.0)}))
    candidates = {("x", 0.5, 0.0): [x], ("y", 0.5, 0.0): [y]}
    assert choose(candidates, FI, sorted(LABS))["network"] == "x"
    held = nested(candidates, FI)
    assert held["A"]["network"] == "y" and held["A"]["sensitivity"] == pytest.approx(0.3)
    assert held["B"]["network"] == "x" and held["C"]["network"] == "x"
    figures = subject_figures([x], FI, "C", "0.5")
    assert figures["false_alarms_per_hour"] == 1.0 and figures["fi_false_alarms_per_hour"] == 20.0
    assert "| A | one | 10 | y / 0.5 / 0 / 0.9 |" in subject_table(held, setting_column=True)


def test_summaries_pool_a_lab_and_leave_one_subject_out_of_it():
    from deploy.recording import Recording
    rng = np.random.default_rng(0)

    def rec(subject, lab, fog):
        labels = np.repeat(np.asarray(fog, float)[:, None], 3, axis=1)
        return Recording(acc=rng.normal(size=(len(fog), 3)), rate_hz=64.0, units="g", labels=labels,
                         meta={"subject": subject, "lab": lab, "id": subject, "label_kind": "any"})
    fog = np.r_[np.zeros(640), np.ones(320), np.zeros(640)]
    recs = [rec("A", "one", fog), rec("B", "one", fog), rec("C", "two", fog)]
    probs = [fog * 0.9 + 0.05, np.full(len(fog), 0.05), fog * 0.9 + 0.05]   # B: never called
    summary = summarize(recs, probs, thresholds=(0.5,))
    assert summary.lab_ap["one"]["B"] == pytest.approx(1.0) and summary.lab_ap["one"]["A"] == pytest.approx(0.2)
    assert summary.lab_ap["one"][""] < 1.0 and summary.lab_ap["two"][""] == pytest.approx(1.0)
    assert summary.counts["A"]["0.5"]["found"] == 1 and summary.counts["B"]["0.5"]["found"] == 0


def test_replayed_window_terms_equal_predicting_with_the_blended_model(tmp_path):
    """The choice scores each candidate from recorded window terms: the same probabilities as the model itself."""
    torch = pytest.importorskip("torch")
    from calibration.data import synthetic_recordings
    from calibration.loso import INVARIANT, Recipe, predict, predict_with, saved_fold_model
    from models import create_model, get_preset

    torch.manual_seed(0)
    weights = tmp_path / "model-X.pt"
    torch.save(create_model("fog-small", fi_blend=0.0).state_dict(), weights)
    recordings = synthetic_recordings(1, seed=7, minutes=1.0)
    fi_kwargs = {k: v for k, v in get_preset("fog-small").kwargs["fi_kwargs"].items() if k != "power_weight"}
    for preprocess in ({}, INVARIANT):
        calls, spec = window_terms(Recipe(preprocess=preprocess), weights, recordings, fi_kwargs)
        for blend, power in ((0.5, 0.5), (1.0, 0.0)):
            recipe = Recipe(preprocess=preprocess,
                            model={"fi_blend": blend, "fi_kwargs": {**fi_kwargs, "power_weight": power}})
            model, _ = saved_fold_model(recipe, weights)
            want = predict(model, spec, recordings)
            got = predict_with(replay(calls, blend, power), spec, recordings)
            np.testing.assert_allclose(got[0], want[0], atol=2e-6)
            np.testing.assert_allclose(replayed(calls, spec, recordings, blend, power)[0], want[0], atol=2e-6)


def _one_fold_run(tmp_path, seed: int, minutes: float):
    """A LOSO run of one fold (an untrained fog-small network trained, says its loso.json, on the invariant input)
    and the synthetic recording of the subject it held out: (run folder, recording file)."""
    import json
    from dataclasses import asdict
    torch = pytest.importorskip("torch")
    from calibration.data import synthetic_recordings
    from calibration.loso import INVARIANT, Recipe
    from deploy.recording import write_recording
    from models import create_model

    run = tmp_path / "loso-x-s0"
    run.mkdir()
    torch.manual_seed(0)
    torch.save(create_model("fog-small", fi_blend=0.0).state_dict(), run / f"model-syn{seed}-s00.pt")
    (run / "loso.json").write_text(json.dumps({"recipe": asdict(Recipe(preprocess=INVARIANT))}))
    data = write_recording(synthetic_recordings(1, seed=seed, minutes=minutes)[0], tmp_path / f"syn{seed}-s00.npz",
                           "npz")
    return run, data


def test_each_run_is_replayed_with_the_input_it_was_trained_on_and_its_terms_are_cached(tmp_path):
    """A run trained on the invariant input is scored on that input (its loso.json's recipe), not the preset's;
    the recorded window terms are kept beside the fold's weights and read back unchanged."""
    from calibration.blend_choice import collect
    from calibration.loso import RECIPES

    run, data = _one_fold_run(tmp_path, seed=3, minutes=0.5)
    fi_kwargs = {"rate_hz": 64.0, "eps": 1e-6}
    _, first = collect([str(data)], {"x": [str(run)]}, RECIPES["blend"], fi_kwargs)
    (_, calls, spec), = first["x", str(run)]
    assert spec.horizontal == "principal" and (run / "terms-syn3-s00.npz").is_file()
    _, again = collect([str(data)], {"x": [str(run)]}, RECIPES["blend"], fi_kwargs)
    for a, b in zip(calls, again["x", str(run)][0][1]):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)


def test_nested_figures_raise_events_as_the_choice_and_the_device_do(tmp_path):
    """nested_pooled scores each recording's any-FOG score (one event per freeze, the bundle's `any` mode) exactly
    as summarize does; scoring the (n, 3) class columns raised a false alarm per class and inflated its rates."""
    from calibration.blend_choice import collect, nested_pooled
    from calibration.loso import RECIPES
    from deploy.scoring import freeze_index_probability

    run, data = _one_fold_run(tmp_path, seed=5, minutes=2.0)
    recordings, terms = collect([str(data)], {"x": [str(run)]}, RECIPES["blend"], {"rate_hz": 64.0, "eps": 1e-6})
    (test, calls, spec), = terms["x", str(run)]
    subject, on = test[0].meta["subject"], 0.3
    counts = summarize(test, replayed(calls, spec, test, 0.25, 1.0), thresholds=(on,)).counts[subject]["0.3"]
    assert counts["alarms"] > 0          # an untrained network: alarms to count
    held = {subject: {"network": "x", "fi_blend": 0.25, "power_weight": 1.0, "on": on}}
    pooled = nested_pooled(held, terms, {r.meta["id"]: freeze_index_probability(r) for r in recordings})
    (figures,) = pooled.values()
    assert figures["false_alarms_per_hour"] == pytest.approx(counts["alarms"] / counts["hours"])
    assert figures["sensitivity"] == pytest.approx(counts["found"] / counts["episodes"])
