"""The build kit's on-device check can fail (issue 27): the comparison `kit/build_engine.sh` runs after building the
engine (Polygraphy's comparator on the engine's saved outputs against `kit/reference.npz`) is run here, without
TensorRT, on outputs standing in for the engine's: onnxruntime's own outputs of the graph the engine is built from
pass; all-zero outputs and the right outputs for the wrong windows (shuffled) fail, also for a model whose
probabilities peak at 0.03 (the old kit's single window and absolute 0.05 let zeros pass there)."""
from __future__ import annotations

import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest

from deploy.bundle import Bundle
from toolkit.cli import main as cli
from toolkit.export.buildkit import ENGINE_ATOL, Reference, reference, write_kit
from toolkit.export.targets import get_target

polygraphy = pytest.importorskip("polygraphy", reason="polygraphy is not installed (pip install -e .[test])")
BINARY = shutil.which("polygraphy")
pytestmark = pytest.mark.skipif(BINARY is None, reason="the polygraphy command is not on PATH")


def _save_outputs(path, outputs: np.ndarray) -> None:
    """Outputs standing in for the engine's, saved as `polygraphy run --save-outputs` saves them."""
    from polygraphy.comparator import RunResults
    from polygraphy.comparator.struct import IterationResult
    RunResults([("engine-stand-in", [IterationResult({"probs": np.asarray(y, np.float32)},
                                                     runner_name="engine-stand-in") for y in outputs])]).save(str(path))


def _kit_compares(bundle, outputs: np.ndarray) -> int:
    """The exit code of the kit's own comparison line on `outputs` (after its converter wrote the reference)."""
    cache = bundle / "cache"
    cache.mkdir(exist_ok=True)
    subprocess.run([sys.executable, "kit/npz_to_polygraphy.py", "kit/reference.npz", "cache"], cwd=bundle, check=True,
                   capture_output=True)
    _save_outputs(cache / "engine_outputs.json", outputs)
    (line,) = [ln for ln in (bundle / "kit" / "build_engine.sh").read_text().splitlines()
               if ln.startswith("polygraphy run --load-outputs")]
    return subprocess.run([BINARY, *shlex.split(line)[1:]], cwd=bundle, capture_output=True, text=True).returncode


@pytest.fixture(scope="module")
def jetson_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("kit") / "b"
    assert cli(["export", "--model", "tests.fixtures.user_models:tiny_convnet", "--rate-hz", "64", "--patch", "4",
                "--input-layout", "BCT", "--n-patches", "16", "--target", "jetson", "--no-fidelity",
                "--out", str(out), "--quiet"]) == 0
    return out


def test_onnxruntime_passes_the_kit_check_and_zeros_or_shuffled_outputs_fail(jetson_bundle):
    from toolkit.export.verify import ort_session
    bundle = Bundle.load(jetson_bundle)
    ref = np.load(jetson_bundle / "kit" / "reference.npz")
    kit = bundle.manifest["export"]["kit"]
    assert len(ref["x"]) == kit["reference_windows"]["windows"] >= 16       # many windows, not one
    assert kit["atol"] == pytest.approx(min(ENGINE_ATOL["int8"], 0.1 * kit["reference_windows"]["spread"]))
    session = ort_session(jetson_bundle / bundle.manifest["models"]["int8"], as_written=True)   # as TensorRT is fed
    own = np.stack([session.run(None, {"x": x})[0] for x in ref["x"]])
    assert _kit_compares(jetson_bundle, own) == 0
    assert _kit_compares(jetson_bundle, np.zeros_like(own)) != 0
    assert _kit_compares(jetson_bundle, np.roll(own, 1, axis=0)) != 0       # right outputs, wrong windows


def test_a_model_whose_probabilities_peak_at_0_03_still_fails_on_zeros(tmp_path):
    rng = np.random.default_rng(0)
    outputs = rng.uniform(0.001, 0.029, size=(32, 1, 16, 3)).astype(np.float32)
    ref = Reference(rng.normal(size=(32, 1, 12, 16)).astype(np.float32), outputs, "test arrays", "int8")
    write_kit(tmp_path, get_target("jetson"), model_file="model_int8_qdq.onnx", precision="int8", ref=ref)
    assert _kit_compares(tmp_path, outputs + rng.normal(0, 1e-4, outputs.shape)) == 0
    assert _kit_compares(tmp_path, np.zeros_like(outputs)) != 0
    assert _kit_compares(tmp_path, outputs[::-1]) != 0
    assert ref.atol < 0.005                                                  # a tenth of the spread, not 0.05


def test_the_reference_windows_span_the_any_fog_range():
    """Windows whose peak any-FOG probability is known: the reference keeps the lowest, the highest and evenly
    spaced ranks between, in their original order, and runs them again as the engine's batches."""
    peaks = np.random.default_rng(1).permutation(np.linspace(0.0, 1.0, 101))
    windows = peaks[:, None, None].astype(np.float32) * np.ones((101, 4, 2), np.float32)
    runs = []

    def run(batch):                                     # (B, 4, 2) -> (B, 4, 3): class 1 carries the window's peak
        runs.append(len(batch))
        out = np.zeros((len(batch), 4, 3), np.float32)
        out[:, :, 1] = batch[:, :, 0]
        return out
    ref = reference(run, windows, batch=1, precision="int8", data="test", columns=[0, 1, 2])
    kept = ref.outputs.reshape(len(ref.outputs), -1).max(axis=1)
    assert len(ref.inputs) == 32 and kept.min() == 0.0 and kept.max() == 1.0
    assert np.allclose(np.sort(kept), np.linspace(0, 1, 101)[np.round(np.linspace(0, 100, 32)).astype(int)])
    positions = [int(np.flatnonzero(windows[:, 0, 0] == x[0, 0, 0])[0]) for x in ref.inputs]
    assert positions == sorted(positions)                                   # the windows' own order, not by rank
    assert len(runs) == 101 + 32 and ref.atol == ENGINE_ATOL["int8"]        # spread 1: the precision's limit
