"""TensorRT engine: load the bundle's engine file, or build one from its ONNX on first start and cache it.

Written against the TensorRT Python API of 8.5/8.6 (weakly typed, explicit-batch flag), 10.x (explicit batch always,
FP16/INT8 builder flags) and 11.x (always strongly typed: precision comes from the ONNX tensor types). `tensorrt` is
imported only here, only when this engine is asked for. Device memory goes through libcudart via ctypes (a handful
of calls), so the device needs no pycuda or cuda-python.

The cache key is (TensorRT version, GPU, ONNX sha256, precision): an engine is not portable across any of them.

Engines are looked for in this order: the bundle's shipped engine (manifest `models.engine`); the engine the bundle's
build kit made and checked on this device (`cache/model.engine`, see `toolkit/buildkit.py`), used only when its
record `cache/model.engine.json` holds the same key and the sha256 of the engine file that was checked; the
daemon's own cache (`cache/<key>.engine`); else it builds one from the ONNX and caches it.
The record is written by `python3 -m deploy.engines.tensorrt record-kit-engine BUNDLE --model FILE --precision P`
after the kit's Polygraphy comparison passed, with this device's TensorRT (the runtime Polygraphy just ran the
engine with) and `gpu_identity`, so the daemon compares like with like.
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

from deploy.bundle import inside, sha256_file
from deploy.engines.precision import onnx_for
from deploy.errors import BundleError, FogError, MissingDependency
from deploy.lazy import lazy_import, require

tensorrt = lazy_import("tensorrt", "tensorrt", "the TensorRT engine")

log = logging.getLogger("deploy.engines.tensorrt")

_H2D, _D2H = 1, 2  # cudaMemcpyKind
_CUDART_NAMES = ("cudart", "libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0",
                 "libcudart.so.10.2")


def import_tensorrt():
    """The tensorrt module, imported now (the seam tests replace with a double)."""
    return require(tensorrt)


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


KIT_ENGINE = "cache/model.engine"             # where kit/build_engine.sh saves the engine (trtexec --saveEngine)
KIT_RECORD = "cache/model.engine.json"        # what it was built from and checked with, see write_kit_record


def write_kit_record(bundle_folder, model_file: str, precision: str, trt_version: str, gpu: str) -> dict:
    """Record, beside the kit's checked engine, the key it is valid for and the sha256 of the engine bytes."""
    folder = Path(bundle_folder)
    engine = folder / KIT_ENGINE
    if not engine.is_file():
        raise FogError(f"{engine} does not exist: run kit/build_engine.sh first (it builds and checks it)")
    record = {"tensorrt": str(trt_version), "gpu": gpu, "model": model_file, "precision": precision,
              "onnx_sha256": sha256_file(folder / model_file), "engine_sha256": sha256_file(engine)}
    record["key"] = cache_key(record["tensorrt"], gpu, record["onnx_sha256"], precision)
    (folder / KIT_RECORD).write_text(json.dumps(record, indent=1) + "\n")
    return record


def kit_engine(bundle_folder, key: str) -> Path | None:
    """The kit's engine if its record says it was checked for exactly `key` and the file is that checked engine."""
    folder = Path(bundle_folder)
    engine, record_path = folder / KIT_ENGINE, folder / KIT_RECORD
    if not engine.is_file():
        return None
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        log.info("%s has no readable record %s (the kit writes it after its check passed); not using it",
                 engine, record_path)
        return None
    if record.get("key") != key:
        log.info("%s was built for TensorRT %s on %s (%s); this device needs key %s: not using it", engine,
                 record.get("tensorrt"), record.get("gpu"), record.get("precision"), key)
        return None
    if record.get("engine_sha256") != sha256_file(engine):
        log.warning("%s changed after the kit checked it (sha256 differs from %s); not using it", engine,
                    record_path)
        return None
    return engine


def builder_flags(major: int, precision: str) -> list[str]:
    """BuilderFlag names to set for `precision`; TRT 11 is strongly typed and takes none."""
    if major >= 11 or precision == "fp32":
        return []
    return ["FP16"] if precision == "fp16" else ["INT8", "FP16"]


def _sha_record(engine: Path) -> Path:
    return engine.with_name(engine.name + ".sha256")


def cached_engine(engine: Path) -> Path | None:
    """The daemon's cached engine, only when its bytes are those it wrote (`<key>.engine.sha256`): a plan file is
    code TensorRT runs, so a cache swapped or corrupted on the device is rebuilt rather than deserialized."""
    if not engine.is_file():
        return None
    record = _sha_record(engine)
    expected = record.read_text().strip() if record.is_file() else None
    if expected != sha256_file(engine):
        log.warning("%s: %s; not using it, rebuilding from the bundle's ONNX", engine,
                    "no sha256 record beside it" if expected is None else "sha256 differs from its record")
        return None
    return engine


def add_profile(builder, config, profile: dict) -> str:
    """One optimization profile for a dynamic batch axis (the manifest's batching.tensorrt: {input, min, opt,
    max}): TensorRT tunes its kernels for `opt` and takes any batch from `min` to `max`; returns what was set."""
    optimization = builder.create_optimization_profile()
    optimization.set_shape(profile["input"], tuple(profile["min"]), tuple(profile["opt"]), tuple(profile["max"]))
    config.add_optimization_profile(optimization)
    return f"optimization profile {profile['input']}: min {profile['min']}, opt {profile['opt']}, max {profile['max']}"


def build_serialized(trt, onnx_path: Path, precision: str, timing_cache: Path | None = None,
                     workspace_bytes: int = 1 << 30, profile: dict | None = None) -> bytes:
    """Parse `onnx_path` and build a serialized engine (explicit, boring steps; everything logged); `profile`: the
    optimization profile of a dynamic-batch graph."""
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
    if profile is not None:
        log.info("%s", add_profile(builder, config, profile))
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


def _cache(cached: Path, plan: bytes) -> None:
    """Write a plan the daemon built into its cache, with the sha256 it is checked against when reused."""
    tmp = cached.with_suffix(".tmp")
    tmp.write_bytes(plan)
    _sha_record(cached).write_text(hashlib.sha256(plan).hexdigest() + "\n")
    tmp.replace(cached)  # atomic: a crash mid-write never leaves a truncated engine behind


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

    def __init__(self, plan: bytes, *, precision: str, trt=None, cuda: CudaRuntime | None = None,
                 batch: int | None = None):
        """`batch`: the batch size this engine runs when the plan's batch axis is dynamic (an optimization
        profile's engine: one object per size, each with its own context and buffers)."""
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
        if self.input_shape and self.input_shape[0] == -1:   # dynamic batch: this object runs `batch`
            if batch is None:
                raise BundleError("the engine's batch axis is dynamic; open it at one of the bundle's batch sizes")
            self.input_shape = (int(batch), *self.input_shape[1:])
            self.context.set_input_shape(self.input_name, self.input_shape)
            self.output_shape = tuple(self.context.get_tensor_shape(self.output_name))
        else:
            if batch is not None and self.input_shape[0] != batch:
                raise BundleError(f"the engine takes batches of {self.input_shape[0]}, not {batch}; delete it so it "
                                  "is rebuilt from the bundle's graph of that size")
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
    def from_bundle(cls, bundle, precision: str, cache_dir=None, batch: int | None = None,
                    **_ignored) -> "TensorRTEngine":
        """The bundle's engine (shipped, the kit's, the cache's or built here); `batch`: at that batch size
        instead (the gateway's), built here from its static graph or from the dynamic-batch graph with its
        optimization profile (the manifest's batching section), and cached."""
        if batch is not None and batch != bundle.batching.sizes[0]:
            return cls._at_batch(bundle, precision, batch, cache_dir)
        trt = import_tensorrt()
        cuda = CudaRuntime()
        shipped = bundle.path("engine")
        if shipped is not None and precision == bundle.precision:
            try:
                return cls(shipped.read_bytes(), precision=precision, trt=trt, cuda=cuda)
            except BundleError as exc:
                log.warning("shipped engine %s unusable here (%s); building from ONNX", shipped, exc)
        used, onnx_path = onnx_for(bundle, precision, cpu=False)
        folder = Path(cache_dir) if cache_dir else default_cache_dir(bundle)
        key = cache_key(str(trt.__version__), gpu_identity(cuda), sha256_file(onnx_path), used)
        cached = folder / f"{key}.engine"
        for candidate in (kit_engine(bundle.folder, key), cached_engine(cached)):
            if candidate is None:
                continue
            log.info("using engine %s", candidate)
            try:
                return cls(candidate.read_bytes(), precision=used, trt=trt, cuda=cuda)
            except BundleError:
                log.warning("engine %s unusable; trying the next one or rebuilding", candidate)
        plan = build_serialized(trt, onnx_path, used, timing_cache=folder / "timing.cache")
        _cache(cached, plan)
        return cls(plan, precision=used, trt=trt, cuda=cuda)

    @classmethod
    def _at_batch(cls, bundle, precision: str, batch: int, cache_dir=None) -> "TensorRTEngine":
        trt, cuda = import_tensorrt(), CudaRuntime()
        profile = bundle.batching.tensorrt if precision != "int8" else None
        if profile:   # one dynamic-batch graph and its profile serve every size
            used, onnx_path = precision, inside(bundle.folder, profile["file"])
        else:         # a static graph per size (the unrolled INT8 graph)
            used, onnx_path = onnx_for(bundle, precision, cpu=False, batch=batch)
        folder = Path(cache_dir) if cache_dir else default_cache_dir(bundle)
        folder.mkdir(parents=True, exist_ok=True)
        key = cache_key(str(trt.__version__), gpu_identity(cuda), sha256_file(onnx_path), used)
        cached = folder / f"{key}.engine"
        plan = cached.read_bytes() if cached_engine(cached) is not None else None
        if plan is None:
            plan = build_serialized(trt, onnx_path, used, timing_cache=folder / "timing.cache", profile=profile)
            _cache(cached, plan)
        return cls(plan, precision=used, trt=trt, cuda=cuda, batch=batch)

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


def main(argv=None) -> int:
    """`python3 -m deploy.engines.tensorrt record-kit-engine BUNDLE --model FILE --precision P` (run by the kit)."""
    p = argparse.ArgumentParser(prog="python3 -m deploy.engines.tensorrt")
    sub = p.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record-kit-engine", help="record the key of the engine the kit built and checked")
    rec.add_argument("bundle")
    rec.add_argument("--model", required=True, help="the ONNX file the kit built from, relative to the bundle")
    rec.add_argument("--precision", required=True, choices=("int8", "fp16", "fp32"))
    args = p.parse_args(argv)
    try:
        trt = import_tensorrt()
        record = write_kit_record(args.bundle, args.model, args.precision, str(trt.__version__),
                                  gpu_identity(CudaRuntime()))
    except FogError as exc:
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return 2
    print(f"recorded {KIT_RECORD}: TensorRT {record['tensorrt']}, {record['gpu']}, {record['precision']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
