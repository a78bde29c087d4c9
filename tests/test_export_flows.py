"""Every export flow docs/export.md documents, through INT8 for a TensorRT target (jetson, the default), at a short
window (N_PATCHES patches) with few calibration and verification windows:

- a preset calibrated on recordings (`--model fog-small --calib-data rec.csv`);
- a tsai checkpoint (`--model fog-small --tsai --weights tsai.pt`) at the default batch 1, where tsai's backbone runs
  its RNN over the batch axis, one step, so the hidden-state quantizers see no data (issue 18 item 2: this ended in
  `ValueError: percentile calibrator saw no data`);
- a checkpoint of this project (`--model run.pt`);
- a user's factory with weights and keyword arguments (`--model module:factory --weights w.pt --factory-kwargs`).

The bundled default at full size is in tests/test_export_presets.py (slow), the 4th-place BiGRU with real weights in
tests/test_user_model.py (skips without ../shared).
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
import models  # noqa: E402
from calibration import ptq  # noqa: E402
from deploy.bundle import Bundle  # noqa: E402
from deploy.recording import write_recording  # noqa: E402
from deploy.synth import synth_recording  # noqa: E402
from toolkit.cli import main as cli  # noqa: E402
from toolkit.export.qdq import GraphIndex, check_qdq  # noqa: E402

N_PATCHES = 6
# --allow-degenerate: the weights saved here were never trained; their always-on detectors are exported on purpose
COMMON = ["--n-patches", str(N_PATCHES), "--target", "jetson", "--calib-windows", "16", "--verify-windows", "8",
          "--quiet", "--allow-degenerate"]


def _export(out, *args) -> dict:
    assert cli(["export", *args, *COMMON, "--out", str(out)]) == 0
    manifest = Bundle.load(out).manifest
    assert manifest["precision"] == "int8" and manifest["target"]["name"] == "jetson-orin-jp6"
    assert manifest["models"]["int8"] and manifest["export"]["calibration"]["windows"] == 16
    assert all(c["passed"] or c.get("warning") for c in manifest["checks"]), manifest["checks"]
    assert any(c["name"] == "Q/DQ rules" and c["model"] == manifest["models"]["int8"] for c in manifest["checks"])
    assert all(p["passed"] for p in manifest["verification"]["pairs"].values())
    assert "torch_vs_ort_int8" in manifest["verification"]["pairs"]
    assert not check_qdq(onnx.load(str(out / manifest["models"]["int8"])))
    return manifest


def _q_scales(path) -> set[float]:
    """Every scale of the graph's QuantizeLinear nodes."""
    graph = GraphIndex(onnx.load(str(path)))
    return {round(float(v), 9) for n in graph.nodes if n.op_type == "QuantizeLinear"
            for v in np.ravel(graph.array(n.input[1]))}


def test_tsai_checkpoint_at_batch_1_calibrates_and_exports_int8(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ptq, "UNUSED_AMAX", 7.25)  # a range no real tensor here has: it must not reach the graph
    torch.manual_seed(0)
    torch.save(models.create_model("fog-small", tsai_compat=True, seq_len=N_PATCHES).state_dict(),
               tmp_path / "tsai.pt")
    out = tmp_path / "tsai"
    manifest = _export(out, "--model", "fog-small", "--tsai", "--weights", str(tmp_path / "tsai.pt"))
    assert manifest["model"]["source"] == "tsai" and manifest["model"]["tsai_compat"] is True
    calibration = manifest["export"]["calibration"]
    assert calibration["unused"] == ["backbone.rnn_layers.0.hidden_quantizers.l0",
                                     "backbone.rnn_layers.0.hidden_quantizers.l0_reverse"]
    assert calibration["unused_amax"] == 7.25
    scales = _q_scales(out / manifest["models"]["int8"])
    assert scales and round(7.25 / 127, 9) not in scales
    assert "2 quantizer(s) inert at this shape" in capsys.readouterr().out


def test_preset_calibrated_on_recordings(tmp_path):
    rec = tmp_path / "walk.csv"
    write_recording(synth_recording(1.0, seed=3, rate_hz=100.0), rec, "defog")
    manifest = _export(tmp_path / "rec", "--model", "fog-small", "--untrained", "--calib-data", str(rec))
    calibration = manifest["export"]["calibration"]
    assert calibration["unused"] == [] and "unused_amax" not in calibration
    assert calibration["data"]["recordings"] == ["walk"]


def test_project_checkpoint(tmp_path):
    preset = models.get_preset("fog-gru-transformer")
    torch.save({"preset": preset.name,
                "state_dict": models.create_model(preset.name, seq_len=N_PATCHES).state_dict(),
                "preprocess": preset.preprocess, "classes": list(preset.classes)}, tmp_path / "run.pt")
    manifest = _export(tmp_path / "ckpt", "--model", str(tmp_path / "run.pt"))
    assert manifest["model"]["source"] == "checkpoint" and manifest["model"]["preset"] == "fog-gru-transformer"


def test_user_factory_with_weights_and_keywords(tmp_path):
    from tests.fixtures.user_models import tiny_bigru
    torch.save(tiny_bigru(hidden=8).state_dict(), tmp_path / "w.pt")
    manifest = _export(tmp_path / "user", "--model", "tests.fixtures.user_models:tiny_bigru", "--weights",
                       str(tmp_path / "w.pt"), "--factory-kwargs", '{"hidden": 8}', "--rate-hz", "50", "--units",
                       "m/s^2", "--classes", "StartHesitation,Turn,Walking,NoEvent")
    assert manifest["model"]["source"] == "user" and manifest["output"]["shape"] == [1, N_PATCHES, 4]
    assert manifest["model"]["factory"] == {"path": "tests.fixtures.user_models:tiny_bigru", "kwargs": {"hidden": 8}}
    assert manifest["model"]["float_graph"] == "fused" and manifest["output"]["per"] == "sample"
