"""TensorRT at the gateway's batch sizes: what the device code asks of the API (a recording double; nothing here
claims an engine was built: the double's 'plans' are bytes it was handed). A dynamic-batch graph is built once with
its optimization profile, and each batch size runs it with its own input shape set; an INT8 bundle's static
per-size graphs are built one by one."""
from __future__ import annotations

import types

import numpy as np
import pytest

from deploy.bundle import Bundle, write_manifest
from deploy.engines import tensorrt as trt_mod


def fake_runtime(calls: list, dynamic: bool, static_batch: int = 1):
    """tensorrt's runtime side: deserialize a plan, one input x (B, 24, 128) and output probs (B, 128, 3)."""
    class Engine:
        num_io_tensors = 2

        def get_tensor_name(self, i):
            return ("x", "probs")[i]

        def get_tensor_mode(self, name):
            return "INPUT" if name == "x" else "OUTPUT"

        def get_tensor_shape(self, name):
            batch = -1 if dynamic else static_batch
            return (batch, 24, 128) if name == "x" else (batch, 128, 3)

        def get_tensor_dtype(self, name):
            return "float"

        def create_execution_context(self):
            return Context()

    class Context:
        def __init__(self):
            self.shape = None

        def set_input_shape(self, name, shape):
            calls.append(("set_input_shape", name, tuple(shape)))
            self.shape = tuple(shape)

        def get_tensor_shape(self, name):
            return (self.shape[0], 128, 3)

        def set_tensor_address(self, name, address):
            calls.append(("set_tensor_address", name))

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, plan):
            calls.append(("deserialize", plan))
            return Engine()

    trt = types.SimpleNamespace(__version__="10.3.0", Runtime=Runtime, nptype=lambda dtype: np.float32,
                                TensorIOMode=types.SimpleNamespace(INPUT="INPUT"))
    trt.Logger = type("Logger", (), {"WARNING": 1, "__init__": lambda self, level: None})
    return trt


class FakeCuda:
    def __init__(self):
        self.allocated = []

    def malloc(self, nbytes):
        self.allocated.append(nbytes)
        return len(self.allocated)

    def stream(self):
        return 0

    def compute_capability(self, device=0):
        return "sm_87"


def _bundle(tmp_path, tensorrt_profile: bool):
    folder = tmp_path / "b"
    folder.mkdir()
    for name in ("model_fp32.onnx", "model_fp32_dynamic.onnx", "model_int8_qdq.onnx", "model_int8_qdq_b8.onnx",
                 "model_fp32_b8.onnx"):
        (folder / name).write_bytes(name.encode())
    manifest = {"schema_version": 1, "model": {"name": "m"}, "input": {"name": "x", "shape": [1, 24, 128]},
                "output": {"classes": ["StartHesitation", "Turn", "Walking"]}, "precision": "int8",
                "models": {"fp32": "model_fp32.onnx", "fp16": None, "int8": "model_int8_qdq.onnx", "engine": None},
                "batching": {"sizes": [1, 8], "files": {"fp32": {"8": "model_fp32_b8.onnx"},
                                                        "int8": {"8": "model_int8_qdq_b8.onnx"}},
                             "row_exact": True, "verification": {},
                             **({"tensorrt": {"file": "model_fp32_dynamic.onnx", "input": "x", "min": [1, 24, 128],
                                              "opt": [8, 24, 128], "max": [8, 24, 128]}} if tensorrt_profile
                                else {})}}
    write_manifest(folder, manifest)
    return Bundle.load(folder)


@pytest.fixture
def double(monkeypatch):
    calls, builds = [], []

    def build(trt, onnx_path, precision, timing_cache=None, profile=None):
        builds.append((onnx_path.name, precision, profile))
        return f"plan of {onnx_path.name}".encode()

    monkeypatch.setattr(trt_mod, "CudaRuntime", FakeCuda)
    monkeypatch.setattr(trt_mod, "build_serialized", build)
    return calls, builds, monkeypatch


def test_a_dynamic_batch_graph_is_built_with_its_profile_and_run_at_the_asked_size(double, tmp_path):
    calls, builds, monkeypatch = double
    monkeypatch.setattr(trt_mod, "import_tensorrt", lambda: fake_runtime(calls, dynamic=True))
    bundle = _bundle(tmp_path, tensorrt_profile=True)
    engine = trt_mod.TensorRTEngine.from_bundle(bundle, "fp16", cache_dir=tmp_path / "cache", batch=8)
    assert builds == [("model_fp32_dynamic.onnx", "fp16", bundle.batching.tensorrt)]
    assert ("set_input_shape", "x", (8, 24, 128)) in calls
    assert engine.input_shape == (8, 24, 128) and engine.output_shape == (8, 128, 3)
    assert engine.input_buffer.shape == (8, 24, 128) and engine.cuda.allocated == [8 * 24 * 128 * 4, 8 * 128 * 3 * 4]
    again = trt_mod.TensorRTEngine.from_bundle(bundle, "fp16", cache_dir=tmp_path / "cache", batch=8)
    assert len(builds) == 1 and again.input_shape == (8, 24, 128)     # the second start: the checked cache


def test_an_int8_bundle_builds_the_static_graph_of_each_size(double, tmp_path):
    calls, builds, monkeypatch = double
    monkeypatch.setattr(trt_mod, "import_tensorrt", lambda: fake_runtime(calls, dynamic=False, static_batch=8))
    bundle = _bundle(tmp_path, tensorrt_profile=True)
    engine = trt_mod.TensorRTEngine.from_bundle(bundle, "int8", cache_dir=tmp_path / "cache", batch=8)
    assert builds == [("model_int8_qdq_b8.onnx", "int8", None)]        # no profile: static, its own graph
    assert engine.input_shape == (8, 24, 128) and not any(c[0] == "set_input_shape" for c in calls)
    with pytest.raises(Exception, match="batches of 8, not 4"):          # a plan of another size is refused
        trt_mod.TensorRTEngine(b"plan", precision="int8", trt=fake_runtime(calls, False, 8), cuda=FakeCuda(), batch=4)


def test_a_dynamic_engine_without_a_size_is_refused(double, tmp_path):
    calls, _, _ = double
    with pytest.raises(Exception, match="dynamic"):
        trt_mod.TensorRTEngine(b"plan", precision="fp16", trt=fake_runtime(calls, dynamic=True), cuda=FakeCuda())
