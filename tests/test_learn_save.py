"""fastai/tsai `learn.save()` files ({'model': state_dict, 'opt': optimizer state}) load through the one weights
loader (calibration.checkpoint), with the same strict key check as any other weights file (issue 13)."""
from __future__ import annotations

import pytest
import torch

from calibration.checkpoint import load_model, read_weights
from deploy.errors import FogError
from models import create_model
from toolkit.export.source import resolve


def learn_save(model, path):
    """What fastai's `Learner.save(name, with_opt=True)` writes: the model's state and fastai's optimizer state
    (per-parameter state tensors and per-group hyper-parameters)."""
    state = model.state_dict()
    opt = {"state": [{"grad_avg": torch.randn_like(p), "sqr_avg": torch.rand_like(p), "step": 12}
                     for p in model.parameters()],
           "hypers": [{"lr": 1e-3, "mom": 0.9, "sqr_mom": 0.99, "eps": 1e-5, "wd": 0.01}]}
    torch.save({"model": state, "opt": opt}, path)
    return state


def test_learn_save_file_loads_for_every_command(tmp_path):
    torch.manual_seed(3)
    trained = create_model("fog-small")
    state = learn_save(trained, tmp_path / "model.pth")
    read, info = read_weights(tmp_path / "model.pth")
    assert set(read) == set(state) and info == {}
    model, preset, _ = load_model("fog-small", tmp_path / "model.pth")      # calibrate, evaluate, train
    source = resolve("fog-small", weights=tmp_path / "model.pth")            # export
    for loaded in (model, source.module):
        for name, value in state.items():
            assert torch.equal(loaded.state_dict()[name], value), name
    assert source.weights_path == str(tmp_path / "model.pth") and not source.notes


def test_learn_save_file_with_missing_keys_is_refused(tmp_path):
    trained = create_model("fog-small")
    learn_save(trained, tmp_path / "model.pth")
    whole = torch.load(tmp_path / "model.pth", weights_only=True)
    dropped = sorted(whole["model"])[0]
    del whole["model"][dropped]
    torch.save(whole, tmp_path / "partial.pth")
    with pytest.raises(FogError, match=rf"partial.pth: the weights do not fit the model .*Missing key.*{dropped}"):
        load_model("fog-small", tmp_path / "partial.pth")
    with pytest.raises(FogError, match="do not fit the model"):
        resolve("fog-small", weights=tmp_path / "partial.pth")
