"""A preset for every family of the zoo (issue 18, item 6 of the audit): small, FOG-shaped (3 axes, fog-small's rate,
window and patching), per-patch logits (batch, n_patches, 3).

Export per target is parametrized elsewhere (tests/test_export_presets.py runs every preset against every target's
checks); this file is about the registry: every family has a preset, every preset builds and has the contract's
shapes.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import models
from models import create_model, get_preset, list_presets, registry

# family -> its preset. The two hybrids' LSTM variants had presets before (fog-small, fog-lstm-attention).
PRESET_OF_FAMILY = {
    "TransformerRNNPlus": "fog-rnn-transformer",
    "TransformerLSTMPlus": "fog-small",
    "TransformerGRUPlus": "fog-gru-transformer",
    "RNNAttentionPlus": "fog-rnn-attention",
    "LSTMAttentionPlus": "fog-lstm-attention",
    "GRUAttentionPlus": "fog-gru-attention",
    "RNN": "fog-rnn",
    "GRU": "fog-gru",
    "LSTM": "fog-lstm",
    "SCRN": "fog-scrn",
}
NEW = sorted(set(PRESET_OF_FAMILY.values()) - {"fog-small", "fog-lstm-attention"})
FAST = [name for name in list_presets() if name not in ("fog-1st-place", "fog-small-wide")]  # the large ones


def test_list_presets_covers_every_family():
    assert set(registry.FAMILIES) == set(PRESET_OF_FAMILY)
    assert {get_preset(name).family for name in list_presets()} == set(PRESET_OF_FAMILY)
    for family, name in PRESET_OF_FAMILY.items():
        assert name in list_presets()
        assert get_preset(name).family == family


@pytest.mark.parametrize("name", NEW)
def test_new_presets_are_fog_small_shaped(name):
    preset = get_preset(name)
    # the same window; fog-small alone keeps the amplitude (min_std) for its in-graph freeze-index power term
    window = {k: v for k, v in get_preset("fog-small").preprocess.items() if k != "min_std"}
    assert preset.preprocess == window
    assert preset.classes == get_preset("fog-small").classes
    assert preset.description


def _recurrent_kinds(model: nn.Module) -> set[str]:
    """The recurrent layer kinds inside a built model (what a baseline family's name promises)."""
    kinds = {"SCRN": models.SCRN, "RNN": nn.RNN, "GRU": nn.GRU, "LSTM": nn.LSTM}
    return {kind for kind, cls in kinds.items() if any(isinstance(m, cls) for m in model.modules())}


@pytest.mark.parametrize("name", FAST)
def test_every_preset_builds_and_gives_per_patch_logits(name):
    preset = get_preset(name)
    torch.manual_seed(0)
    model = create_model(name).eval()
    family = preset.family
    if family in ("RNN", "GRU", "LSTM", "SCRN"):
        assert _recurrent_kinds(model) == {family}
    else:   # a seed ensemble (models.ensemble.LogitMean) is of its members' family
        assert type(getattr(model, "members", [model])[0]).__name__ == family
    spec = preset.preprocess
    for batch in (1, 2):
        x_shape, y_shape = preset.io_shapes(batch)
        assert x_shape == (batch, spec["patch"] * 3, spec["n_patches"])
        with torch.no_grad():
            y = model(torch.randn(*x_shape))
        assert tuple(y.shape) == y_shape == (batch, spec["n_patches"], 3)
        assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", FAST)
def test_every_preset_takes_another_window_length(name):
    """`toolkit export --n-patches N` builds create_model(name, seq_len=N): every preset must accept it."""
    model = create_model(name, seq_len=6).eval()
    with torch.no_grad():
        assert tuple(model(torch.randn(1, 24, 6)).shape) == (1, 6, 3)


def test_recurrent_classifier_stays_per_window_by_default():
    model = models.RecurrentClassifier(24, 16, 3, kind="gru").eval()
    with torch.no_grad():
        assert tuple(model(torch.randn(2, 10, 24)).shape) == (2, 3)
    tagger = models.RecurrentClassifier(24, 16, 3, kind="scrn", per_step=True, channels_first=True).eval()
    with torch.no_grad():
        assert tuple(tagger(torch.randn(2, 24, 10)).shape) == (2, 10, 3)
    with pytest.raises(ValueError, match="bidirectional"):
        models.RecurrentClassifier(24, 16, 3, kind="scrn", bidirectional=True)
    options = models.RecurrentClassifier(24, 16, 3, kind="scrn", encoder_kwargs={"alpha": 0.25, "bias": False})
    assert options.encoder.bias is False and float(options.encoder.cells[0].alpha.detach()) == 0.25
    with pytest.raises(TypeError, match="did you mean 'nonlinearity'"):
        models.RecurrentClassifier(24, 16, 3, kind="rnn", encoder_kwargs={"nonlinearty": "relu"})
