"""Deployment targets as data: one profile per device family and TensorRT version.

The exporter and the checks read these facts; no code branches on a target's name. Sources for every fact:
`../shared/reference/tensorrt-jetson.md` (JetPack -> TensorRT, opset ceilings, INT8/DLA hardware) and the ONNX-TensorRT
operator matrices, encoded as `toolkit/export/optables/trt*.json` (see `make_optables.py`).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from deploy.contract import CPU_FP32_REASON
from deploy.errors import FogError

OPTABLES = Path(__file__).resolve().parent / "optables"


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    runtime: str                     # "tensorrt" (engine built on the device) or "onnxruntime"
    devices: tuple[str, ...] = ()
    jetpack: str | None = None
    tensorrt: str | None = None      # the TensorRT release the device ships, e.g. "10.3"
    trt_majors: tuple[int, ...] = ()  # API generations the build code must speak (x86-cuda: 10 and 11)
    optable: str | None = None       # which stored ONNX-TensorRT matrix answers "is this op supported?"
    optable_note: str = ""
    opset_min: int = 7
    opset_max: int = 17
    export_opset: int = 17           # what the exporter emits (inside the window)
    precisions: tuple[str, ...] = ("fp32",)
    default_precision: str = "fp32"  # ("fastest", on request for the cpu target: measure fp32 and int8, pick)
    layernorm_op: bool = True        # has an importer for ONNX LayerNormalization
    int8: bool = False               # hardware INT8 (explicit Q/DQ)
    fp16: bool = False
    qdq_zero_point_required: bool = False  # TRT 8.x asserts the 3rd Q/DQ input
    dla: bool = False
    dla_note: str = ""
    trtexec: str = "trtexec"
    notes: tuple[str, ...] = field(default_factory=tuple)
    strongly_typed_from: int = 11    # first TensorRT major this target builds strongly typed (x86-cuda: 10)

    def strongly_typed(self, trt_major: int) -> bool:
        """TensorRT 11 networks are always strongly typed: precision lives in the ONNX, not in builder flags. A
        target may build strongly typed from an earlier major (10.x has the STRONGLY_TYPED creation flag)."""
        return trt_major >= min(11, self.strongly_typed_from)

    @property
    def graph_strongly_typed(self) -> bool:
        """True when every TensorRT this target builds with is strongly typed: FP16 must be written in the ONNX."""
        return self.runtime == "tensorrt" and bool(self.trt_majors) and all(
            self.strongly_typed(m) for m in self.trt_majors)

    def to_dict(self) -> dict:
        return asdict(self)


_JETSON_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"
# What every JetPack 5.1 device shares: TensorRT 8.5.2 (its op table, opset window, no LayerNormalization importer,
# explicit zero points, DLA without Q/DQ).
_JETPACK5 = dict(
    runtime="tensorrt", jetpack="5.1", tensorrt="8.5.2", trt_majors=(8,), optable="8.5", opset_min=1, opset_max=17,
    export_opset=16, precisions=("int8", "fp16", "fp32"), default_precision="int8", layernorm_op=False, int8=True,
    fp16=True, qdq_zero_point_required=True, dla=True, trtexec=_JETSON_TRTEXEC,
    notes=("TensorRT 8.5 has no LayerNormalization importer: exported at opset 16, LayerNorm decomposed",))

_TARGETS = (
    Target(
        name="jetson-orin-jp6",
        description="Jetson Orin (Nano/NX/AGX) on JetPack 6.1/6.2: TensorRT 10.3, CUDA 12.6",
        runtime="tensorrt", devices=("Orin Nano", "Orin NX", "AGX Orin"), jetpack="6.1-6.2", tensorrt="10.3",
        trt_majors=(10,), optable="10.1",
        optable_note="TensorRT 10.3 uses the 10.1 matrix (closest stored revision; 10.3 only added tensor axes for "
                     "Slice)",
        opset_min=9, opset_max=20, export_opset=17, precisions=("int8", "fp16", "fp32"), default_precision="int8",
        int8=True, fp16=True, dla=True,
        dla_note="AGX Orin and Orin NX have DLA (not Orin Nano); attention/recurrence do not run on DLA, so it is "
                 "opt-in with GPU fallback",
        trtexec=_JETSON_TRTEXEC),
    Target(
        name="jetson-orin-jp5",
        description="Jetson Orin on JetPack 5.1.x: TensorRT 8.5.2, CUDA 11.4",
        devices=("Orin NX", "AGX Orin", "Orin Nano"),
        dla_note="TensorRT 8.x DLA does not take explicit Q/DQ: DLA builds are FP16 only here", **_JETPACK5),
    Target(
        name="jetson-xavier",
        description="Jetson Xavier NX / AGX Xavier on JetPack 5.1.x (their last): TensorRT 8.5.2, CUDA 11.4",
        devices=("Xavier NX", "AGX Xavier"),
        dla_note="2x NVDLA v1; TensorRT 8.x DLA does not take explicit Q/DQ: DLA builds are FP16 only here",
        **_JETPACK5),
    Target(
        name="jetson-thor",
        description="Jetson Thor on JetPack 7.0/7.1: TensorRT 10.13, CUDA 13.0",
        runtime="tensorrt", devices=("AGX Thor",), jetpack="7.0-7.1", tensorrt="10.13", trt_majors=(10,),
        optable="10.15",
        optable_note="TensorRT 10.13 uses the 10.15 matrix (closest stored revision; same opset window 9-24)",
        opset_min=9, opset_max=24, export_opset=17, precisions=("int8", "fp16", "fp32"), default_precision="int8",
        int8=True, fp16=True, dla=False, dla_note="Thor has no DLA", trtexec=_JETSON_TRTEXEC),
    Target(
        name="jetson-nano",
        description="Jetson Nano (Maxwell sm_53) on JetPack 4.6.x: TensorRT 8.2.1, CUDA 10.2; FP16 only",
        runtime="tensorrt", devices=("Jetson Nano", "TX1"), jetpack="4.6", tensorrt="8.2.1", trt_majors=(8,),
        optable="8.5",
        optable_note="no TensorRT 8.2 matrix is stored; the 8.5 matrix is the closest and may over-report support "
                     "(8.2 parses opset <= 13 only)",
        opset_min=1, opset_max=13, export_opset=13, precisions=("fp16", "fp32"), default_precision="fp16",
        layernorm_op=False, int8=False, fp16=True, qdq_zero_point_required=True, dla=False,
        dla_note="Nano has no DLA", trtexec=_JETSON_TRTEXEC,
        notes=("no INT8 hardware (sm_53): Q/DQ engines cannot be built",
               "opset <= 13: models whose float export needs a newer opset (e.g. attention through SDPA) are "
               "exported through their static variant with quantization off")),
    Target(
        name="x86-cuda",
        description="x86-64 workstation/server GPU with TensorRT 10.x or 11.x (11 is strongly typed)",
        runtime="tensorrt", devices=("x86-64 + NVIDIA GPU",), tensorrt="10.x/11.x", trt_majors=(10, 11),
        optable="10.15", optable_note="checked against the newest stored matrix (10.15)",
        opset_min=9, opset_max=24, export_opset=17, precisions=("int8", "fp16", "fp32"), default_precision="int8",
        int8=True, fp16=True, dla=False, trtexec="trtexec", strongly_typed_from=10,
        notes=("strongly typed on 10.x and 11.x (STRONGLY_TYPED network, --stronglyTyped): no precision flags; the "
               "INT8 precision is baked into the Q/DQ ONNX, the fused recurrence's FP16 into explicit Casts, and "
               "other layers run in the ONNX's float type",)),
    Target(
        name="cpu",
        description="Any CPU with ONNX Runtime (the daemon's portable backend)",
        runtime="onnxruntime", devices=("x86-64", "aarch64"), opset_min=7, opset_max=21, export_opset=17,
        precisions=("fp32", "int8"), default_precision="fp32", int8=True, fp16=False,
        notes=(f"fp32 by default: {CPU_FP32_REASON}",)),
)

# The flagship names: `jetson` follows the current JetPack for Orin.
ALIASES = {"jetson": "jetson-orin-jp6", "jetson-orin": "jetson-orin-jp6", "thor": "jetson-thor",
           "xavier": "jetson-xavier", "nano": "jetson-nano"}
TARGETS = {t.name: t for t in _TARGETS}


def list_targets() -> list[Target]:
    return list(_TARGETS)


def get_target(name: str) -> Target:
    key = ALIASES.get(name, name)
    if key not in TARGETS:
        names = ", ".join(list(TARGETS) + list(ALIASES))
        raise FogError(f"unknown target {name!r}; known targets: {names} (see `toolkit targets`)")
    return TARGETS[key]


@lru_cache(maxsize=None)
def op_table(version: str) -> dict:
    """The stored ONNX-TensorRT matrix for `version` ("8.5", "8.6", "10.1", "10.15")."""
    path = OPTABLES / f"trt{version}.json"
    if not path.is_file():
        raise FogError(f"{path}: op table missing; regenerate with python toolkit/export/optables/make_optables.py")
    return json.loads(path.read_text())
