"""TensorRT engine build: what the code asks of the API per TensorRT generation (a recording double), and a real
build when TensorRT and a GPU are present. The double never produces an engine: its build returns None, so every
test here ends in EngineBuildError ("returned no engine") after checking the recorded calls."""
from __future__ import annotations

import types

import pytest

from toolkit.export.targets import get_target
from toolkit.export.trt_build import EngineBuildError, build_engine, can_build_here, gpu_present


class Recorder:
    def __init__(self):
        self.calls = []


def fake_tensorrt(version: str, *, has_memory_pool: bool = True, dla_cores: int = 0):
    """A stand-in for the tensorrt module that records what is asked of it. It cannot build anything."""
    rec = Recorder()
    enum = types.SimpleNamespace
    trt = types.SimpleNamespace(__version__=version, calls=rec.calls)
    trt.NetworkDefinitionCreationFlag = enum(EXPLICIT_BATCH=0, STRONGLY_TYPED=1)
    trt.BuilderFlag = enum(FP16="FP16", INT8="INT8", GPU_FALLBACK="GPU_FALLBACK")
    trt.MemoryPoolType = enum(WORKSPACE="WORKSPACE")
    trt.DeviceType = enum(DLA="DLA", GPU="GPU")

    class Logger:
        WARNING = "WARNING"

        def __init__(self, level):
            rec.calls.append(("Logger", level))

    class Parser:
        num_errors = 0

        def __init__(self, network, logger):
            rec.calls.append(("OnnxParser",))

        def parse(self, data):
            rec.calls.append(("parse", len(data)))
            return True

    class Config:
        def __init__(self):
            if has_memory_pool:
                self.set_memory_pool_limit = lambda pool, size: rec.calls.append(("set_memory_pool_limit", pool,
                                                                                  size))

        def __setattr__(self, name, value):
            if name != "set_memory_pool_limit":
                rec.calls.append(("config." + name, value))
            object.__setattr__(self, name, value)

        def set_flag(self, flag):
            rec.calls.append(("set_flag", flag))

        def create_timing_cache(self, blob):
            rec.calls.append(("create_timing_cache", len(blob)))
            return "cache"

        def set_timing_cache(self, cache, ignore_mismatch):
            rec.calls.append(("set_timing_cache", ignore_mismatch))

        def add_optimization_profile(self, profile):
            rec.calls.append(("add_optimization_profile", profile.shapes))

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, smallest, opt, largest):
            self.shapes[name] = (smallest, opt, largest)

    class Builder:
        num_DLA_cores = dla_cores

        def __init__(self, logger):
            rec.calls.append(("Builder",))

        def create_network(self, flags):
            rec.calls.append(("create_network", flags))
            return object()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            rec.calls.append(("create_optimization_profile",))
            return Profile()

        def build_serialized_network(self, network, config):
            rec.calls.append(("build_serialized_network",))
            return None  # a double never builds an engine

    trt.Logger, trt.Builder, trt.OnnxParser = Logger, Builder, Parser
    return trt


def _build(tmp_path, trt, target, precision, **kw):
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(b"onnx bytes")
    with pytest.raises(EngineBuildError, match="returned no engine"):
        build_engine(onnx_path, tmp_path / "m.engine", target=get_target(target), precision=precision, trt=trt,
                     timing_cache=tmp_path / "timing.cache", **kw)
    assert not (tmp_path / "m.engine").exists()
    return trt.calls


def test_trt85_explicit_batch_int8_and_fp16_flags_memory_pool(tmp_path):
    calls = _build(tmp_path, fake_tensorrt("8.5.2.2"), "jetson-xavier", "int8")
    assert ("create_network", 1 << 0) in calls
    assert ("set_flag", "FP16") in calls and ("set_flag", "INT8") in calls
    assert ("set_memory_pool_limit", "WORKSPACE", 1024 << 20) in calls
    assert ("set_timing_cache", True) in calls and ("build_serialized_network",) in calls


def test_trt82_has_no_memory_pool_api_and_nano_gets_fp16_only(tmp_path):
    calls = _build(tmp_path, fake_tensorrt("8.2.1.8", has_memory_pool=False), "jetson-nano", "fp16")
    assert ("config.max_workspace_size", 1024 << 20) in calls
    assert ("set_flag", "FP16") in calls and ("set_flag", "INT8") not in calls


def test_trt10_network_flags_zero(tmp_path):
    calls = _build(tmp_path, fake_tensorrt("10.3.0.30"), "jetson", "int8")
    assert ("create_network", 0) in calls
    assert {("set_flag", "FP16"), ("set_flag", "INT8")} <= set(calls)


def test_trt11_strongly_typed_without_precision_flags(tmp_path):
    calls = _build(tmp_path, fake_tensorrt("11.4.0"), "x86-cuda", "int8")
    assert ("create_network", 1 << 1) in calls
    assert not [c for c in calls if c[0] == "set_flag"]


def test_dla_with_gpu_fallback_only_where_the_target_has_dla(tmp_path):
    calls = _build(tmp_path, fake_tensorrt("10.3.0", dla_cores=2), "jetson", "fp16", dla_core=1)
    assert ("config.default_device_type", "DLA") in calls and ("config.DLA_core", 1) in calls
    assert ("set_flag", "GPU_FALLBACK") in calls
    with pytest.raises(EngineBuildError, match="has no DLA"):
        build_engine(tmp_path / "m.onnx", tmp_path / "e", target=get_target("jetson-thor"), precision="fp16",
                     trt=fake_tensorrt("10.13.0"), dla_core=0)
    with pytest.raises(EngineBuildError, match="DLA core 0 requested, this device has 0"):
        build_engine(tmp_path / "m.onnx", tmp_path / "e", target=get_target("jetson"), precision="fp16",
                     trt=fake_tensorrt("10.3.0", dla_cores=0), dla_core=0)


def test_a_dynamic_batch_graph_gets_one_optimization_profile(tmp_path):
    profile = {"input": "x", "min": [1, 24, 128], "opt": [32, 24, 128], "max": [32, 24, 128]}
    calls = _build(tmp_path, fake_tensorrt("10.3.0"), "jetson", "fp16", profile=profile)
    assert calls.count(("create_optimization_profile",)) == 1
    assert ("add_optimization_profile", {"x": ((1, 24, 128), (32, 24, 128), (32, 24, 128))}) in calls
    assert calls.index(("add_optimization_profile", {"x": ((1, 24, 128), (32, 24, 128), (32, 24, 128))})) \
        < calls.index(("build_serialized_network",))                     # set before the build
    with pytest.raises(EngineBuildError, match="DLA"):
        build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", target=get_target("jetson-xavier"),
                     precision="fp16", trt=fake_tensorrt("8.5.2.2", dla_cores=2), dla_core=0, profile=profile)


def test_version_mismatch_is_refused_before_any_build(tmp_path):
    trt = fake_tensorrt("10.3.0")
    with pytest.raises(EngineBuildError, match="cannot build for target jetson-xavier"):
        build_engine(tmp_path / "m.onnx", tmp_path / "e", target=get_target("jetson-xavier"), precision="int8",
                     trt=trt)
    assert not any(c[0] == "Builder" for c in trt.calls)


def test_without_tensorrt_the_exporter_writes_the_kit_and_says_why():
    ok, why = can_build_here(get_target("jetson"))
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert not ok and "tensorrt is not installed" in why


@pytest.mark.tensorrt
def test_real_engine_build(tmp_path):
    trt = pytest.importorskip("tensorrt", reason="tensorrt is not installed (no TensorRT on this machine)")
    if not gpu_present():
        pytest.skip("no NVIDIA GPU here: TensorRT cannot build an engine")
    import torch

    from models.onnx_export import export_onnx
    major = int(trt.__version__.split(".")[0])
    target = get_target("x86-cuda") if major in (10, 11) else pytest.skip(f"TensorRT {trt.__version__}: no target")
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    export_onnx(model, torch.zeros(1, 4, 6), tmp_path / "m.onnx", output_names=("probs",))
    info = build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", target=target, precision="fp16",
                        timing_cache=tmp_path / "timing.cache")
    assert (tmp_path / "m.engine").stat().st_size > 0 and info["tensorrt"] == trt.__version__
