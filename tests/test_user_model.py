"""A user's own PyTorch model through `module:factory` + weights: the real 4th-place residual BiGRU (trained weights
from ../shared, skipped when absent) and clear errors for a factory that cannot be found or weights that do not fit."""
from __future__ import annotations

import pytest

from deploy.bundle import Bundle
from deploy.errors import FogError
from toolkit.cli import main as cli
from toolkit.export.source import resolve

FACTORY = "tests.fixtures.user_models:residual_bigru"
CLASSES = "StartHesitation,Turn,Walking,NoEvent"


@pytest.mark.shared
def test_fourth_place_bigru_exports_for_jetson_with_int8(fourth_place_dir, tmp_path, capsys):
    out = tmp_path / "bigru"
    rc = cli(["export", "--model", FACTORY, "--weights", str(fourth_place_dir / "model.pth"), "--rate-hz", "50",
              "--units", "m/s^2", "--normalization", "recording", "--classes", CLASSES, "--activation", "softmax",
              "--background-class", "NoEvent", "--n-patches", "32",
              "--calib-windows", "16", "--verify-windows", "8", "--target", "jetson", "--out", str(out), "--quiet"])
    assert rc == 0
    manifest = Bundle.load(out).manifest
    assert manifest["model"]["source"] == "user" and manifest["model"]["weights_sha256"]
    import torch
    state = torch.load(fourth_place_dir / "model.pth", map_location="cpu", weights_only=True)
    assert manifest["model"]["parameters"] == sum(t.numel() for t in state.values())
    pre = manifest["input"]["preprocess"]
    assert (pre["rate_hz"], pre["units"], pre["patch"], pre["layout"]) == (50.0, "m/s^2", 1, "BTC")
    assert manifest["output"]["classes"] == CLASSES.split(",") and manifest["output"]["per"] == "sample"
    pairs = manifest["verification"]["pairs"]
    assert all(p["passed"] for p in pairs.values()) and pairs["torch_vs_ort_int8"]["mean_abs"] < 0.01
    assert all(c["passed"] for c in manifest["checks"] if not c["name"].startswith("detector: fires"))
    assert "Q/DQ rules" in capsys.readouterr().out


def test_unknown_factory_and_mismatched_weights_are_user_errors(tmp_path):
    with pytest.raises(FogError, match="cannot import 'tests.fixtures.user_models:nope'"):
        resolve("tests.fixtures.user_models:nope")
    import torch
    torch.save({"fc_in.weight": torch.zeros(2, 2)}, tmp_path / "w.pt")
    with pytest.raises(FogError, match="do not fit the model"):
        resolve("tests.fixtures.user_models:tiny_bigru", weights=tmp_path / "w.pt")
    with pytest.raises(FogError, match="not a preset"):
        resolve("no-such-model")
