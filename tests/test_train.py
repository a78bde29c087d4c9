"""The training loop: masked loss, subject split, checkpoints and exact resume, QAT fine-tuning on a tiny model."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from calibration.train import TrainConfig, fit, masked_bce, split_by_subject  # noqa: E402
from tests.test_calibration import SPEC, TinyNet, toy_recording  # noqa: E402

CONFIG = TrainConfig(epochs=3, steps_per_epoch=4, batch_size=8, lr=3e-3, warmup_steps=2, patience=5, seed=3)


def recordings():
    return [toy_recording(i, n=1500, subject=f"s{i}", sh=(i % 2 == 0)) for i in range(5)]


def test_masked_bce_ignores_masked_entries():
    logits = torch.tensor([[0.0, 5.0], [2.0, -1.0]])
    targets = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    mask = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    full = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    expected = (full[0, 0] + full[1, 0] + full[1, 1]) / 3
    torch.testing.assert_close(masked_bce(logits, targets, mask), expected)
    changed = logits.clone()
    changed[0, 1] = -50.0                       # a masked entry: no effect
    torch.testing.assert_close(masked_bce(changed, targets, mask), expected)


def test_split_by_subject_keeps_subjects_apart():
    recs = recordings() + [toy_recording(9, subject="s1")]
    train, val = split_by_subject(recs, val_fraction=0.4, seed=0)
    assert {r.meta["subject"] for r in train}.isdisjoint({r.meta["subject"] for r in val})
    assert len(train) + len(val) == len(recs)
    train, val = split_by_subject(recs, val_subjects=["s1"])
    assert [r.meta["name"] for r in val] == ["r1", "r9"]


def test_fit_checkpoints_and_resume_equals_an_uninterrupted_run(tmp_path):
    recs = recordings()
    train, val = recs[:4], recs[4:]
    torch.manual_seed(0)
    straight = TinyNet()
    torch.manual_seed(0)
    interrupted = TinyNet()
    torch.testing.assert_close(straight.state_dict(), interrupted.state_dict())
    first = fit(straight, train, val, SPEC, CONFIG, out_dir=tmp_path / "a", progress=False)
    assert len(first.history) == 3 and first.best_epoch in (1, 2, 3)
    assert all(0.0 <= row["val_map"] <= 1.0 for row in first.history)
    assert (tmp_path / "a" / "best.pt").exists() and (tmp_path / "a" / "last.pt").exists()

    two = TrainConfig(**{**CONFIG.__dict__, "epochs": 2})
    fit(interrupted, train, val, SPEC, two, out_dir=tmp_path / "b", progress=False)
    resumed_model = TinyNet()
    resumed = fit(resumed_model, train, val, SPEC, CONFIG, out_dir=tmp_path / "b", resume=True, progress=False)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    assert [r["val_map"] for r in resumed.history] == pytest.approx([r["val_map"] for r in first.history])
    torch.testing.assert_close(resumed_model.state_dict(), straight.state_dict())


def test_training_lowers_the_loss_and_qat_finetunes_with_fixed_ranges():
    from calibration.data import WindowReader
    from calibration.ptq import calibrate
    from models.qat import quantizers, set_quantization, to_qat

    recs = recordings()
    torch.manual_seed(1)
    model = TinyNet()
    config = TrainConfig(epochs=4, steps_per_epoch=8, batch_size=8, lr=1e-2, warmup_steps=1, seed=0)
    result = fit(model, recs[:4], recs[4:], SPEC, config, progress=False)
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < losses[0]

    qat = to_qat(model, batch_size=8, seq_len=SPEC.n_patches)
    calibrate(qat, WindowReader(recs[:4], SPEC, limit=32, batch_size=8), "percentile", progress=False)
    set_quantization(qat, True)
    ranges = {n: q.amax.clone() for n, q in quantizers(qat).items()}
    before = qat.head.weight.detach().clone()
    fine = fit(qat, recs[:4], recs[4:], SPEC, TrainConfig(epochs=1, steps_per_epoch=3, batch_size=8, lr=1e-3,
                                                           warmup_steps=1), progress=False)
    assert np.isfinite(fine.history[0]["train_loss"])
    assert not torch.equal(before, qat.head.weight.detach())
    for name, q in quantizers(qat).items():
        torch.testing.assert_close(q.amax, ranges[name])
        assert q.mode == "quantizing"
    with pytest.raises(Exception, match="fixed batch of 8"):
        fit(qat, recs[:4], recs[4:], SPEC, TrainConfig(epochs=1, steps_per_epoch=1, batch_size=4), progress=False)


def test_augmentation_is_seeded_changes_training_windows_only_and_keeps_labels_aligned():
    from calibration.data import Augment, cut_windows, prepare_recording

    raw = SPEC
    prep = [prepare_recording(toy_recording(1, n=3000), raw)]
    starts = [(0, 100), (0, 900)]
    plain = cut_windows(prep, starts, raw)
    one = cut_windows(prep, starts, raw, augment=Augment(), rng=np.random.default_rng(5))
    two = cut_windows(prep, starts, raw, augment=Augment(), rng=np.random.default_rng(5))
    np.testing.assert_array_equal(one.x, two.x)                  # seeded
    assert not np.allclose(one.x, plain.x)                       # and really changed
    # no warp, no rotation, no noise, unit scale: the plain windows come back
    identity = Augment(rotation_deg=0.0, scale=(1.0, 1.0), warp=(1.0, 1.0), noise_g=(0.0, 0.0))
    same = cut_windows(prep, starts, raw, augment=identity, rng=np.random.default_rng(0))
    np.testing.assert_allclose(same.x, plain.x, atol=1e-5)
    np.testing.assert_array_equal(same.labels, plain.labels)
    # a pure time warp by 2: the labelled patch lands at half its distance from the window start
    slow = Augment(rotation_deg=0.0, scale=(1.0, 1.0), warp=(2.0, 2.0), noise_g=(0.0, 0.0))
    rec = prep[0]
    first = int(np.flatnonzero(rec.labels[:, 1])[0])
    start = max(0, first - 20)
    warped = cut_windows(prep, [(0, start)], raw, augment=slow, rng=np.random.default_rng(0))
    patch_at = int(np.flatnonzero(warped.labels[0, :, 1])[0])
    assert patch_at == (first - start) // 2 // SPEC.patch


def test_validation_is_never_augmented():
    from calibration.train import evaluate

    recs = recordings()
    runs = []
    for augment in (True, False):
        torch.manual_seed(0)
        model = TinyNet()
        config = TrainConfig(**{**CONFIG.__dict__, "epochs": 1, "augment": augment})
        runs.append((model, fit(model, recs[:4], recs[4:], SPEC, config, progress=False)))
    (augmented, with_aug), (_, without) = runs
    assert with_aug.history[0]["train_loss"] != without.history[0]["train_loss"]   # training windows differ
    # the recorded validation mAP is the plain (unaugmented) score of the final weights
    assert evaluate(augmented, recs[4:], SPEC)["map"] == pytest.approx(with_aug.history[-1]["val_map"])


def test_untyped_windows_are_trained_on_any_fog():
    from calibration.train import fog_loss
    logits = torch.tensor([[[2.0, -1.0, 0.5]], [[-3.0, 1.0, 0.0]]])     # (B=2, patches=1, C=3)
    targets = torch.tensor([[[1.0, 0.0, 0.0]], [[1.0, 1.0, 1.0]]])      # window 1: an untyped freeze
    mask = torch.ones(2, 1, 3)
    typed = torch.tensor([True, False])
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    per_class = bce(logits[0], targets[0], reduction="sum")
    any_fog = bce(torch.tensor([1.0]), torch.tensor([1.0]), reduction="sum") * 3   # max logit 1.0, weighs 3
    torch.testing.assert_close(fog_loss(logits, targets, mask, typed), (per_class + any_fog) / 6)
    torch.testing.assert_close(fog_loss(logits, targets, mask, torch.tensor([True, True])),
                               masked_bce(logits, targets, mask))
    # only the largest logit of an untyped window gets a gradient: the model may call the freeze any type
    logits.requires_grad_(True)
    fog_loss(logits, targets, mask, typed).backward()
    assert (logits.grad[1, 0] != 0).tolist() == [False, True, False]


def test_end_weight_weighs_the_last_two_seconds_of_a_window():
    from calibration.train import end_weights
    w = end_weights(128, 0.125, 3.0)[0, :, 0]
    assert w.shape == (128,) and (w[:112] == 1).all() and (w[112:] == 4).all()
    assert (end_weights(128, 0.125, 0.0) == 1).all()
