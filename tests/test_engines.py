"""Engines: onnxruntime with pre-allocated I/O equals a plain session; TensorRT pieces that need no GPU."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from deploy.bundle import Bundle
from deploy.engines import Engine, open_engine
from deploy.errors import FogError, MissingDependency
from tests.helpers_bundle import make_bundle, reference_infer


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("bundle"))


def test_onnxruntime_engine_matches_plain_session_and_reuses_buffers(bundle_dir):
    engine = open_engine(Bundle.load(bundle_dir), backend="onnxruntime", threads=1)
    assert isinstance(engine, Engine)
    assert engine.input_name == "x" and engine.input_shape == (1, 24, 32) and engine.output_shape == (1, 32, 3)
    reference = reference_infer(bundle_dir)
    rng = np.random.default_rng(0)
    outputs = []
    for _ in range(3):
        x = rng.normal(size=engine.input_shape).astype(np.float32)
        y = engine.infer(x)
        np.testing.assert_allclose(y, reference(x), rtol=1e-5, atol=1e-6)
        outputs.append(y)
    assert all(o is outputs[0] for o in outputs), "the output buffer must be reused, not reallocated"
    # Writing straight into the bound input buffer (the stream's zero-copy path) must be seen by the next run.
    engine.input_buffer[...] = rng.normal(size=engine.input_shape)
    expected = reference(engine.input_buffer.copy())
    np.testing.assert_allclose(engine.infer(engine.input_buffer), expected, rtol=1e-5, atol=1e-6)
    engine.close()


def test_unknown_backend_and_precision_are_user_errors(bundle_dir):
    bundle = Bundle.load(bundle_dir)
    with pytest.raises(FogError, match="backend"):
        open_engine(bundle, backend="cuda")
    with pytest.raises(FogError, match="precision"):
        open_engine(bundle, precision="int4")


def test_missing_int8_model_falls_back_to_fp32(bundle_dir):
    engine = open_engine(Bundle.load(bundle_dir), backend="onnxruntime", precision="int8")
    assert engine.precision == "fp32"


def test_tensorrt_cache_key_and_builder_flags_follow_the_versions():
    from deploy.engines.tensorrt import builder_flags, cache_key
    base = cache_key("10.3.0", "Orin|sm_87", "ab" * 32, "fp16")
    assert base == cache_key("10.3.0", "Orin|sm_87", "ab" * 32, "fp16")
    for changed in (("8.6.2", "Orin|sm_87", "ab" * 32, "fp16"), ("10.3.0", "Xavier|sm_72", "ab" * 32, "fp16"),
                    ("10.3.0", "Orin|sm_87", "cd" * 32, "fp16"), ("10.3.0", "Orin|sm_87", "ab" * 32, "int8")):
        assert cache_key(*changed) != base
    assert builder_flags(8, "fp16") == ["FP16"] and builder_flags(10, "int8") == ["INT8", "FP16"]
    assert builder_flags(11, "fp16") == [] and builder_flags(10, "fp32") == []


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_tensorrt_missing_names_the_extra(bundle_dir):
    with pytest.raises(MissingDependency, match=r"fog-edge-toolkit\[tensorrt\]"):
        open_engine(Bundle.load(bundle_dir), backend="tensorrt")


@pytest.mark.tensorrt
def test_tensorrt_engine_matches_onnxruntime(bundle_dir, tmp_path):
    if importlib.util.find_spec("tensorrt") is None:
        pytest.skip("tensorrt is not installed (no GPU with TensorRT on this machine); run on a Jetson")
    engine = open_engine(Bundle.load(bundle_dir), backend="tensorrt", cache_dir=tmp_path)
    x = np.random.default_rng(1).normal(size=engine.input_shape).astype(np.float32)
    np.testing.assert_allclose(engine.infer(x), reference_infer(bundle_dir)(x), rtol=1e-3, atol=1e-3)


class _Recorder:
    """Records what build_serialized asks of the TensorRT API. It builds nothing: the "plan" is a marker."""

    def __init__(self, version):
        self.__version__ = version
        self.calls = []
        rec = self

        class Flags:
            EXPLICIT_BATCH = 0
            STRONGLY_TYPED = 1

        class BuilderFlag:
            FP16, INT8 = "FP16", "INT8"

        class Config:
            def set_memory_pool_limit(self, pool, size): rec.calls.append(("pool", size))
            def set_flag(self, flag): rec.calls.append(("flag", flag))
            def create_timing_cache(self, blob): return blob
            def set_timing_cache(self, cache, ignore): rec.calls.append(("timing_cache", ignore))
            def get_timing_cache(self): return type("C", (), {"serialize": lambda s: b"tc"})()

        class Builder:
            def __init__(self, logger): pass
            def create_network(self, flags): rec.calls.append(("network", flags)); return "net"
            def create_builder_config(self): return Config()
            def build_serialized_network(self, net, cfg): rec.calls.append(("build", net)); return b"not-an-engine"

        class Parser:
            num_errors = 0
            def __init__(self, net, logger): pass
            def parse(self, blob): rec.calls.append(("parse", len(blob))); return True

        self.NetworkDefinitionCreationFlag, self.BuilderFlag = Flags, BuilderFlag
        self.Builder, self.OnnxParser = Builder, Parser
        self.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda s, level: None})
        self.MemoryPoolType = type("M", (), {"WORKSPACE": "workspace"})


@pytest.mark.parametrize("version,precision,network_flags,flags", [
    ("8.5.2", "int8", 1, ["INT8", "FP16"]), ("8.6.2", "fp16", 1, ["FP16"]),
    ("10.3.0", "fp16", 0, ["FP16"]), ("11.4.0", "fp16", 0, [])])
def test_tensorrt_build_uses_each_versions_api(bundle_dir, tmp_path, version, precision, network_flags, flags):
    from deploy.engines.tensorrt import build_serialized
    trt = _Recorder(version)
    build_serialized(trt, bundle_dir / "model_fp32.onnx", precision, timing_cache=tmp_path / "timing.cache")
    assert ("network", network_flags) in trt.calls
    assert [c[1] for c in trt.calls if c[0] == "flag"] == flags
    assert ("timing_cache", True) in trt.calls and (tmp_path / "timing.cache").read_bytes() == b"tc"


def _residual_layernorm_onnx(path):
    """x + skip -> LayerNormalization: the pattern onnxruntime's SkipLayerNormFusion rewrites."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    shape = [1, 16, 8]
    rng = np.random.default_rng(3)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "skip"], ["s"]),
         helper.make_node("LayerNormalization", ["s", "gamma", "beta"], ["probs"], axis=-1, epsilon=1e-5)],
        "residual_ln", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), "skip"),
         numpy_helper.from_array(rng.uniform(0.5, 1.5, 8).astype(np.float32), "gamma"),
         numpy_helper.from_array(rng.normal(size=8).astype(np.float32), "beta")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path, rng


def test_onnxruntime_engine_keeps_add_layernorm_unfused_and_correct(tmp_path):
    """The engine disables SkipLayerNormFusion (its CPU kernel is slower here; docs/bench.md): the graph it runs
    keeps LayerNormalization, and the result is still the residual LayerNorm."""
    import onnx

    from deploy.engines.onnxruntime import OnnxRuntimeEngine
    path, rng = _residual_layernorm_onnx(tmp_path / "ln.onnx")
    engine = OnnxRuntimeEngine(path, threads=1, optimized_model_path=tmp_path / "ran.onnx")
    ran = {n.op_type for n in onnx.load(str(tmp_path / "ran.onnx")).graph.node}
    assert "LayerNormalization" in ran and "SkipLayerNormalization" not in ran
    model = onnx.load(str(path))
    skip, gamma, beta = (onnx.numpy_helper.to_array(t) for t in model.graph.initializer)
    x = rng.normal(size=engine.input_shape).astype(np.float32)
    s = x + skip
    expected = (s - s.mean(-1, keepdims=True)) / np.sqrt(s.var(-1, keepdims=True) + 1e-5) * gamma + beta
    np.testing.assert_allclose(engine.infer(x), expected, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- the build kit's engine (cache/model.engine)
# No TensorRT here: the "engine" below is a few bytes standing for a plan file; nothing builds or runs an engine.
# What is tested is which file the daemon would hand to TensorRT, given what the kit recorded.

PLAN_BYTES = b"bytes standing for the kit's plan file"


def _kit_bundle(bundle_dir, tmp_path, version="10.3.0", gpu="gpu|sm_87"):
    import shutil
    from deploy.engines.tensorrt import KIT_ENGINE, write_kit_record
    folder = Path(shutil.copytree(bundle_dir, tmp_path / "bundle"))
    (folder / KIT_ENGINE).parent.mkdir(exist_ok=True)
    (folder / KIT_ENGINE).write_bytes(PLAN_BYTES)
    record = write_kit_record(folder, "model_fp32.onnx", "fp32", version, gpu)
    return folder, record


def test_kit_engine_is_used_only_for_the_key_it_was_checked_for(bundle_dir, tmp_path):
    from deploy.bundle import sha256_file
    from deploy.engines.tensorrt import KIT_ENGINE, KIT_RECORD, cache_key, kit_engine
    folder, record = _kit_bundle(bundle_dir, tmp_path)
    onnx_sha = sha256_file(folder / "model_fp32.onnx")
    key = cache_key("10.3.0", "gpu|sm_87", onnx_sha, "fp32")
    assert record["key"] == key and kit_engine(folder, key) == folder / KIT_ENGINE
    for version, gpu, precision in (("10.3.1", "gpu|sm_87", "fp32"), ("10.3.0", "gpu|sm_72", "fp32"),
                                    ("10.3.0", "gpu|sm_87", "fp16")):
        assert kit_engine(folder, cache_key(version, gpu, onnx_sha, precision)) is None
    Bundle.load(folder)  # cache/ is outside the bundle's hash check: the bundle stays valid
    (folder / KIT_ENGINE).write_bytes(PLAN_BYTES + b" rebuilt but not checked")
    assert kit_engine(folder, key) is None
    (folder / KIT_RECORD).unlink()
    assert kit_engine(folder, key) is None


class _FakeCuda:
    def compute_capability(self, device=0):
        return "sm_87"


def test_from_bundle_prefers_the_checked_kit_engine_and_otherwise_builds(bundle_dir, tmp_path, monkeypatch):
    import deploy.engines.tensorrt as trt_mod
    folder, _ = _kit_bundle(bundle_dir, tmp_path, gpu=trt_mod.gpu_identity(_FakeCuda()))
    handed = []
    monkeypatch.setattr(trt_mod, "import_tensorrt", lambda: type("TRT", (), {"__version__": "10.3.0"})())
    monkeypatch.setattr(trt_mod, "CudaRuntime", _FakeCuda)
    monkeypatch.setattr(trt_mod.TensorRTEngine, "__init__",
                        lambda self, plan, precision, trt=None, cuda=None: handed.append((plan, precision)))

    class Built(Exception):
        pass

    def no_build(*args, **kwargs):
        raise Built
    monkeypatch.setattr(trt_mod, "build_serialized", no_build)
    trt_mod.TensorRTEngine.from_bundle(Bundle.load(folder), "fp32", cache_dir=tmp_path / "cache")
    assert handed == [(PLAN_BYTES, "fp32")]
    monkeypatch.setattr(trt_mod, "import_tensorrt", lambda: type("TRT", (), {"__version__": "10.7.0"})())
    with pytest.raises(Built):  # another TensorRT than the kit's: the kit engine is not handed over
        trt_mod.TensorRTEngine.from_bundle(Bundle.load(folder), "fp32", cache_dir=tmp_path / "cache")
    assert len(handed) == 1


def test_record_command_needs_the_kit_engine(bundle_dir, tmp_path):
    from deploy.engines.tensorrt import write_kit_record
    with pytest.raises(FogError, match="build_engine.sh"):
        write_kit_record(bundle_dir, "model_fp32.onnx", "fp32", "10.3.0", "gpu|sm_87")


@pytest.mark.parametrize("runtime,requested,runs", [("tensorrt", None, "fp32"), ("tensorrt", "int8", "int8"),
                                                    ("onnxruntime", None, "int8")])
def test_onnxruntime_runs_the_fast_graph_of_a_tensorrt_bundle_unless_int8_is_asked_for(tmp_path, runtime, requested,
                                                                                        runs):
    """A Jetson bundle says int8 for TensorRT; on onnxruntime its fused fp32 graph is the fast one. A cpu-target
    bundle's precision was chosen for onnxruntime and is kept."""
    import json
    import shutil

    from deploy.bundle import write_manifest

    folder = make_bundle(tmp_path / "b")
    shutil.copy(folder / "model_fp32.onnx", folder / "model_int8_qdq.onnx")  # stands in for the Q/DQ graph
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(precision="int8", target={"name": "t", "runtime": runtime})
    manifest["models"]["int8"] = "model_int8_qdq.onnx"
    write_manifest(folder, manifest)
    engine = open_engine(Bundle.load(folder), backend="onnxruntime", precision=requested, threads=1)
    assert engine.precision == runs
