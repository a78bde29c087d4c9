"""calibration.loso: folds hold a subject out of training, and the figures come from deploy.scoring."""
from __future__ import annotations

import pytest

pytest.importorskip("torch")

from dataclasses import replace  # noqa: E402

from calibration.loso import THRESHOLDS, Recipe, run_fold  # noqa: E402

pytestmark = pytest.mark.slow   # measured over ~5 s a test (pytest --durations)

# The five whole Daphnet recordings (the folder also holds experiment segments of more people): three people, so a
# fold's training and test subjects are known, and a fold predicts minutes, not an hour, of signal.
WHOLE = ("S02R01", "S02R02", "S03R02", "S03R03", "S06R02")


@pytest.fixture
def whole(daphnet_dir) -> list[str]:
    return [str(daphnet_dir / f"{name}.txt") for name in WHOLE]


def test_a_fold_never_trains_on_its_test_subject(whole, tmp_path):
    tiny = Recipe(epochs=1, steps=2, batch_size=4, synthetic_subjects=1, synthetic_minutes=1.0, warmup=1)
    fold = run_fold(tiny, whole, "S06", str(tmp_path))
    assert fold["recordings"] == ["S06R02"] and fold["train_subjects"] == ["S02", "S03"]
    assert sorted(fold["model"]) == sorted(f"{t:g}" for t in THRESHOLDS)
    free = fold["model"]["0.5"]["any_fog"]             # S06 did not freeze here: episodes 0, false alarms counted
    assert free["episodes_true"] == 0 and free["hours"] == pytest.approx(5.2 / 60, abs=0.005)
    assert (tmp_path / "probs-S06.npz").exists() and (tmp_path / "model-S06.pt").exists()


def test_a_fold_predicts_again_from_its_saved_weights_with_another_freeze_index_blend(whole, tmp_path):
    import numpy as np
    tiny = Recipe(epochs=1, steps=2, batch_size=4, synthetic_subjects=1, synthetic_minutes=1.0, warmup=1,
                  train_only={"fi_blend": 0.0})
    run_fold(tiny, whole, "S06", str(tmp_path))
    trained = np.load(tmp_path / "probs-S06.npz")["S06R02"]
    again = run_fold(tiny, whole, "S06", str(tmp_path), reuse=True)
    assert again["reused_weights"] and again["train_loss_last"] is None
    np.testing.assert_allclose(np.load(tmp_path / "probs-S06.npz")["S06R02"], trained, atol=1e-6)
    run_fold(Recipe(model={"fi_blend": 0.0}), whole, "S06", str(tmp_path), reuse=True)
    assert np.abs(np.load(tmp_path / "probs-S06.npz")["S06R02"] - trained).max() > 1e-3   # the blend is in


def test_reblend_equals_predicting_with_the_blended_model(whole, tmp_path):
    """--reblend predicts with a plain run's fold weights inside the recipe's (blended) model: the full model's."""
    from calibration.loso import reblend
    tiny = Recipe(epochs=1, steps=2, batch_size=4, synthetic_subjects=1, synthetic_minutes=1.0, warmup=1,
                  train_only={"fi_blend": 0.0})
    for folder in ("plain", "full"):
        (tmp_path / folder).mkdir()
    whole = [p for p in whole if "S02R02" not in p and "S03R03" not in p]   # one recording each: less to predict
    run_fold(replace(tiny, model={"fi_blend": 0.0}), whole, "S03", str(tmp_path / "plain"))
    (tmp_path / "full" / "model-S03.pt").write_bytes((tmp_path / "plain" / "model-S03.pt").read_bytes())
    full = run_fold(tiny, whole, "S03", str(tmp_path / "full"), reuse=True)   # the preset's blend
    s03 = [p for p in whole if "S03" in p]
    (fold,) = reblend(tiny, s03, str(tmp_path / "plain"))["folds"]
    for on, figures in full["model"].items():
        got, want = fold["model"][on]["any_fog"], figures["any_fog"]
        assert got["ap"] == pytest.approx(want["ap"], abs=1e-9), on
        assert (got["episodes_detected"], got["false_alarms"]) == (want["episodes_detected"], want["false_alarms"])
