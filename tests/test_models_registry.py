"""The preset registry and `toolkit models`."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deploy.preprocess import PreprocessSpec
from deploy.recording import CLASSES
from models import Preset, TransformerLSTMPlus, create_model, get_preset, list_presets
from models.ensemble import LogitMean
from toolkit import cli


def test_required_presets_and_their_shape():
    assert {"fog-small", "fog-1st-place"} <= set(list_presets())
    small = get_preset("fog-small")
    assert small.factory is TransformerLSTMPlus
    assert small.kwargs == dict(c_in=24, c_out=3, seq_len=128, d=128, d_model=64, nhead=4, num_encoder_layers=2,
                                dim_feedforward=128, num_rnn_layers=1, bidirectional=True, dropout=0.1,
                                input_zscore=True, fi_blend=0.25,
                                fi_kwargs={"rate_hz": 64.0, "power_weight": 1.0, "eps": 1e-6})
    assert small.preprocess == {"rate_hz": 64, "units": "g", "patch": 8, "n_patches": 128,
                                "normalization": "window", "scale": 1.0, "layout": "BCT", "min_std": 1.0,
                                "gravity_align": True, "horizontal": "principal"}
    assert small.events == {"on": 0.4, "off": 0.25, "lookahead_s": 1.0}
    # the bundled default: three fog-small networks in one graph, the same input, its own event threshold
    # (models/weights/CHOICE_RULE_ROUND4.md)
    default = get_preset("fog-small-x3")
    assert default.factory is LogitMean and default.family == "TransformerLSTMPlus"
    assert default.kwargs == {"member": "TransformerLSTMPlus", "n_members": 3, **small.kwargs}
    assert default.preprocess == small.preprocess
    assert default.events == {"on": 0.3, "off": 0.15, "lookahead_s": 1.0}
    first = get_preset("fog-1st-place")
    assert first.preprocess == {"rate_hz": 128, "units": "m/s^2", "patch": 18, "n_patches": 864,
                                "normalization": "recording", "scale": 25.0, "layout": "BCT"}
    assert (first.kwargs["c_in"], first.kwargs["seq_len"], first.kwargs["num_encoder_layers"],
            first.kwargs["num_rnn_layers"]) == (54, 864, 5, 2)
    assert first.kwargs["dim_feedforward"] == first.kwargs["d_model"] == 324
    assert first.kwargs["d_model"] % first.kwargs["nhead"] == 0 and "324" in first.description


@pytest.mark.parametrize("name", list_presets())
def test_preset_contract(name):
    """Per-patch contract, classes in the project's order, a preprocess spec deploy/ accepts."""
    preset = get_preset(name)
    assert dataclasses.is_dataclass(preset) and isinstance(preset, Preset)
    with pytest.raises(dataclasses.FrozenInstanceError):
        preset.name = "other"
    assert tuple(preset.classes) == tuple(CLASSES)
    spec = PreprocessSpec.from_dict(preset.preprocess)
    x_shape, y_shape = preset.io_shapes(batch=2)
    assert x_shape == (2, spec.patch * 3, spec.n_patches)
    assert y_shape == (2, spec.n_patches, len(CLASSES))
    assert preset.description


@pytest.mark.parametrize("name", [n for n in list_presets() if n != "fog-1st-place"])
def test_preset_forward_matches_declared_shapes(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    x_shape, y_shape = get_preset(name).io_shapes(batch=2)
    with torch.no_grad():
        assert tuple(model(torch.randn(*x_shape)).shape) == y_shape


def test_first_place_size():
    model = create_model("fog-1st-place")
    assert 11_000_000 < sum(p.numel() for p in model.parameters()) < 13_000_000
    assert model.backbone.enc_layers[0].self_attn.num_heads == 6


def test_overrides_and_copies():
    model = create_model("fog-small", tsai_compat=True, dropout=0.0)
    assert model.tsai_compat and model.backbone.enc_layers[0].dropout.p == 0.0
    shorter = create_model("fog-small", seq_len=32).eval()       # per-patch stays per-patch
    with torch.no_grad():
        assert tuple(shorter(torch.randn(1, 24, 32)).shape) == (1, 32, 3)
    get_preset("fog-small").kwargs["d_model"] = 8                 # a caller's copy, not the registry
    assert get_preset("fog-small").kwargs["d_model"] == 64


def test_unknown_preset_names_the_choices():
    with pytest.raises(KeyError, match="fog-small"):
        create_model("fog-huge")
    with pytest.raises(KeyError, match="unknown preset 'nope'"):
        get_preset("nope")


def test_models_package_does_not_import_onnx():
    code = "import sys, models; assert 'onnx' not in sys.modules and 'deploy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(Path(__file__).resolve().parents[1]))


def test_toolkit_models_lists_presets(capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    for name in list_presets():
        assert name in out
    assert "143,683" in out and "(1, 24, 128)" in out and "(1, 128, 3)" in out


def test_toolkit_models_has_a_family_column_with_a_preset_per_family(capsys):
    from models.registry import FAMILIES
    assert cli.main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["preset", "family", "class"]
    rows = {line.split()[0]: line.split()[1] for line in lines[1:] if line.startswith("fog-")}
    assert rows["fog-scrn"] == "SCRN" and rows["fog-gru-transformer"] == "TransformerGRUPlus"
    assert set(rows.values()) == set(FAMILIES)


def test_toolkit_models_json_and_one_preset(capsys):
    assert cli.main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    small = next(r for r in rows if r["name"] == "fog-small")
    assert small["parameters"] == sum(p.numel() for p in create_model("fog-small").parameters())
    assert small["input_shape"] == [1, 24, 128] and small["output_shape"] == [1, 128, 3]
    assert cli.main(["models", "fog-small"]) == 0
    assert "TransformerLSTMPlus" in capsys.readouterr().out
    assert cli.main(["models", "nope"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err


def test_shipped_weights_load_through_the_one_weights_loader():
    """The registry says where the shipped weights are; calibration.checkpoint (the one loader) reads them."""
    import torch

    from calibration.checkpoint import load_model
    from models import create_model, pretrained_path

    path = pretrained_path("fog-small")
    if path is None:
        pytest.skip("no shipped weights for fog-small in this checkout")
    trained, preset, checkpoint = load_model("fog-small")
    assert (preset, checkpoint) == ("fog-small", path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert all(torch.equal(trained.state_dict()[k], v) for k, v in state.items())
    untrained = create_model("fog-small").state_dict()
    assert any(not torch.equal(untrained[k], v) for k, v in state.items())   # the weights really were loaded
    assert pretrained_path("fog-1st-place") is None
    with pytest.raises(TypeError, match=r"calibration.checkpoint.load_model\('fog-small'"):
        create_model("fog-small", pretrained=True)
