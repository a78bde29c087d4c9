"""Acceptance of issue 18: every family's preset (the ones `toolkit models` lists, one per family) exports with
`toolkit export` for jetson (INT8), jetson-nano (FP16) and cpu (FP32), quietly (the progress lines on stderr, the
summary on stdout, nothing from the exporter), and streams through the daemon (`deploy.daemon.run`, the jetson
bundle on its INT8 graph) on a short synthetic recording: every prepared sample decided once, probabilities in [0, 1].

Kept small: windows of N_PATCHES patches (0.5 s at fog-small's 64 Hz), 16 calibration and 16 verification windows
(192 output elements: fewer would let one element near 0.5 fail the 98 % agreement of an untrained model), each
(preset, target) exported once from weights seeded here (the test order must not change them), a 20 s recording. fog-1st-place (the second TransformerLSTMPlus preset) is
left to tests/test_export_presets.py, which checks its graphs for every target.
"""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
import models  # noqa: E402
from deploy.bundle import Bundle  # noqa: E402
from deploy.config import build_config  # noqa: E402
from deploy.daemon import run  # noqa: E402
from deploy.preprocess import PreprocessSpec, prepare  # noqa: E402
from deploy.recording import write_recording  # noqa: E402
from deploy.synth import synth_recording  # noqa: E402
from models.registry import FAMILIES  # noqa: E402
from toolkit.cli import main as cli  # noqa: E402

N_PATCHES = 4
# fog-small-wide (a measurement preset, issue 17) is a second fog-small: one preset per family here
# one small preset per family: fog-small-x3 is three fog-small networks (models.ensemble), fog-small stands for it
# here (the default's own export: tests/test_export_presets.py)
PRESETS = sorted(name for name in models.list_presets() if name not in ("fog-1st-place", "fog-small-wide", "fog-small-x3"))
PRECISION = {"jetson": "int8", "jetson-nano": "fp16", "cpu": "fp32"}
RECORDING = synth_recording(1 / 3, seed=18, rate_hz=100.0)


@pytest.fixture(scope="module")
def recording_file(tmp_path_factory):
    return write_recording(RECORDING, tmp_path_factory.mktemp("rec") / "walk.npz", "npz")


def test_the_presets_cover_every_family():
    assert sorted(models.get_preset(name).family for name in PRESETS) == sorted(FAMILIES)


def _export_quietly(preset: str, target: str, out, capfd) -> dict:
    torch.manual_seed(0)  # the preset's random initial weights
    assert cli(["export", "--model", preset, "--untrained", "--n-patches", str(N_PATCHES), "--target", target,
                "--calib-windows", "16", "--verify-windows", "16", "--out", str(out)]) == 0
    captured = capfd.readouterr()
    assert captured.out.startswith(f"bundle {out}  (target "), captured.out[:300]
    # at 4 patches every preset runs random initial weights: said once, as a warning, before the first step
    err = captured.err.splitlines()
    warned = [i for i, line in enumerate(err) if line.startswith("export: warning:") and "random initial weights" in line]
    assert len(warned) == 1 and not any(line.startswith("[export ") for line in err[:warned[0]]), err[:5]
    noise = [line for i, line in enumerate(err) if not line.startswith("[export ") and i not in warned]
    assert not noise, noise[:5]
    return Bundle.load(out).manifest


def _stream(bundle_dir, precision: str, recording, out) -> list[dict]:
    config = build_config(None, [{"bundle": str(bundle_dir), "backend": "onnxruntime", "threads": 1,
                                  "precision": precision, "source": {"kind": "replay", "path": str(recording)},
                                  "sinks": [{"kind": "jsonl", "path": str(out), "probs": True}],
                                  "log": {"status_interval_s": 0}}])
    counters = run(config)
    assert counters["balanced"] and counters["accepted"] == RECORDING.n_samples
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.mark.parametrize("target", sorted(PRECISION))
@pytest.mark.parametrize("preset", PRESETS)
def test_preset_exports_for_the_target_and_streams(preset, target, recording_file, tmp_path, capfd):
    manifest = _export_quietly(preset, target, tmp_path / "bundle", capfd)
    assert manifest["precision"] == PRECISION[target] and manifest["model"]["preset"] == preset
    assert all(c["passed"] for c in manifest["checks"])
    assert all(p["passed"] for p in manifest["verification"]["pairs"].values())
    assert ("torch_vs_ort_int8" in manifest["verification"]["pairs"]) == (target == "jetson")
    fp32 = onnx.load(str(tmp_path / "bundle" / manifest["models"]["fp32"]))
    fused = bool({n.op_type for n in fp32.graph.node} & {"LSTM", "GRU", "RNN"})
    assert (manifest["model"]["float_graph"] == "fused") == fused, manifest["model"]["float_graph"]

    messages = _stream(tmp_path / "bundle", "int8" if target == "jetson" else "fp32", recording_file,
                       tmp_path / "probs.jsonl")
    spec = PreprocessSpec.from_dict(manifest["input"]["preprocess"])
    probs = np.concatenate([m["p"] for m in messages if m["type"] == "probs"])
    assert probs.shape == (len(prepare(RECORDING, spec)), 3)
    assert np.all((probs >= 0) & (probs <= 1)) and np.ptp(probs) > 0
