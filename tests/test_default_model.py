"""The bundled default model: loads as a plain state_dict, keeps issue 12's bar on unseen synthetic subjects, raises
few false alarms on real walking, and its INT8 (PTQ) variant agrees with it."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from calibration.checkpoint import DEFAULT_PRESET, load_model  # noqa: E402
from models.registry import WEIGHTS_DIR  # noqa: E402
from deploy.recording import CLASSES  # noqa: E402

WEIGHTS = WEIGHTS_DIR / f"{DEFAULT_PRESET}.pt"     # fog-small-x3: three fog-small networks (models.ensemble)


def test_weights_are_a_small_plain_state_dict_with_a_description():
    from models import create_model

    assert WEIGHTS.exists(), f"{WEIGHTS} is missing: run scripts/train_default.sh"
    assert WEIGHTS.stat().st_size < 3 * 2**20
    state = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    model = create_model(DEFAULT_PRESET)
    model.load_state_dict(state)                         # strict: every key, every shape
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())
    info = json.loads(WEIGHTS.with_suffix(".json").read_text())
    assert info["preset"] == DEFAULT_PRESET and "train_data" in info
    assert [m["seed"] for m in info["members"]] == [0, 1, 2]      # one network per seed, each trained on all shared
    member = torch.load(WEIGHTS_DIR / "fog-small.pt", map_location="cpu", weights_only=True)   # seed 0 alone
    assert all(torch.equal(member[k], state[f"members.0.{k}"]) for k in member)
    train_subjects = (set(info["train_data"]["subjects"]) | set(info["val_data"]["subjects"])
                      | set(info["synthetic_train_subjects"]))
    assert {"S02", "S03", "S06"} <= train_subjects
    assert not any(s.startswith("syn1000-") for s in train_subjects)   # the held-out seed is never trained on


def _held_out(spec):
    from calibration.data import prepare_recording, synthetic_recordings
    recordings = synthetic_recordings(3, seed=2024, minutes=3.0)   # subjects no checkpoint has seen
    return recordings, [prepare_recording(r, spec) for r in recordings]


def test_default_model_keeps_the_synthetic_bar_on_unseen_synthetic_subjects():
    from calibration.data import as_spec
    from calibration.model_report import scored
    from deploy.events import DEFAULT_SETTINGS
    from models import get_preset

    model, preset, checkpoint = load_model(DEFAULT_PRESET)
    assert checkpoint == WEIGHTS
    spec = as_spec(get_preset(preset).preprocess)
    recordings, _ = _held_out(spec)
    figures = scored(model, recordings, spec, DEFAULT_SETTINGS, DEFAULT_PRESET)
    ours, baseline = figures["model"]["any_fog"]["ap"], figures["freeze_index"]["any_fog"]["ap"]
    # issue 12's bar: held-out synthetic any-FOG AP stays >= 0.45. The default carries the freeze index with its
    # power gate at full weight (chosen on the real folds), which costs it the lead over the index on synthetic
    # data (model report: 0.609 vs 0.755; the card says so) while it leads by 0.16-0.24 AP on real held-out freezes
    assert ours >= 0.45, (ours, baseline)


def test_int8_ptq_of_the_default_model_agrees_with_float():
    from calibration.data import WindowReader, as_spec, sample_windows
    from calibration.ptq import agreement, calibrate, predict_probs
    from deploy.metrics import average_precision
    from models import get_preset
    from models.qat import set_quantization, to_qat

    model, preset, _ = load_model(DEFAULT_PRESET)
    spec = as_spec(get_preset(preset).preprocess)
    recordings, prepared = _held_out(spec)
    qat = to_qat(model, batch_size=16, seq_len=spec.n_patches)
    calibrate(qat, WindowReader(prepared[:2], spec, limit=32, batch_size=16), "mse", progress=False)
    set_quantization(qat, True)
    windows = sample_windows(prepared[2:], spec, 32, seed=1)
    report = agreement(model, qat, windows, classes=CLASSES)
    # Single patches may move (max error), but on average INT8 tracks float and ranks freezes as well: any-FOG (what
    # the default's events decide on, mode "any") within issue 25's 0.01 AP, the per-class mean within 0.02. Here the
    # ensemble moves them by 0.0015 and 0.0075 (a single round-three network moved the per-class mean by 0.018-0.023,
    # which is why this test allowed 0.03 for it; MODEL_CARD.md).
    assert report["mean_abs_prob_error"] < 0.01 and report["max_abs_prob_error"] < 0.5, report
    assert np.isfinite(report["map_int8"]) and abs(report["map_drop"]) < 0.02, report
    truth = windows.labels.max(-1).ravel() > 0.5
    any_fog = [average_precision(truth, predict_probs(m, windows.x).max(-1).ravel()) for m in (model, qat)]
    assert abs(any_fog[0] - any_fog[1]) < 0.01, any_fog


def test_default_model_raises_far_fewer_false_alarms_than_the_freeze_index_on_real_walking(mobgap_dir):
    """Real FOG-free lower-back walking (never trained on; the threshold was chosen with the fold networks' alarms on
    it), the bundle's event settings (the preset's): the shipped weights keep issue 25's bar (at most 10 false alarms
    per hour: 1 in 9.8 min), under a quarter of the freeze index's, and the card states the exact figure, measured
    by this same code."""
    from calibration.data import as_spec
    from calibration.model_report import mobgap_recordings, scored
    from deploy.contract.events import EventSettings
    from models import get_preset

    model, preset, _ = load_model(DEFAULT_PRESET)
    spec = as_spec(get_preset(preset).preprocess)
    walking = mobgap_recordings(mobgap_dir.parent.parent)
    for r in walking:
        r.labels = None
    settings = EventSettings.resolve(get_preset(preset).events)   # what its bundles carry, as the report uses
    figures = scored(model, walking, spec, settings, DEFAULT_PRESET)
    ours, baseline = figures["model"]["unlabelled"], figures["freeze_index"]["unlabelled"]
    assert ours["recordings"] >= 8, ours
    assert ours["false_alarms_per_hour"] <= 10, ours
    assert ours["false_alarms_per_hour"] < baseline["false_alarms_per_hour"] / 4, (ours, baseline)
    card = json.loads(WEIGHTS.with_suffix(".json").read_text())["figures"]["mobgap_walking"]
    assert card["model"]["unlabelled"]["false_alarms"] == ours["false_alarms"]   # the card's figure is measured here


def _turned(recording, rotation):
    from dataclasses import replace
    return replace(recording, acc=recording.acc @ rotation.T, meta=dict(recording.meta))


def _rotations(seed: int = 25):
    """Upside down, AP and ML swapped (a mirror), and random 3-D rotations (one of them mirrored)."""
    rng = np.random.default_rng(seed)
    out = [np.diag([-1.0, -1.0, 1.0]), np.array([[1.0, 0, 0], [0, 0, 1], [0, 1, 0]])]
    for mirror in (False, False, True):
        q, r = np.linalg.qr(rng.normal(size=(3, 3)))
        q = q * np.sign(np.diag(r))
        q = q if np.linalg.det(q) > 0 else -q
        out.append(q @ np.diag([1.0, -1.0, 1.0]) if mirror else q)
    return out


@pytest.mark.shared
def test_the_default_decides_the_same_however_the_sensor_is_worn(daphnet_dir):
    """Real recordings of both labs turned by random 3-D rotations (upside down, mirrored, AP and ML swapped): the
    default's any-FOG AP moves by < 0.02 and its events stay the same (issue 25's rotation test)."""
    from calibration.data import as_spec
    from calibration.loso import predict
    from deploy.events import DEFAULT_SETTINGS
    from deploy.recording import read_recordings
    from deploy.scoring import score
    from models import get_preset
    from tests.conftest import shared_path

    stanford = shared_path("data", "stanford-imu-fog-64hz")
    labs = {"daphnet": [daphnet_dir / "S08R01E1.txt", daphnet_dir / "S09R01E1.txt"],
            "stanford": [stanford / f"{t}.npz" for t in ("pt1_visit_24_tbc_walklr_1_trial_1",
                                                         "pt6_visit_19_tbc_walklr_0_trial_2",
                                                         "pt2_visit_25_tbc_walklr_1_trial_1")]}
    model, preset, _ = load_model(DEFAULT_PRESET)
    spec = as_spec(get_preset(preset).preprocess)
    settings = {**DEFAULT_SETTINGS, **get_preset(preset).events}
    for lab, paths in labs.items():
        recordings = read_recordings([str(p) for p in paths])
        want = score(recordings, predict(model, spec, recordings), settings)
        for rotation in _rotations():
            turned = [_turned(r, rotation) for r in recordings]
            got = score(turned, predict(model, spec, turned), settings)
            assert abs(got["any_fog"]["ap"] - want["any_fog"]["ap"]) < 0.02, (lab, rotation, got["any_fog"]["ap"],
                                                                             want["any_fog"]["ap"])
            assert [r["events"] for r in got["per_recording"]] == [r["events"] for r in want["per_recording"]], lab


@pytest.mark.shared
def test_the_upside_down_workbooks_of_pt6_are_scored_as_worn_the_right_way_up():
    """pt6's visit-19 workbooks were recorded with the sensor upside down (AccV +9.6 m/s^2): read as they are, with
    no per-file setting, the default scores them as it scores the same samples turned the right way up."""
    pytest.importorskip("openpyxl")
    from calibration.data import as_spec
    from calibration.loso import predict
    from deploy.events import DEFAULT_SETTINGS
    from deploy.recording import read_recording
    from deploy.scoring import score
    from models import get_preset
    from tests.conftest import shared_path

    worn = read_recording(str(shared_path("data", "stanford-imu-fog", "pt6_visit_19_tbc_walklr_0_trial_2.xlsx")))
    assert worn.acc[:, 0].mean() > 9.0                               # upside down, as recorded
    upright = _turned(worn, np.diag([-1.0, -1.0, 1.0]))
    model, preset, _ = load_model(DEFAULT_PRESET)
    spec = as_spec(get_preset(preset).preprocess)
    settings = {**DEFAULT_SETTINGS, **get_preset(preset).events}
    got, want = (score([r], predict(model, spec, [r]), settings) for r in (worn, upright))
    assert want["any_fog"]["episodes_true"] == 6
    assert abs(got["any_fog"]["ap"] - want["any_fog"]["ap"]) < 0.02, (got["any_fog"]["ap"], want["any_fog"]["ap"])
    assert got["per_recording"][0]["events"] == want["per_recording"][0]["events"]
