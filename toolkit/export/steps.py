"""The export's steps as the pipeline runs them: each one shown, timed and handed back as a result.

`Steps.step(key, title)` wraps one step (Ultralytics' exporter has a decorator that times, logs and catches every
export step; this is its context-manager form): the title on the step bar (calibration.progress.StepBar) while it
runs, the step's `detail` on its finished line, its seconds in `timings[key]` (the manifest's `export.timings`).
The results are small frozen records: what a step found, for the steps after it and the manifest's sections
(toolkit.export.manifest.build_manifest); nothing is left on the pipeline between steps.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

from calibration.progress import StepBar
from deploy.contract.model import InputSection, ModelSection, OutputSection
from deploy.contract.runtime import PrecisionPlan


@dataclass
class Step:
    """The running step: what its finished line says."""
    detail: str = ""


class Steps:
    """The bar over an export's `total` steps and every step's seconds."""

    def __init__(self, total: int, quiet: bool):
        self.bar = StepBar(total=total, desc="export", enabled=not quiet)
        self.timings: dict[str, float] = {}

    @contextmanager
    def step(self, key: str, title: str):
        """One step, named `title` on the bar; its seconds go to timings[f"{key}_s"] when it finishes."""
        self.bar.start(title)
        step = Step()
        yield step
        self.timings[f"{key}_s"] = self.bar.done(step.detail)

    def close(self) -> None:
        self.bar.close()


@dataclass(frozen=True)
class FloatGraph:
    """Step 1: the float ONNX (loaded), how it was made, and the sections it settles."""
    onnx: object                 # onnx.ModelProto of model_fp32.onnx as exported
    model: ModelSection
    input: InputSection
    output: OutputSection


@dataclass(frozen=True)
class Windows:
    """Calibration (seed 1, `wide` at a time) and held-out verification (seed 2) windows."""
    calibration: list
    verification: list
    wide: int

    @property
    def count(self) -> int:
        return sum(len(b) for b in self.verification)


@dataclass(frozen=True)
class Int8Graph:
    """The INT8 step: the QAT variant (and its wide twin), the ranges it ships, its plan, its checks."""
    qat: object
    qat_wide: object
    calibration: dict            # the manifest's export.calibration
    plan: PrecisionPlan
    checks: list


@dataclass(frozen=True)
class Verification:
    """The verify step: figures per pair, and the outputs later steps compare with or ship."""
    pairs: dict
    reference: object            # the float model's outputs (PyTorch)
    fp32: object                 # ONNX Runtime on the fp32 graph
    int8: object = None          # ONNX Runtime on the int8 graph as the target runs it


@dataclass(frozen=True)
class CpuChoice:
    """An onnxruntime target's choice of what runs: precision, the int8 file and how it is opened."""
    precision: str
    record: dict                 # the manifest's export.cpu_precision
    int8_file: str | None = None
    plan: PrecisionPlan | None = None      # replaces the INT8 step's plan (the dynamic plan is onnxruntime's)
    dynamic: dict | None = None            # the manifest's export.cpu_dynamic_plan
    pairs: dict = field(default_factory=dict)   # verification of the dynamic plan, when it passed
    preoptimized: float | None = None      # seconds onnxruntime took to optimize the int8 file (None: not)
    staged: dict | None = None             # its stages, when they measured faster


@dataclass(frozen=True)
class EngineOrKit:
    """The engine step: a TensorRT engine or the build kit, or (onnxruntime) the measured thread caps."""
    note: str
    kit: dict | None = None
    engine_file: str | None = None
    thread_cap: dict = field(default_factory=dict)
