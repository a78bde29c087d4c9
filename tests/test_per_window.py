"""Per-window models are first-class (issue 18 item 3): `RecurrentClassifier` without per_step gives one (B, C) output
per window. Export records `output.per: "window"` (from the output's rank, not from the patch size); the daemon's
Pipeline and deploy.offline hold a window's decision over the samples it decides on the hop grid (its contribution
span), so a per-window classifier streams like a per-sample one: streamed == offline, the daemon runs, evaluate
scores it. Before: export wrote `per: sample` and `fog-daemon` stopped with "the model outputs 3 steps per window".
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
from deploy.bundle import Bundle  # noqa: E402
from deploy.engines import open_engine  # noqa: E402
from deploy.errors import FogError  # noqa: E402
from deploy.offline import output_per, predict_recording, windows_to_samples  # noqa: E402
from deploy.preprocess import PreprocessSpec  # noqa: E402
from deploy.recording import Recording, write_recording  # noqa: E402
from tests.test_daemon import REPO  # noqa: E402
from tests.test_stream import batch_infer, stream, walking_recording  # noqa: E402
from toolkit.cli import main as cli  # noqa: E402

SPEC = PreprocessSpec(rate_hz=64, patch=8, n_patches=16, normalization="window", layout="BCT")
CLASSIFIER = {"input_size": 24, "hidden_size": 16, "num_classes": 3, "kind": "gru", "channels_first": True}


def _export(out, target: str, **extra) -> Path:
    kwargs = json.dumps({**CLASSIFIER, **extra})
    assert cli(["export", "--model", "models.recurrent:RecurrentClassifier", "--factory-kwargs", kwargs, "--patch", "8",
                "--layout", "BCT", "--rate-hz", "64", "--n-patches", "16", "--target", target, "--calib-windows",
                "16", "--verify-windows", "8", "--quiet", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def window_bundle(tmp_path_factory):
    return Bundle.load(_export(tmp_path_factory.mktemp("pw") / "cpu", "cpu"))


def test_export_records_per_window_from_the_output_rank(window_bundle, tmp_path):
    output = window_bundle.manifest["output"]
    assert output["per"] == "window" and output["shape"] == [1, 3]
    tagger = Bundle.load(_export(tmp_path / "tagger", "cpu", per_step=True)).manifest["output"]
    assert tagger["per"] == "patch" and tagger["shape"] == [1, 16, 3]


def test_per_window_int8_for_jetson(tmp_path):
    manifest = Bundle.load(_export(tmp_path / "jetson", "jetson")).manifest
    assert manifest["precision"] == "int8" and manifest["output"]["per"] == "window"
    assert all(p["passed"] for p in manifest["verification"]["pairs"].values())


def test_output_per_names_each_form_and_refuses_others():
    assert output_per((4, 3), SPEC) == "window"
    assert output_per((4, 16, 3), SPEC) == "patch" and output_per((4, 128, 3), SPEC) == "sample"
    with pytest.raises(FogError, match="expected .batch, classes. per window, .batch, 16 patches"):
        output_per((4, 7, 3), SPEC)
    held = windows_to_samples(np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]), SPEC)
    assert held.shape == (2, 128, 3) and np.all(held[1] == [0.4, 0.5, 0.6])


def test_lookahead_zero_holds_each_windows_decision_over_its_last_hop():
    counter = iter(range(10 ** 6))

    def infer(x):  # answers with the index of the window it was given
        return np.array([[float(next(counter))] * 3 for _ in x])

    rec = Recording(np.random.default_rng(0).normal(size=(200, 3)), 64.0, "g")
    out = predict_recording(rec, SPEC, infer, hop_samples=32, lookahead_samples=0)[:, 0]
    assert np.array_equal(out, np.arange(200) // 32)
    counter = iter(range(10 ** 6))  # one hop of look-ahead: the mean of the two windows ending within it
    out = predict_recording(rec, SPEC, infer, hop_samples=32, lookahead_samples=32)[:, 0]
    assert np.allclose(out[:192], np.arange(192) // 32 + 0.5)


@pytest.mark.parametrize("hop,lookahead", [(32, None), (32, 0), (20, 50)])
def test_streamed_equals_offline(window_bundle, hop, lookahead):
    engine = open_engine(window_bundle, backend="onnxruntime", threads=1)
    spec = PreprocessSpec.from_dict(window_bundle.manifest["input"]["preprocess"])
    rec = walking_recording(seconds=20.3)
    got, _, _ = stream(rec, spec, engine, hop=hop, lookahead=lookahead)
    expected = predict_recording(rec, spec, batch_infer(engine), hop, lookahead)
    assert got.shape == expected.shape == (rec.n_samples, 3)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert np.ptp(got[:, 0]) > 0  # the decisions change over the recording


def test_daemon_and_evaluate_run_a_per_window_bundle(window_bundle, tmp_path):
    rec = tmp_path / "walk.npz"
    write_recording(walking_recording(20.0), rec, "npz")
    result = subprocess.run([sys.executable, "-m", "deploy", str(window_bundle.folder), "--replay", str(rec),
                             "--sink", "-?probs"], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    probs = [json.loads(line) for line in result.stdout.splitlines() if '"probs"' in line]
    assert sum(len(m["p"]) for m in probs) == 20 * 64
    assert cli(["evaluate", str(rec), "--bundle", str(window_bundle.folder), "--json"]) == 0
