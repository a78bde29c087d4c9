"""What `toolkit bench` times: a *benched model* (`BenchedModel`: a preset or a bundle) and the backends that run it.

A backend turns (benched, batch) into a zero-argument callable that runs one inference on a fixed input, plus the
matching reference workload (see bench.reference) to normalize by. onnxruntime and TensorRT go through
`deploy.engines`, the same engines the daemon runs, so the bench times exactly what the device does.

Static shapes everywhere (bundles carry them): a batch sweep needs one ONNX per batch size. A preset is exported on
the fly at each batch; a bundle runs its own files at its own batch, and other batches are re-exported from its
preset when the manifest names one (the float graph's speed does not depend on the trained weights).

Threads: `threads` is a budget for the project's onnxruntime engines, as on the device. A bundle's own model opens
through deploy.engines.open_engine, so the bundle's measured thread cap applies (manifest onnxruntime.thread_cap);
a model re-exported here gets its cap from the same measurement the export makes (toolkit.export.threads), within
the budget. The naive export and PyTorch eager run at the threads given (what a user gets). Every runner says the
threads it uses (`run.threads`; None: the runtime's default).
"""
from __future__ import annotations

import importlib.util
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from calibration import progress as bars
from deploy.engines import open_engine
from deploy.engines.onnxruntime import DISABLED_OPTIMIZERS
from deploy.engines.staged import StagedEngine
from deploy.engines.tensorrt import TensorRTEngine, build_serialized, import_tensorrt
from deploy.errors import FogError
from deploy.lazy import available, lazy_import
from toolkit.bench import reference as ref
from toolkit.bench.int8 import export_int8, export_naive, naive_session
from toolkit.export.cpu_plans import quantize_dynamic_int8, staged_dynamic
from toolkit.export.onnx import export_like_bundle
from toolkit.export.threads import measure_threads, thread_counts
from toolkit.timing import onnxruntime_engine

torch = lazy_import("torch", "workstation", "PyTorch eager and re-exporting a preset")
models = lazy_import("models", "workstation", "building a preset")

BACKENDS = ("pytorch-eager", "onnxruntime-naive", "onnxruntime-fp32", "onnxruntime-int8", "onnxruntime-dynamic",
            "onnxruntime-staged", "onnxruntime-staged-activations", "tensorrt")
# Which reference workload normalizes which backend: the one that runs on the same runtime.
REFERENCE_OF = {"pytorch-eager": "torch", "onnxruntime-naive": "onnxruntime", "onnxruntime-fp32": "onnxruntime",
                "onnxruntime-int8": "onnxruntime-int8", "onnxruntime-dynamic": "onnxruntime", "onnxruntime-staged": "onnxruntime",
                "onnxruntime-staged-activations": "onnxruntime",
                "tensorrt": "tensorrt"}
# What a user gets without the toolkit: a plain torch.onnx.export into a default onnxruntime session.
NAIVE = "onnxruntime-naive"


class BackendUnavailable(FogError):
    """This backend cannot run this model here (missing package, no INT8 graph, no GPU...)."""


@dataclass
class BenchedModel:
    """Everything the bench needs to know about one model, however it was given."""

    name: str
    input_shape: tuple[int, ...]          # at batch 1, e.g. (1, 54, 864)
    window_s: float | None = None
    hop_s: float | None = None
    parameters: int | None = None
    preset: str | None = None
    overrides: dict = field(default_factory=dict)
    bundle: object = None                  # deploy.bundle.Bundle when benching a bundle
    factory: Callable[[], object] | None = None  # builds the torch module when there is no preset (tests, users)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="fog-bench-")))
    _torch_model: object = None
    _onnx: dict = field(default_factory=dict)
    thread_caps: dict = field(default_factory=dict)  # (backend, batch, budget) -> toolkit.export.threads' measurement

    # --- torch -----------------------------------------------------------------------------------------------
    def torch_model(self):
        if self._torch_model is None:
            if self.factory is not None:
                model = self.factory()
            elif self.preset is not None:
                model = models.create_model(self.preset, **self.overrides)
            else:
                raise BackendUnavailable(f"{self.name}: no preset named in the manifest, so no PyTorch model to run")
            self._torch_model = model.eval()
            if self.parameters is None:
                self.parameters = sum(p.numel() for p in model.parameters())
        return self._torch_model

    def example(self, batch: int) -> np.ndarray:
        shape = (batch,) + tuple(self.input_shape[1:])
        return np.random.default_rng(batch).standard_normal(shape).astype(np.float32)

    # --- ONNX ------------------------------------------------------------------------------------------------
    def onnx(self, precision: str, batch: int) -> Path:
        """The ONNX file for `precision` at `batch` (the bundle's own file, else exported here and cached)."""
        if precision.startswith("staged"):  # the stages are cut from the dynamic plan's graph: its structure, profile
            return self.onnx("dynamic", batch)
        key = (precision, batch)
        if key in self._onnx:
            return self._onnx[key]
        path = None
        if self.bundle is not None and batch == self.input_shape[0] and precision in ("fp32", "int8"):
            path = self.bundle.path(precision)
            if path is None and precision != "fp32":
                raise BackendUnavailable(f"{self.name}: the bundle carries no {precision} model")
        elif self.bundle_role(precision, batch):   # the bundle's int8 model is the dynamic plan
            path = self.bundle.path("int8")
        if path is None:
            path = self._export(precision, batch)
        self._onnx[key] = path
        return path

    def bundle_role(self, precision: str, batch: int) -> str | None:
        """The bundle's own model role a backend of `precision` runs at `batch` (its fp32 or int8 model; `dynamic`
        when the bundle's int8 model is the cpu target's dynamic plan), else None: re-exported here."""
        if self.bundle is None or batch != self.input_shape[0]:
            return None
        if precision == "dynamic":
            plan = self.bundle.precision_plan
            return "int8" if plan is not None and plan.cpu_int8 == "dynamic" and self.bundle.path("int8") else None
        return precision if precision in ("fp32", "int8") and self.bundle.path(precision) else None

    def staged(self, batch: int, activations: bool = False) -> tuple[Path, dict]:
        """The dynamic plan's stages at `batch`, as the cpu target's bundle carries them: (folder, plan); with
        `activations`, attention's activation x activation MatMuls in int8 too (cpu_plans.ACTIVATIONS)."""
        key = ("staged", batch, activations)
        if key not in self._onnx:
            folder = self.workdir / f"{self.name}.b{batch}.staged{'-activations' if activations else ''}"
            folder.mkdir(exist_ok=True)
            plan = staged_dynamic(self.onnx("fp32", batch), folder, disabled_optimizers=DISABLED_OPTIMIZERS,
                                  activations=activations)
            if activations and not plan["activation_matmuls"]:
                raise BackendUnavailable(f"{self.name}: no activation x activation MatMul to quantize (attention is "
                                         "fused by toolkit.export.cpu_graph): the same plan as onnxruntime-staged")
            self._onnx[key] = (folder, plan)
        return self._onnx[key]

    def _export(self, precision: str, batch: int) -> Path:
        if self.preset is None and self.factory is None:
            raise BackendUnavailable(f"{self.name}: batch {batch} needs a re-export, and the manifest names no preset")
        if not available(torch):
            raise BackendUnavailable(f"{self.name}: batch {batch} needs a re-export from the preset, which needs "
                                     "torch (pip install 'fog-edge-toolkit[workstation]')") from None
        out = self.workdir / f"{self.name}.b{batch}.{precision}.onnx"
        example = torch.from_numpy(self.example(batch))
        if precision == "fp32":
            export_like_bundle(self.torch_model(), example, out)
        elif precision == "int8":
            export_int8(self.torch_model(), example, out)
        elif precision == "dynamic":  # the cpu target's dynamic plan (toolkit.export.cpu_plans)
            quantize_dynamic_int8(self.onnx("fp32", batch), out)
        elif precision == "naive":
            export_naive(self.torch_model(), example, out)
        else:
            raise BackendUnavailable(f"{self.name}: no {precision} export in the bench")
        return out


# --- runners -------------------------------------------------------------------------------------------------

def open_runner(benched: BenchedModel, backend: str, batch: int, threads: int) -> Callable[[], object]:
    """A callable running one inference of `benched` at `batch` on `backend` (loaded, not yet warmed up)."""
    x = benched.example(batch)
    if backend == "pytorch-eager":
        default = _torch_default_threads(torch)  # recorded before the first change
        torch.set_num_threads(threads or default)
        model = benched.torch_model()
        xt = torch.from_numpy(x)

        def run():
            with torch.inference_mode():
                return model(xt)
        return _says(run, torch.get_num_threads())
    if backend == NAIVE:
        return _says(naive_session(benched.onnx("naive", batch), x, threads), threads or None)
    if backend.startswith("onnxruntime-"):
        engine = _onnxruntime(benched, backend, batch, threads, x)
        return _says(lambda: engine.infer(x), engine.threads)
    if backend == "tensorrt":
        return _tensorrt_runner(benched, batch, x)
    raise FogError(f"unknown backend {backend!r}; choose from {BACKENDS}")


def _says(run, threads: int | None):
    """`run`, saying the threads it uses (None: the runtime's default)."""
    run.threads = threads
    return run


def _onnxruntime(benched: BenchedModel, backend: str, batch: int, threads: int, x):
    """The project's onnxruntime engine for `backend`: the bundle's own (open_engine: its stages, pre-optimized
    graph and thread cap) when the bundle carries this model at `batch`, else the model exported here, at the
    threads toolkit.export.threads measures best within the budget `threads` (0: all cores)."""
    role = _bundle_role(benched, backend, batch)
    if role:
        return open_engine(benched.bundle, backend="onnxruntime", precision=role, threads=threads or None)
    open_at = _opener(benched, backend, batch)
    return open_at(capped_threads(benched, backend, batch, threads, open_at, x))


def prepare(benched: BenchedModel, backend: str, batch: int, threads: int) -> None:
    """Export what `backend` runs at `batch` and measure its thread cap now (outside a timed or memory window)."""
    if backend.startswith("onnxruntime-") and backend != NAIVE and not _bundle_role(benched, backend, batch):
        capped_threads(benched, backend, batch, threads, _opener(benched, backend, batch), benched.example(batch))


def _bundle_role(benched: BenchedModel, backend: str, batch: int) -> str | None:
    precision = backend.split("-", 1)[1]
    return None if precision.startswith("staged") else benched.bundle_role(precision, batch)


def _opener(benched: BenchedModel, backend: str, batch: int):
    """open_at(threads) -> the engine of a backend exported here (exported now if need be)."""
    precision = backend.split("-", 1)[1]
    if precision.startswith("staged"):  # the dynamic plan in stages, both LSTM directions side by side
        folder, plan = benched.staged(batch, activations=backend.endswith("-activations"))
        return lambda k: StagedEngine(folder, plan, threads=k, preoptimized=plan["preoptimized"],
                                      disabled_optimizers=DISABLED_OPTIMIZERS)
    path = benched.onnx(precision, batch)
    return lambda k: onnxruntime_engine(path, k)


def capped_threads(benched: BenchedModel, backend: str, batch: int, threads: int, open_at, x) -> int:
    """The threads a re-exported engine runs at: one when the budget is one, else the fewest within the margin of
    the fastest over 1..budget (toolkit.export.threads.measure_threads, as the export measures a bundle's cap),
    measured once per backend, batch and budget."""
    counts = thread_counts(threads or None)
    if len(counts) == 1:
        return counts[0]
    key = (backend, batch, threads)
    if key not in benched.thread_caps:
        benched.thread_caps[key] = measure_threads(open_at, x, threads or None)
        bars.write(f"[bench] {backend} batch {batch}, threads within {threads or 'all cores'}: "
                   f"{benched.thread_caps[key]['reason']}")
    return benched.thread_caps[key]["threads"]


_TORCH_THREADS: list[int] = []


def _torch_default_threads(torch) -> int:
    """torch's own thread count, as it was before the bench first changed it (threads=0: each backend's default)."""
    if not _TORCH_THREADS:
        _TORCH_THREADS.append(torch.get_num_threads())
    return _TORCH_THREADS[0]


def check_available(benched: BenchedModel, backend: str, batch: int | None = None) -> None:
    """Raise BackendUnavailable (saying why) before anything is loaded for a backend that cannot run."""
    if backend == "tensorrt":
        if importlib.util.find_spec("tensorrt") is None:
            raise BackendUnavailable("tensorrt is not installed here (it runs on the Jetson; see docs/bench.md)")
        if benched.bundle is None or (batch is not None and batch != benched.input_shape[0]):
            raise BackendUnavailable("TensorRT is benched on a bundle, at the bundle's batch size")
    elif backend == "pytorch-eager" or backend.startswith("onnxruntime"):
        if importlib.util.find_spec("torch") is None and (backend == "pytorch-eager" or benched.bundle is None):
            raise BackendUnavailable(f"{backend} needs torch here (pip install 'fog-edge-toolkit[workstation]')")
    if backend == "onnxruntime-int8" and benched.bundle is not None and benched.bundle.path("int8") is None \
            and benched.preset is None:
        raise BackendUnavailable(f"{benched.name}: the bundle carries no int8 model")


def _tensorrt_runner(benched: BenchedModel, batch: int, x: np.ndarray):
    check_available(benched, "tensorrt", batch)
    engine = open_engine(benched.bundle, backend="tensorrt")
    return _says(lambda: engine.infer(x), None)   # a GPU engine: no CPU threads to say


def open_reference(kind: str, threads: int, workdir: Path, size: str = "small") -> Callable[[], object]:
    """The reference workload for a backend family at `size` (bench.reference.SIZES; the INT8 one has a single
    size), loaded and ready to time."""
    if kind == "torch":
        return ref.torch_reference(threads, size)
    if kind == "onnxruntime-int8":
        engine = onnxruntime_engine(ref.reference_int8_onnx(workdir / f"reference-{ref.REFERENCE_VERSION}-int8.onnx"),
                                    threads)
        x8 = ref.reference_int8_input()
        return lambda: engine.infer(x8)
    path = ref.reference_onnx(workdir / f"reference-{ref.REFERENCE_VERSION}-{size}.onnx", size=size)
    x = ref.reference_input(size=size)
    if kind == "onnxruntime":
        engine = onnxruntime_engine(path, threads)
    elif kind == "tensorrt":  # built on the device, fp32, with the same build steps as a bundle's engine
        engine = TensorRTEngine(build_serialized(import_tensorrt(), path, "fp32"), precision="fp32")
    else:
        raise FogError(f"unknown reference kind {kind!r}")
    return lambda: engine.infer(x)
