"""The on-device build kit: trtexec flags each target's TensorRT accepts, reference data, Polygraphy files."""
from __future__ import annotations

import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest

from toolkit.buildkit import ENGINE_ATOL, TRTEXEC_OPTIONS, generation, write_kit
from toolkit.targets import list_targets


def _trtexec_lines(script: str) -> list[list[str]]:
    return [shlex.split(line.strip())[1:] for line in script.splitlines() if line.strip().startswith('"$TRTEXEC" --')]


def test_generation_of_each_tensorrt_version():
    assert [generation(v) for v in ("8.2.1", "8.5.2", "8.6.2", "10.3", "10.13", "11.4")] == \
        ["8.2", "8.5", "8.5", "10", "10", "11"]


@pytest.mark.parametrize("target", [t for t in list_targets() if t.runtime == "tensorrt"], ids=lambda t: t.name)
def test_each_targets_script_uses_only_flags_its_tensorrt_accepts(tmp_path, target):
    precision = target.default_precision
    kit = write_kit(tmp_path, target, model_file="model_int8_qdq.onnx" if precision == "int8" else "model_fp32.onnx",
                    precision=precision, inputs=np.zeros((1, 6, 4), np.float32),
                    outputs=np.zeros((1, 4, 3), np.float32))
    script = (tmp_path / "kit" / "build_engine.sh").read_text()
    gens = kit["generations"]
    blocks = script.split('if [ "$TRT_MAJOR" = ')[1:]
    assert len(blocks) == len(gens)
    for gen, block in zip(gens, blocks):
        lines = _trtexec_lines(block)
        assert lines, f"no trtexec line for TensorRT {gen}"
        for args in lines:
            flags = {a.split("=")[0] for a in args}
            assert flags <= TRTEXEC_OPTIONS[gen], f"{target.name}: {flags - TRTEXEC_OPTIONS[gen]} on TRT {gen}"
            assert ("--workspace" in flags) == (gen == "8.2")       # memPoolSize only from 8.4
            assert ("--memPoolSize" in flags) == (gen != "8.2")
            if gen == "11":                                       # strongly typed: no precision flags
                assert not flags & {"--fp16", "--int8", "--best"}
            elif precision == "int8" and "--useDLACore" not in flags:
                assert {"--fp16", "--int8"} <= flags and "--onnx=model_int8_qdq.onnx" in args
            elif precision == "fp16":
                assert "--fp16" in flags and "--int8" not in flags
            if "--useDLACore" in flags:
                assert target.dla and "--allowGPUFallback" in flags
                if gen.startswith("8"):  # TensorRT 8 DLA takes no explicit Q/DQ: the FP16 model goes there
                    assert "--int8" not in flags and "--onnx=model_fp32.onnx" in args
    assert ("--useDLACore" in script) == target.dla
    assert f"--atol {ENGINE_ATOL[precision]}" in script and "polygraphy run cache/model.engine" in script
    if shutil.which("bash"):
        subprocess.run(["bash", "-n", str(tmp_path / "kit" / "build_engine.sh")], check=True)
    ref = np.load(tmp_path / "kit" / "reference.npz")
    assert set(ref.files) == {"x", "probs"} and ref["x"].shape == (1, 6, 4)


def test_kit_writes_engine_and_caches_under_cache_so_the_bundle_stays_verifiable(tmp_path):
    target = next(t for t in list_targets() if t.name == "jetson-orin-jp6")
    write_kit(tmp_path, target, model_file="model_int8_qdq.onnx", precision="int8",
              inputs=np.zeros((1, 2, 3), np.float32), outputs=np.zeros((1, 2, 3), np.float32))
    script = (tmp_path / "kit" / "build_engine.sh").read_text()
    for args in _trtexec_lines(script):
        outputs = [a.split("=", 1)[1] for a in args if a.split("=")[0] in
                   ("--saveEngine", "--timingCacheFile", "--exportLayerInfo")]
        assert outputs and all(o.startswith("cache/") for o in outputs)


def test_polygraphy_files_from_the_reference(tmp_path):
    polygraphy = pytest.importorskip("polygraphy", reason="polygraphy is not installed (pip install polygraphy)")
    from polygraphy.comparator import RunResults
    from polygraphy.json import load_json
    target = next(t for t in list_targets() if t.name == "jetson-orin-jp6")
    x, y = np.random.rand(1, 5, 3).astype(np.float32), np.random.rand(1, 5, 3).astype(np.float32)
    write_kit(tmp_path, target, model_file="m.onnx", precision="int8", inputs=x, outputs=y)
    kit = tmp_path / "kit"
    subprocess.run([sys.executable, str(kit / "npz_to_polygraphy.py"), str(kit / "reference.npz"), str(tmp_path)],
                   check=True)
    np.testing.assert_array_equal(load_json(str(tmp_path / "inputs.json"))[0]["x"], x)
    results = RunResults.load(str(tmp_path / "reference_outputs.json"))
    stored = results[0][1][0]["probs"]
    assert polygraphy and np.array_equal(np.asarray(getattr(stored, "load", lambda: stored)()), y)
