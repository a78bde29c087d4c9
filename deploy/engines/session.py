"""The one place an onnxruntime session is built: its options as data (`SessionSettings`), one loader (`open_session`).

Every session of the project, the device's engines and the workstation's verification, plan measurement, profiling
and benchmarks alike, comes from `open_session(model, settings)`, so the options a session ran with are a value that
can be read, compared and logged, not a dozen setter calls scattered over the tree.

`DEVICE_OPTIMIZERS_OFF`: graph fusions that make the device's CPU path slower. Measured on the bundled default
(fog-small, docs/bench.md "Where onnxruntime spends its time"): ONNX Runtime's SkipLayerNormFusion turns each
residual Add + LayerNormalization into its contrib SkipLayerNormalization, whose CPU kernel is 2.5x slower than the
pair it replaces at these shapes (72 vs 29 us at (128, 1, 64), onnxruntime 1.31); disabling that one fusion makes the
whole model 12-16 % faster. The model file is untouched (TensorRT gets the same graph); an onnxruntime that does not
know the name ignores it.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from deploy.errors import BundleError
from deploy.lazy import lazy_import, require

onnxruntime = lazy_import("onnxruntime", "device", "the onnxruntime engine")

DEVICE_OPTIMIZERS_OFF = ("SkipLayerNormFusion",)
# SessionSettings.optimization -> onnxruntime.GraphOptimizationLevel member
LEVELS = {"all": "ORT_ENABLE_ALL", "extended": "ORT_ENABLE_EXTENDED", "basic": "ORT_ENABLE_BASIC",
          "none": "ORT_DISABLE_ALL"}
QUIET = 3   # onnxruntime's log severity "error": its warnings about unused initializers are noise to a user


@dataclass(frozen=True)
class SessionSettings:
    """How a session is opened. The defaults are onnxruntime's own, but quiet."""
    threads: int | None = None               # intra-op threads; None: onnxruntime's default (one per core)
    optimization: str = "all"                # a key of LEVELS; "none" for a graph optimized at export
    disabled_optimizers: tuple[str, ...] = ()
    sequential: bool = False                 # one inter-op thread, nodes in order (the device's engines)
    config: dict = field(default_factory=dict)   # session config entries, e.g. {"session.intra_op.allow_spinning": 0}
    save_optimized_to: str | None = None     # write the graph onnxruntime runs here
    profile_prefix: str | None = None        # profile every run; the JSON goes to this prefix (end_profiling())
    log_severity: int = QUIET

    def __post_init__(self):
        if self.optimization not in LEVELS:
            raise ValueError(f"optimization {self.optimization!r} is not one of {sorted(LEVELS)}")

    def but(self, **changes) -> "SessionSettings":
        """A copy with `changes` (dataclasses.replace)."""
        return replace(self, **changes)


def device_settings(threads: int, preoptimized: bool = False, config: dict | None = None) -> SessionSettings:
    """What the device's engines open a model with: a fixed thread count, nodes in order, every optimization but the
    ones that are slower here (none at all for a graph onnxruntime already optimized at export)."""
    return SessionSettings(threads=threads, optimization="none" if preoptimized else "all", sequential=True,
                           disabled_optimizers=DEVICE_OPTIMIZERS_OFF, config=dict(config or {}))


def session_options(settings: SessionSettings):
    """The onnxruntime.SessionOptions `settings` describe."""
    ort = require(onnxruntime)
    options = ort.SessionOptions()
    for key, value in settings.config.items():
        options.add_session_config_entry(str(key), str(value))
    if settings.threads:
        options.intra_op_num_threads = int(settings.threads)
    if settings.sequential:
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[settings.optimization])
    options.log_severity_level = settings.log_severity
    if settings.save_optimized_to is not None:
        options.optimized_model_filepath = str(settings.save_optimized_to)
    if settings.profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(settings.profile_prefix)
    return options


def open_session(model, settings: SessionSettings = SessionSettings(), what: str = "model",
                 fix: str = "re-export the bundle"):
    """An onnxruntime CPU session on `model` (a path, or the bytes of a serialized model) opened as `settings` say.
    A model onnxruntime cannot load raises BundleError naming the file and `fix`."""
    ort = require(onnxruntime)
    source = model if isinstance(model, (bytes, bytearray)) else str(model)
    try:
        return ort.InferenceSession(source, sess_options=session_options(settings), providers=["CPUExecutionProvider"],
                                    disabled_optimizers=list(settings.disabled_optimizers))
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        where = "the serialized model" if isinstance(model, (bytes, bytearray)) else model
        raise BundleError(f"{where}: onnxruntime cannot load this {what} ({exc}); {fix}") from None
