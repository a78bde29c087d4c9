"""The on-device build kit: trtexec flags each target's TensorRT accepts, reference data, Polygraphy files."""
from __future__ import annotations

import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest

from toolkit.export.buildkit import COMPARE, ENGINE_ATOL, TRTEXEC_OPTIONS, Reference, generation, write_kit
from toolkit.export.targets import list_targets


def _ref(inputs, outputs, precision="int8") -> Reference:
    return Reference(np.asarray(inputs, np.float32), np.asarray(outputs, np.float32), "test arrays", precision)


def _trtexec_lines(script: str) -> list[list[str]]:
    return [shlex.split(line.strip())[1:] for line in script.splitlines() if line.strip().startswith('"$TRTEXEC" --')]


def test_generation_of_each_tensorrt_version():
    assert [generation(v) for v in ("8.2.1", "8.5.2", "8.6.2", "10.3", "10.13", "11.4")] == \
        ["8.2", "8.5", "8.5", "10", "10", "11"]


@pytest.mark.parametrize("target", [t for t in list_targets() if t.runtime == "tensorrt"], ids=lambda t: t.name)
def test_each_targets_script_uses_only_flags_its_tensorrt_accepts(tmp_path, target):
    precision = target.default_precision
    spread = np.linspace(0, 1, 2 * 4 * 3).reshape(2, 1, 4, 3)       # outputs spanning 0..1: the precision's limit
    kit = write_kit(tmp_path, target, model_file="model_int8_qdq.onnx" if precision == "int8" else "model_fp32.onnx",
                    precision=precision, ref=_ref(np.zeros((2, 1, 6, 4)), spread, precision))
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
            typed = gen == "11" or target.strongly_typed(int(gen.split(".")[0]))
            if typed:                                             # strongly typed: no precision flags
                assert not flags & {"--fp16", "--int8", "--best"}
                assert ("--stronglyTyped" in flags) == (gen == "10")  # a no-op (deprecated) from 11.1
            elif precision == "int8" and "--useDLACore" not in flags:
                assert {"--fp16", "--int8"} <= flags and "--onnx=model_int8_qdq.onnx" in args
            elif precision == "fp16":
                assert "--fp16" in flags and "--int8" not in flags
            if "--useDLACore" in flags:
                assert target.dla and "--allowGPUFallback" in flags
                if gen.startswith("8"):  # TensorRT 8 DLA takes no explicit Q/DQ: the FP16 model goes there
                    assert "--int8" not in flags and "--onnx=model_fp32.onnx" in args
    assert ("--useDLACore" in script) == target.dla
    assert COMPARE.format(atol=ENGINE_ATOL[precision]) in script and "polygraphy run cache/model.engine" in script
    if shutil.which("bash"):
        subprocess.run(["bash", "-n", str(tmp_path / "kit" / "build_engine.sh")], check=True)
    ref = np.load(tmp_path / "kit" / "reference.npz")
    assert set(ref.files) == {"x", "probs"} and ref["x"].shape == (2, 1, 6, 4)


def test_kit_writes_engine_and_caches_under_cache_so_the_bundle_stays_verifiable(tmp_path):
    target = next(t for t in list_targets() if t.name == "jetson-orin-jp6")
    write_kit(tmp_path, target, model_file="model_int8_qdq.onnx", precision="int8",
              ref=_ref(np.zeros((1, 1, 2, 3)), np.zeros((1, 1, 2, 3))))
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
    x, y = np.random.rand(3, 1, 5, 3).astype(np.float32), np.random.rand(3, 1, 5, 3).astype(np.float32)
    write_kit(tmp_path, target, model_file="m.onnx", precision="int8", ref=_ref(x, y))
    kit = tmp_path / "kit"
    subprocess.run([sys.executable, str(kit / "npz_to_polygraphy.py"), str(kit / "reference.npz"), str(tmp_path)],
                   check=True)
    feeds = load_json(str(tmp_path / "inputs.json"))
    assert len(feeds) == 3 and all(np.array_equal(f["x"], x[k]) for k, f in enumerate(feeds))   # one per window
    results = RunResults.load(str(tmp_path / "reference_outputs.json"))
    stored = [np.asarray(getattr(it["probs"], "load", lambda v=it["probs"]: v)()) for it in results[0][1]]
    assert polygraphy and len(stored) == 3 and all(np.array_equal(s, y[k]) for k, s in enumerate(stored))


def _stub(path, body: str):
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)


@pytest.mark.parametrize("dla_core,model,precision", [(None, "model_int8_qdq.onnx", "int8"),
                                                      ("0", "model_fp32.onnx", "fp16")])
def test_kit_script_records_the_model_and_precision_it_built_from(tmp_path, dla_core, model, precision):
    """Run the Xavier kit (TensorRT 8.5: DLA takes no explicit Q/DQ) with stand-ins that only log their arguments;
    the record step the daemon relies on must name what trtexec was really given."""
    target = next(t for t in list_targets() if t.name == "jetson-xavier")
    bundle, stubs, log = tmp_path / "bundle", tmp_path / "bin", tmp_path / "calls.log"
    bundle.mkdir(), stubs.mkdir()
    write_kit(bundle, target, model_file="model_int8_qdq.onnx", precision="int8",
              ref=_ref(np.zeros((1, 1, 2, 3)), np.zeros((1, 1, 2, 3))))
    _stub(stubs / "trtexec", f'[ "$1" = --help ] && echo "[TensorRT v8502]" && exit 0\necho "trtexec $*" >> {log}\n')
    _stub(stubs / "polygraphy", f'echo "polygraphy $*" >> {log}\n')
    _stub(stubs / "python3", f'if [ "$1 $2" = "-m deploy.engines.tensorrt" ]; then echo "record $*" >> {log}; exit 0; fi\n'
                             f'exec {shlex.quote(sys.executable)} "$@"\n')
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "TRTEXEC": str(stubs / "trtexec"), "HOME": str(tmp_path)}
    if dla_core is not None:
        env["DLA_CORE"] = dla_core
    subprocess.run(["bash", str(bundle / "kit" / "build_engine.sh")], check=True, env=env, capture_output=True)
    calls = log.read_text().splitlines()
    built = [c for c in calls if c.startswith("trtexec ")]
    assert len(built) == 1 and f"--onnx={model}" in built[0]
    assert ("--useDLACore=0" in built[0]) == (dla_core is not None)
    assert calls[-1].endswith(f"record-kit-engine . --model {model} --precision {precision}")
