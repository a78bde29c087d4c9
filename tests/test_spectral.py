"""models.spectral: the fixed band powers are the freeze index's, computed inside the model as plain Conv ops."""
import numpy as np
import pytest
import torch

from deploy.freeze_index import freeze_index
from deploy.preprocess import PreprocessSpec, patchify
from models import create_model, get_preset
from models.spectral import FreezeIndexLogit, SpectralBands

SPEC = PreprocessSpec.from_dict(get_preset("fog-small").preprocess)            # keeps the amplitude (min_std 1 g)
ZSPEC = PreprocessSpec.from_dict({**get_preset("fog-small").preprocess, "min_std": 0.0})   # z-scores each window


def _walk_then_tremble(rng):
    """16 s at 64 Hz: 1.8 Hz stepping on every axis, a 6 Hz trembling on AccV from 9 s on, noise, gravity."""
    t = np.arange(SPEC.window) / SPEC.rate_hz
    acc = np.stack([np.sin(2 * np.pi * 1.8 * t + p) for p in (0.0, 1.0, 2.0)], 1) * 0.2
    acc[t > 9, 0] += 0.4 * np.sin(2 * np.pi * 6.0 * t[t > 9])
    return acc + rng.normal(0, 0.02, acc.shape) + np.array([-1.0, 0.0, 0.0])


def test_band_ratio_is_the_freeze_index_at_every_patch_centre():
    rng = np.random.default_rng(0)
    window = _walk_then_tremble(rng)
    features = SpectralBands(SPEC.patch, SPEC.rate_hz)(torch.from_numpy(patchify(window, ZSPEC)))[0].numpy()
    ln_ratio = (features[:, 3] - features[:, 0]) * 2.0            # (ln freeze - ln loco) of AccV, unscaled
    taps = 33 * SPEC.patch                                          # the module's DFT length: 33 whole patches
    centres = np.arange(SPEC.n_patches) * SPEC.patch + SPEC.patch // 2
    ln_fi = np.log(freeze_index(window[:, 0], SPEC.rate_hz, window_s=taps / SPEC.rate_hz, step_s=1 / SPEC.rate_hz))
    inside = np.zeros(SPEC.n_patches, bool)
    inside[17:-17] = True                                           # away from the window's zero-padded ends
    audible = inside & (ln_fi[centres] > -4)                        # where eps (1e-4) does not floor the band
    assert audible.sum() > 40
    assert np.abs(ln_ratio - ln_fi[centres])[audible].max() < 0.1
    assert ln_ratio[100] > ln_ratio[40] + 1.0                       # trembling raises the ratio


def test_features_do_not_depend_on_the_signal_scale_after_the_window_z_score():
    window = _walk_then_tremble(np.random.default_rng(1))
    bands = SpectralBands(SPEC.patch, SPEC.rate_hz)
    a, b = (bands(torch.from_numpy(patchify(w, ZSPEC))) for w in (window, window * 3.0))
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


SPECTRAL = {"rate_hz": 64.0, "window_s": 4.0}


def test_kernels_are_fixed_and_not_saved():
    model = create_model("fog-small", spectral=SPECTRAL)
    names = {n for n, _ in model.named_parameters()}
    assert not any("spectral." in n for n in names) and "backbone.spec_linear.weight" in names
    assert not any(k.startswith("backbone.spectral.") for k in model.state_dict())


def test_spectral_model_exports_with_convolutions_and_no_matmul_on_the_bands(tmp_path):
    onnx = pytest.importorskip("onnx")
    from models.onnx_export import export_onnx
    model = create_model("fog-small", spectral=SPECTRAL, fi_blend=0.0).eval()
    path = export_onnx(model, torch.zeros(1, 24, 128), tmp_path / "m.onnx")
    graph = onnx.load(str(path)).graph
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert len(convs) == 2 and any(n.op_type == "Log" for n in graph.node)


def test_freeze_index_logit_is_zero_at_bachlins_threshold_and_follows_the_band_ratio():
    window = _walk_then_tremble(np.random.default_rng(2))
    x = torch.from_numpy(patchify(window, SPEC))
    logit = FreezeIndexLogit(SPEC.patch, SPEC.rate_hz)(x)[0, :, 0].numpy()
    features = SpectralBands(SPEC.patch, SPEC.rate_hz)(x)[0].numpy()
    ln_fi = (features[:, 3] - features[:, 0]) * 2.0
    np.testing.assert_allclose(logit, 4.0 * (ln_fi - np.log(1.5)), atol=1e-4)
    assert logit[100] > 0 > logit[40]                               # trembling is called, stepping is not


def test_default_preset_adds_the_freeze_index_and_power_logit_and_has_no_extra_weights():
    torch.manual_seed(0)
    blended = create_model("fog-small").eval()
    assert blended.fi_blend == 0.25 and blended.freeze_index.power_weight == 1.0
    plain = create_model("fog-small", fi_blend=0.0).eval()
    plain.load_state_dict(blended.state_dict())                     # strict: the same keys, no new weights
    x = torch.from_numpy(patchify(_walk_then_tremble(np.random.default_rng(3)), SPEC))
    with torch.no_grad():
        difference = blended(x) - plain(x)
        expected = 0.25 * FreezeIndexLogit(SPEC.patch, SPEC.rate_hz, power_weight=1.0, eps=1e-6)(x)
    torch.testing.assert_close(difference, expected.expand_as(difference), atol=1e-4, rtol=1e-4)


def test_the_default_spec_keeps_the_amplitude_and_the_graph_z_scores_the_learnt_part():
    """min_std 1 g leaves a walking window centred, in g; WindowZScore then gives the learnt part exactly what
    the "window" z-score gave it, so the shipped weights see what they were trained on."""
    from models.spectral import WindowZScore
    window = _walk_then_tremble(np.random.default_rng(4))
    kept = patchify(window, SPEC)
    np.testing.assert_allclose(kept.reshape(SPEC.patch, 3, SPEC.n_patches).mean(axis=(0, 2)), 0, atol=1e-6)
    assert 0.1 < kept.std() < 0.5                                   # the signal's own amplitude, in g
    np.testing.assert_allclose(WindowZScore()(torch.from_numpy(kept)).numpy(), patchify(window, ZSPEC), atol=1e-5)
    torch.manual_seed(1)
    new = create_model("fog-small", fi_blend=0.0).eval()
    old = create_model("fog-small", fi_blend=0.0, input_zscore=False).eval()
    old.load_state_dict(new.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(new(torch.from_numpy(kept)), old(torch.from_numpy(patchify(window, ZSPEC))),
                                   atol=1e-5, rtol=1e-5)


def test_power_term_is_the_band_power_of_every_axis_in_g2():
    window = _walk_then_tremble(np.random.default_rng(5))
    x = torch.from_numpy(patchify(window, SPEC))
    plain = FreezeIndexLogit(SPEC.patch, SPEC.rate_hz, eps=1e-6)(x)[0, :, 0].numpy()
    gated = FreezeIndexLogit(SPEC.patch, SPEC.rate_hz, power_weight=0.5, eps=1e-6)(x)[0, :, 0].numpy()
    ln_power = (gated - plain) / (4.0 * 0.5) + np.log(0.02)         # the term, back to ln P (power_ref 0.02 g^2)
    taps = 33 * SPEC.patch
    centres = np.arange(SPEC.n_patches) * SPEC.patch + SPEC.patch // 2
    total = sum(freeze_index(window[:, a], SPEC.rate_hz, window_s=taps / SPEC.rate_hz, step_s=1 / SPEC.rate_hz,
                             return_power=True)[1] for a in range(3))
    inside = slice(17, -17)
    np.testing.assert_allclose(ln_power[inside], np.log(total[centres])[inside], atol=0.1)
    louder = [FreezeIndexLogit(SPEC.patch, SPEC.rate_hz, power_weight=w, eps=1e-6)(2 * x)[0, :, 0].numpy()
              for w in (0.0, 0.5)]
    np.testing.assert_allclose((louder[1] - louder[0]) - (gated - plain), 4.0 * 0.5 * np.log(4.0), atol=1e-3)


def test_old_checkpoint_scaling_each_window_gets_the_amplitude_the_power_term_needs(tmp_path, monkeypatch):
    """A fog-small checkpoint saved with a unit-std preprocess (before the power term) exports with the preset's
    amplitude floor and says so; a model without the in-graph z-score could not, and is refused by name."""
    import models
    from toolkit.export.source import ModelSourceError, from_checkpoint
    preset = models.get_preset("fog-small")
    old = {**preset.preprocess, "min_std": 0.0}
    torch.save({"preset": "fog-small", "state_dict": models.create_model("fog-small").state_dict(),
                "preprocess": old, "classes": list(preset.classes)}, tmp_path / "old.pt")
    source = from_checkpoint(tmp_path / "old.pt")
    assert source.preprocess["min_std"] == preset.preprocess["min_std"] > 0
    assert any("min_std 0.0 -> 1.0" in note for note in source.notes)
    real_create = models.create_model
    monkeypatch.setattr(models, "create_model", lambda name, **kw: real_create(name, **{**kw, "input_zscore": False}))
    with pytest.raises(ModelSourceError, match="power term needs the amplitude in g"):
        from_checkpoint(tmp_path / "old.pt")
