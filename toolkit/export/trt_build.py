"""Build a TensorRT engine from a bundle's ONNX, speaking the API of TensorRT 8.x, 10.x and 11.x.

What differs between versions (facts: ../shared/reference/tensorrt-jetson.md sections 3-4):
- 8.x networks need the EXPLICIT_BATCH creation flag; 10.x ignores it (always explicit); 11.x is always strongly
  typed, so no precision builder flags exist there and the precision comes from the ONNX (Q/DQ, tensor types). A
  target with `strongly_typed_from=10` (x86-cuda) creates 10.x networks with the STRONGLY_TYPED flag as well, and
  sets no precision flag (TensorRT rejects them on strongly typed networks).
- The workspace limit is `set_memory_pool_limit(WORKSPACE, bytes)` from 8.4; 8.2 (Jetson Nano) has only
  `max_workspace_size`.
- Q/DQ (explicit INT8) networks need the INT8 flag (with FP16 for the layers left in float) on 8.x/10.x.
- DLA: default device DLA, a core, and GPU fallback; only on targets whose device has DLA.
`tensorrt` is imported here only when a build is asked for; tests pass a recording double as `trt`.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from deploy.engines.tensorrt import add_profile
from deploy.errors import FogError, MissingDependency
from deploy.lazy import lazy_import, require

tensorrt = lazy_import("tensorrt", "tensorrt", "building a TensorRT engine")


class EngineBuildError(FogError):
    """TensorRT refused the network or produced no engine."""


def api_major(trt) -> int:
    return int(str(trt.__version__).split(".")[0])


def gpu_present() -> bool:
    if shutil.which("nvidia-smi") or Path("/dev/nvhost-ctrl-gpu").exists() or Path("/dev/nvidia0").exists():
        return True
    return False


def can_build_here(target) -> tuple[bool, str]:
    """(True, "") when this machine can build an engine that the target will run; else (False, why)."""
    try:
        trt = require(tensorrt)
    except MissingDependency:
        return False, "tensorrt is not installed here"
    if not gpu_present():
        return False, "no NVIDIA GPU here"
    major = api_major(trt)
    if major not in target.trt_majors:
        return False, f"TensorRT {trt.__version__} here, target {target.name} runs {target.tensorrt}"
    if target.tensorrt and "x" not in target.tensorrt and not str(trt.__version__).startswith(target.tensorrt):
        # Engines are not portable across TensorRT versions or devices: build on the device itself.
        return False, f"TensorRT {trt.__version__} here, target {target.name} runs {target.tensorrt}"
    return True, ""


def network_flags(trt, major: int, strongly_typed: bool = False) -> int:
    if major >= 11 or strongly_typed:
        flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        return 0 if flag is None else 1 << int(flag)
    if major >= 10:
        return 0  # EXPLICIT_BATCH is deprecated and ignored: networks are always explicit batch
    return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)


def configure(trt, builder, config, *, major: int, precision: str, target, workspace_mb: int,
              dla_core: int | None, strongly_typed: bool = False) -> list[str]:
    """Set workspace, precision and DLA on `config`; returns what was set, for the log and the manifest."""
    notes = []
    workspace = int(workspace_mb) << 20
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
        notes.append(f"workspace pool {workspace_mb} MiB")
    else:
        config.max_workspace_size = workspace  # TensorRT 8.2 and older
        notes.append(f"max_workspace_size {workspace_mb} MiB")
    if major >= 11 or strongly_typed:
        notes.append("strongly typed: precision from the ONNX (Q/DQ, FP16 casts), no precision flags")
    else:
        if precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)
            notes.append("FP16")
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)  # explicit Q/DQ network; FP16 for the layers left in float
            notes.append("INT8 (explicit Q/DQ)")
    if dla_core is not None:
        if not target.dla:
            raise EngineBuildError(f"target {target.name} has no DLA ({target.dla_note}); drop --dla-core")
        if precision == "fp32":
            raise EngineBuildError("DLA runs FP16 or INT8 only; use --precision fp16 or int8 with --dla-core")
        if getattr(builder, "num_DLA_cores", 0) <= dla_core:
            raise EngineBuildError(f"DLA core {dla_core} requested, this device has "
                                   f"{getattr(builder, 'num_DLA_cores', 0)} (Orin Nano has none)")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(dla_core)
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        notes.append(f"DLA core {dla_core} with GPU fallback")
    return notes


def build_engine(onnx_path, engine_path, *, target, precision: str, timing_cache=None, dla_core=None,
                 workspace_mb: int = 1024, trt=None, profile: dict | None = None) -> dict:
    """Parse `onnx_path`, build, and write the serialized engine to `engine_path`. `profile`: the optimization
    profile of a dynamic-batch graph (the manifest's batching.tensorrt: {input, min, opt, max})."""
    trt = trt or require(tensorrt)
    major = api_major(trt)
    if major not in target.trt_majors:
        raise EngineBuildError(f"TensorRT {trt.__version__} cannot build for target {target.name} "
                               f"(TensorRT {target.tensorrt})")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly = target.strongly_typed(major)
    network = builder.create_network(network_flags(trt, major, strongly))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(f"TensorRT {trt.__version__} could not parse {onnx_path}: " + "; ".join(errors[:5]))
    config = builder.create_builder_config()
    notes = configure(trt, builder, config, major=major, precision=precision, target=target,
                      workspace_mb=workspace_mb, dla_core=dla_core, strongly_typed=strongly)
    if profile is not None:
        if dla_core is not None:
            raise EngineBuildError("a dynamic-batch engine does not run on DLA (static shapes only); build the "
                                   "per-size engines for DLA, or drop --dla-core")
        notes.append(add_profile(builder, config, profile))
    cache_path = Path(timing_cache) if timing_cache else None
    if cache_path is not None:
        cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
        config.set_timing_cache(cache, True)  # ignore a mismatching cache instead of failing
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineBuildError(f"TensorRT {trt.__version__} returned no engine for {onnx_path} (see its log above)")
    Path(engine_path).write_bytes(bytes(plan))
    if cache_path is not None:
        cache_path.write_bytes(bytes(memoryview(config.get_timing_cache().serialize())))
    return {"tensorrt": str(trt.__version__), "settings": notes, "engine": str(engine_path)}
