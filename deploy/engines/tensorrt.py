"""TensorRT engine: load the bundle's engine file, or build one from its ONNX on first start and cache it.

Written against the TensorRT Python API of 8.5/8.6 (weakly typed, explicit-batch flag), 10.x (explicit batch always,
FP16/INT8 builder flags) and 11.x (always strongly typed: precision comes from the ONNX tensor types). `tensorrt` is
imported only here, only when this engine is asked for. Device memory goes through libcudart via ctypes (a handful
of calls), so the device needs no pycuda or cuda-python.

The cache key is (TensorRT version, GPU, ONNX sha256, precision): an engine is not portable across any of them.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import logging
import os
import time
from pathlib import Path

import numpy as np

from deploy.bundle import sha256_file
from deploy.errors import BundleError, FogError, MissingDependency

log = logging.getLogger("deploy.engines.tensorrt")

_H2D, _D2H = 1, 2  # cudaMemcpyKind
_CUDART_NAMES = ("cudart", "libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0",
                 "libcudart.so.10.2")


def import_tensorrt():
    try:
        import tensorrt
    except ImportError:
        raise MissingDependency("tensorrt", "tensorrt", "the TensorRT engine (on a Jetson it comes with JetPack)") \
            from None
    return tensorrt


def trt_major(trt) -> int:
    return int(str(trt.__version__).split(".")[0])


class CudaRuntime:
    """The few libcudart calls an engine needs: malloc/free, async copies, one stream."""

    def __init__(self):
        for name in _CUDART_NAMES:
            path = ctypes.util.find_library(name) if "." not in name else name
            try:
                self.lib = ctypes.CDLL(path or name)
                break
            except OSError:
                continue
        else:
            raise MissingDependency("libcudart", "tensorrt", "the TensorRT engine (CUDA runtime library)")
        self.lib.cudaMalloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]
        self.lib.cudaFree.argtypes = [ctypes.c_void_p]
        self.lib.cudaMemcpyAsync.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                                             ctypes.c_void_p]
        self.lib.cudaStreamCreate.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        self.lib.cudaStreamSynchronize.argtypes = [ctypes.c_void_p]
        self.lib.cudaStreamDestroy.argtypes = [ctypes.c_void_p]
        self.lib.cudaDeviceGetAttribute.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.c_int, ctypes.c_int]

    def check(self, status: int, what: str) -> None:
        if status != 0:
            raise FogError(f"CUDA call {what} failed with error {status}; is the GPU available to this user?")

    def malloc(self, nbytes: int) -> int:
        ptr = ctypes.c_void_p()
        self.check(self.lib.cudaMalloc(ctypes.byref(ptr), nbytes), "cudaMalloc")
        return ptr.value

    def free(self, ptr: int) -> None:
        self.lib.cudaFree(ctypes.c_void_p(ptr))

    def stream(self) -> int:
        handle = ctypes.c_void_p()
        self.check(self.lib.cudaStreamCreate(ctypes.byref(handle)), "cudaStreamCreate")
        return handle.value or 0

    def copy(self, dst: int, src: int, nbytes: int, kind: int, stream: int) -> None:
        self.check(self.lib.cudaMemcpyAsync(dst, src, nbytes, kind, stream), "cudaMemcpyAsync")

    def sync(self, stream: int) -> None:
        self.check(self.lib.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def compute_capability(self, device: int = 0) -> str:
        major, minor = ctypes.c_int(), ctypes.c_int()
        self.lib.cudaDeviceGetAttribute(ctypes.byref(major), 75, device)  # cudaDevAttrComputeCapabilityMajor
        self.lib.cudaDeviceGetAttribute(ctypes.byref(minor), 76, device)  # ...Minor
        return f"sm_{major.value}{minor.value}"


def gpu_identity(cuda: CudaRuntime) -> str:
    """A stable name for the GPU: the Jetson module model where known, plus compute capability."""
    model = ""
    for path in ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model"):
        try:
            model = Path(path).read_bytes().rstrip(b"\0").decode(errors="replace").strip()
            break
        except OSError:
            continue
    return f"{model or 'gpu'}|{cuda.compute_capability()}"


def cache_key(trt_version: str, gpu: str, onnx_sha256: str, precision: str) -> str:
    text = "|".join((trt_version, gpu, onnx_sha256, precision))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def builder_flags(major: int, precision: str) -> list[str]:
    """BuilderFlag names to set for `precision`; TRT 11 is strongly typed and takes none."""
    if major >= 11 or precision == "fp32":
        return []
    return ["FP16"] if precision == "fp16" else ["INT8", "FP16"]


def build_serialized(trt, onnx_path: Path, precision: str, timing_cache: Path | None = None,
                     workspace_bytes: int = 1 << 30) -> bytes:
    """Parse `onnx_path` and build a serialized engine (explicit, boring steps; everything logged)."""
    major = trt_major(trt)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if major < 10 else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BundleError(f"{onnx_path}: TensorRT {trt.__version__} cannot parse this model: {errors}. "
                          "Export for this target (`toolkit export --target ...`)")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    for name in builder_flags(major, precision):
        config.set_flag(getattr(trt.BuilderFlag, name))
    if timing_cache is not None:
        blob = timing_cache.read_bytes() if timing_cache.is_file() else b""
        config.set_timing_cache(config.create_timing_cache(blob), True)
    log.info("building TensorRT %s engine from %s (precision %s); this takes minutes the first time",
             trt.__version__, onnx_path, precision)
    started = time.monotonic()
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise BundleError(f"{onnx_path}: TensorRT {trt.__version__} failed to build a {precision} engine "
                          "(see the log above); try another precision or re-export for this target")
    if timing_cache is not None:
        timing_cache.write_bytes(memoryview(config.get_timing_cache().serialize()))
    log.info("engine built in %.0f s", time.monotonic() - started)
    return bytes(plan)


def default_cache_dir(bundle) -> Path:
    """`bundle/cache` when writable (the manifest check ignores it), else the user's cache directory."""
    folder = Path(bundle.folder) / "cache"
    try:
        folder.mkdir(exist_ok=True)
        if os.access(folder, os.W_OK):
            return folder
    except OSError:
        pass
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fog-edge"
    base.mkdir(parents=True, exist_ok=True)
    return base


class TensorRTEngine:
    backend = "tensorrt"

    def __init__(self, plan: bytes, *, precision: str, trt=None, cuda: CudaRuntime | None = None):
        self.trt = trt or import_tensorrt()
        self.cuda = cuda or CudaRuntime()
        self.precision = precision
        self.runtime = self.trt.Runtime(self.trt.Logger(self.trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise BundleError("TensorRT could not deserialize the engine (built by another TensorRT version or "
                              "GPU?); delete it so it is rebuilt from the bundle's ONNX")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == self.trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or len(outputs) != 1:
            raise BundleError(f"engine has inputs {inputs} and outputs {outputs}; expected one of each")
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.input_shape = tuple(self.engine.get_tensor_shape(self.input_name))
        self.output_shape = tuple(self.engine.get_tensor_shape(self.output_name))
        self.input_buffer = np.zeros(self.input_shape, self.trt.nptype(self.engine.get_tensor_dtype(self.input_name)))
        self.output_buffer = np.zeros(self.output_shape,
                                      self.trt.nptype(self.engine.get_tensor_dtype(self.output_name)))
        self._d_in = self.cuda.malloc(self.input_buffer.nbytes)
        self._d_out = self.cuda.malloc(self.output_buffer.nbytes)
        self.context.set_tensor_address(self.input_name, self._d_in)
        self.context.set_tensor_address(self.output_name, self._d_out)
        self._stream = self.cuda.stream()

    @classmethod
    def from_bundle(cls, bundle, precision: str, cache_dir=None, **_ignored) -> "TensorRTEngine":
        from deploy.engines import onnx_for
        trt = import_tensorrt()
        cuda = CudaRuntime()
        shipped = bundle.path("engine")
        if shipped is not None and precision == bundle.manifest.get("precision"):
            try:
                return cls(shipped.read_bytes(), precision=precision, trt=trt, cuda=cuda)
            except BundleError as exc:
                log.warning("shipped engine %s unusable here (%s); building from ONNX", shipped, exc)
        used, onnx_path = onnx_for(bundle, precision, cpu=False)
        folder = Path(cache_dir) if cache_dir else default_cache_dir(bundle)
        key = cache_key(str(trt.__version__), gpu_identity(cuda), sha256_file(onnx_path), used)
        cached = folder / f"{key}.engine"
        if cached.is_file():
            log.info("using cached engine %s", cached)
            try:
                return cls(cached.read_bytes(), precision=used, trt=trt, cuda=cuda)
            except BundleError:
                log.warning("cached engine %s unusable; rebuilding", cached)
        plan = build_serialized(trt, onnx_path, used, timing_cache=folder / "timing.cache")
        tmp = cached.with_suffix(".tmp")
        tmp.write_bytes(plan)
        tmp.replace(cached)  # atomic: a crash mid-write never leaves a truncated engine behind
        return cls(plan, precision=used, trt=trt, cuda=cuda)

    def infer(self, x: np.ndarray) -> np.ndarray:
        if x is not self.input_buffer:
            np.copyto(self.input_buffer, x, casting="same_kind")
        self.cuda.copy(self._d_in, self.input_buffer.ctypes.data, self.input_buffer.nbytes, _H2D, self._stream)
        if not self.context.execute_async_v3(self._stream):
            raise FogError("TensorRT execution failed (see the log)")
        self.cuda.copy(self.output_buffer.ctypes.data, self._d_out, self.output_buffer.nbytes, _D2H, self._stream)
        self.cuda.sync(self._stream)
        return self.output_buffer

    def close(self) -> None:
        for ptr in (getattr(self, "_d_in", None), getattr(self, "_d_out", None)):
            if ptr:
                self.cuda.free(ptr)
        self._d_in = self._d_out = None
        self.context = self.engine = None
