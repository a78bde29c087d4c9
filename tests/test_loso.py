"""calibration.loso: folds hold a subject out of training, and the figures come from deploy.scoring."""
from __future__ import annotations

import pytest

pytest.importorskip("torch")

from dataclasses import replace  # noqa: E402

from calibration.loso import THRESHOLDS, Recipe, mixed, pooled_by_lab, run_fold  # noqa: E402
from tests.conftest import shared_path  # noqa: E402

pytestmark = pytest.mark.slow   # measured over ~5 s a test (pytest --durations)

TINY = Recipe(epochs=1, steps=2, batch_size=4, synthetic_subjects=1, synthetic_minutes=1.0, warmup=1)


def test_a_fold_never_trains_on_its_test_subject(daphnet_dir, tmp_path):
    paths = [str(daphnet_dir / f"{name}.txt") for name in ("S02R01", "S03R02", "S04R01E1", "S08R01E0")]
    fold = run_fold(TINY, paths, "S04", str(tmp_path))
    assert fold["recordings"] == ["S04R01E1"] and fold["train_subjects"] == ["S02", "S03", "S08"]
    assert sorted(fold["model"]) == sorted(f"{t:g}" for t in THRESHOLDS)
    free = fold["model"]["0.5"]["any_fog"]             # S04 never froze: episodes 0, false alarms counted
    assert free["episodes_true"] == 0 and free["hours"] == pytest.approx(8.5 / 60, abs=0.005)
    assert (tmp_path / "probs-S04.npz").exists() and (tmp_path / "model-S04.pt").exists()


def test_leave_one_lab_out_trains_on_the_other_lab_and_pools_each_lab(daphnet_dir, tmp_path):
    stanford = shared_path("data", "stanford-imu-fog-64hz")
    paths = [str(daphnet_dir / "S04R01E1.txt"), str(daphnet_dir / "S08R01E0.txt"),
             str(stanford / "pt1_visit_24_tbc_walklr_0_trial_2.npz"), str(stanford / "pt5_visit_6_tbc_walklr_0_trial_1.npz")]
    folds = [run_fold(TINY, paths, lab, str(tmp_path), by="lab") for lab in ("daphnet", "stanford")]
    assert folds[1]["recordings"] == ["pt1_visit_24_tbc_walklr_0_trial_2", "pt5_visit_6_tbc_walklr_0_trial_1"]
    assert folds[1]["train_subjects"] == ["S04", "S08"] and folds[0]["train_subjects"] == ["pt1", "pt5"]
    pooled = pooled_by_lab(paths, tmp_path, folds)
    assert pooled["stanford"]["subjects"] == ["pt1", "pt5"] and pooled["daphnet"]["subjects"] == ["S04", "S08"]
    # pooled over the lab's held-out recordings: the fold's own figures when one fold held the whole lab out
    for lab, fold in zip(("daphnet", "stanford"), folds):
        got, want = pooled[lab]["model"]["0.5"]["any_fog"], fold["model"]["0.5"]["any_fog"]
        assert got["ap"] == pytest.approx(want["ap"]) and got["false_alarms"] == want["false_alarms"]
        assert pooled[lab]["freeze_index"]["any_fog"]["ap"] == pytest.approx(fold["freeze_index"]["any_fog"]["ap"])


def test_the_real_share_repeats_the_smaller_side():
    syn, real = list("abc"), list("XYZUVW")
    assert mixed(syn, real, 0.5) == syn * 2 + real             # 6 synthetic copies beside 6 real
    assert mixed(syn, real[:1], 0.75) == syn + real[:1] * 9    # 9 real copies: 9 / 12 of the windows
    assert mixed(syn, real, 0.0) == syn and mixed(syn, real, 1.0) == real and mixed(syn, [], 0.5) == syn


def test_a_fold_predicts_again_from_its_saved_weights_with_another_freeze_index_blend(daphnet_dir, tmp_path):
    import numpy as np
    tiny = replace(TINY, train_only={"fi_blend": 0.0})
    paths = [str(daphnet_dir / f) for f in ("S02R01.txt", "S04R01E1.txt")]
    run_fold(tiny, paths, "S04", str(tmp_path))
    trained = np.load(tmp_path / "probs-S04.npz")["S04R01E1"]
    again = run_fold(tiny, paths, "S04", str(tmp_path), reuse=True)
    assert again["reused_weights"] and again["train_loss_last"] is None
    np.testing.assert_allclose(np.load(tmp_path / "probs-S04.npz")["S04R01E1"], trained, atol=1e-6)
    run_fold(Recipe(model={"fi_blend": 0.0}), paths, "S04", str(tmp_path), reuse=True)
    assert np.abs(np.load(tmp_path / "probs-S04.npz")["S04R01E1"] - trained).max() > 1e-3   # the blend is in


def test_reblend_equals_predicting_with_the_blended_model(daphnet_dir, tmp_path):
    """--reblend predicts with a plain run's fold weights inside the recipe's (blended) model: the full model's."""
    from calibration.loso import reblend
    tiny = replace(TINY, train_only={"fi_blend": 0.0})
    for folder in ("plain", "full"):
        (tmp_path / folder).mkdir()
    paths = [str(daphnet_dir / f) for f in ("S02R01.txt", "S03R02.txt", "S03R03.txt")]
    run_fold(replace(tiny, model={"fi_blend": 0.0}), paths, "S03", str(tmp_path / "plain"))
    (tmp_path / "full" / "model-S03.pt").write_bytes((tmp_path / "plain" / "model-S03.pt").read_bytes())
    full = run_fold(tiny, paths, "S03", str(tmp_path / "full"), reuse=True)   # the preset's blend
    (fold,) = reblend(tiny, paths[1:], [str(tmp_path / "plain")])["folds"]
    for on, figures in full["model"].items():
        got, want = fold["model"][on]["any_fog"], figures["any_fog"]
        assert got["ap"] == pytest.approx(want["ap"], abs=1e-9), on
        assert (got["episodes_detected"], got["false_alarms"]) == (want["episodes_detected"], want["false_alarms"])


def test_reblend_of_several_runs_scores_their_seed_ensemble(daphnet_dir, tmp_path):
    """--reblend RUN RUN: each fold's networks of both runs as one ensemble (models.ensemble.LogitMean). Twice the
    same run is that run; two seeds give probabilities of their own, between the seeds' logits."""
    import numpy as np
    from calibration.loso import reblend
    tiny = replace(TINY, train_only={"fi_blend": 0.0})
    paths = [str(daphnet_dir / f) for f in ("S02R01.txt", "S03R02.txt")]
    runs = []
    for seed in (0, 1):
        run = tmp_path / f"plain-s{seed}"
        run.mkdir()
        run_fold(replace(tiny, model={"fi_blend": 0.0}, seed=seed), paths, "S03", str(run))
        runs.append(str(run))

    def probs(dirs, name):
        reblend(tiny, paths[1:], dirs, str(tmp_path / name))
        return np.load(tmp_path / name / "probs-S03.npz")["S03R02"]
    one, other = probs([runs[0]], "one"), probs([runs[1]], "other")
    np.testing.assert_allclose(probs([runs[0], runs[0]], "twice"), one, atol=1e-6)
    both = probs(runs, "both")
    assert np.abs(both - one).max() > 1e-3 and np.abs(both - other).max() > 1e-3
    logit = lambda p: np.log(np.clip(p, 1e-7, 1 - 1e-7) / np.clip(1 - p, 1e-7, 1))   # noqa: E731
    low, high = np.minimum(logit(one), logit(other)), np.maximum(logit(one), logit(other))
    # windows are averaged after the sigmoid, so only roughly between: never outside by much
    assert np.mean((logit(both) >= low - 0.05) & (logit(both) <= high + 0.05)) > 0.95
