"""The manifest's sections about how the model runs: the per-layer precision plan (`precision_plan`), the settings
onnxruntime opens it with and the thread caps export measured (`onnxruntime`), and how the stream is normalized
(`streaming`, with the fidelity figures export measured)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from deploy.contract import STREAM_NORMALIZATIONS
from deploy.contract.section import Section, key
from deploy.errors import BundleError, ConfigError

RECURRENCE_PLANS = ("unrolled", "fused")
THREAD_CAP_FIX = ("re-export the bundle with `toolkit export`, or ignore the cap (open_engine(..., thread_cap=False); "
                  "daemon: thread_cap = false or --no-thread-cap)")


@dataclass(frozen=True, kw_only=True)
class PrecisionPlan(Section):
    """The manifest's `precision_plan`: what runs in which precision, layer by layer (toolkit.export.plan)."""
    KEY: ClassVar[str] = "precision_plan"
    OPTIONAL: ClassVar[tuple] = ("cpu_int8",)
    recurrence: str = key(doc="\"unrolled\" (INT8 MatMuls per step) | \"fused\" (one LSTM/GRU node, FP16)")
    reason: str = key("", "why this recurrence plan")
    strongly_typed: bool = key(False, "the fused node's FP16 is in the ONNX (a strongly typed TensorRT)")
    layers: tuple[dict, ...] = key((), "[{layer, op, shape, precision, reason}] for every GEMM, norm, recurrence")
    cpu_int8: str | None = key(None, "the cpu target's INT8 plan when it is onnxruntime's (\"dynamic\")")

    def __post_init__(self):
        if self.recurrence not in RECURRENCE_PLANS:
            raise ConfigError(f"precision_plan.recurrence is {self.recurrence!r}, not one of {RECURRENCE_PLANS}")


@dataclass(frozen=True, kw_only=True)
class ThreadCap(Section):
    """One model role's measured thread cap (toolkit.export.threads): the fewest intra-op threads as fast as the
    most, which the device uses at most."""
    KEY: ClassVar[str] = "thread_cap"
    threads: int = key(doc="the cap")
    latency_ms: dict = key(doc="{threads: wall ms per call} as measured")
    margin: float | None = key(None, "fewer threads kept within this fraction of the fastest")
    reason: str | None = key(None, "the choice, with its figures")
    others_cores: float | None = key(None, "cores other processes used meanwhile (beyond 0.25: not capped)")
    measured_on: str | None = key(None, "the machine it was measured on")

    @classmethod
    def parse(cls, role: str, entry) -> "ThreadCap":
        """`onnxruntime.thread_cap.<role>` checked: whole threads >= 1, one of the counts measured."""
        threads = entry.get("threads") if isinstance(entry, dict) else None
        measured = entry.get("latency_ms") if isinstance(entry, dict) else None
        if not (isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1) \
                or not isinstance(measured, dict):
            raise BundleError(f"manifest onnxruntime.thread_cap.{role} = {entry!r} is not a measured thread cap "
                              "({'threads': whole number >= 1, 'latency_ms': {threads: ms}}); " + THREAD_CAP_FIX)
        if str(threads) not in {str(k) for k in measured}:
            raise BundleError(f"manifest onnxruntime.thread_cap.{role} chose {threads} threads but measured only "
                              f"{sorted(measured)}; a cap is never more than was measured; " + THREAD_CAP_FIX)
        return cls.from_dict(entry)


@dataclass(frozen=True, kw_only=True)
class OnnxRuntimeSection(Section):
    """The manifest's `onnxruntime`: how deploy.engines.onnxruntime opens each model role."""
    KEY: ClassVar[str] = "onnxruntime"
    preoptimized: tuple[str, ...] = key((), "model roles whose file onnxruntime optimized at export (loaded as is)")
    load_s: dict | None = key(None, "{load_with_optimization_s, load_preoptimized_s}: their load, measured at "
                                    "export")
    staged: dict = key({}, "{role: {steps: [[{file, inputs, outputs}, ...], ...], input, output, session_config, "
                           "preoptimized, split_lstms, why}}: roles run as stages (deploy.engines.staged)")
    thread_cap: dict = key({}, "{role: ThreadCap}: measured at export, a hint: the daemon measures its own "
                                "(deploy.thread_cap); with thread_cap = \"bundle\" it uses min(threads budget, cap)")

    @classmethod
    def convert(cls, values: dict) -> dict:
        caps = values.get("thread_cap") or {}
        if not isinstance(caps, dict):
            raise BundleError(f"manifest onnxruntime.thread_cap = {caps!r} is not a table of measured thread caps; "
                              + THREAD_CAP_FIX)
        return {**values, "staged": dict(values.get("staged") or {}),
                "thread_cap": {role: ThreadCap.parse(role, entry) for role, entry in caps.items()}}

    def cap(self, role: str) -> int | None:
        """The threads export measured fastest for `role`, None where it measured none."""
        entry = self.thread_cap.get(role)
        return entry.threads if entry is not None else None

    def staged_plan(self, role: str) -> dict | None:
        return self.staged.get(role) or None


@dataclass(frozen=True, kw_only=True)
class StreamingSection(Section):
    """The manifest's `streaming`: how the daemon normalizes the stream (deploy.wearer) and the fidelity figures
    that chose it (deploy.fidelity, toolkit.export.streaming); `skipped` says why nothing was measured."""
    KEY: ClassVar[str] = "streaming"
    OPTIONAL: ClassVar[tuple] = ("tau_s", "capture_s", "fixed", "data", "limit_pp", "limit_prob", "options",
                                 "fidelity", "chosen_by", "lookahead", "skipped")
    declared: str | None = key(None, "the model's declared normalization")
    tau_s: float | None = key(None, "time constant of the running options, s")
    capture_s: float | None = key(None, "the \"wearer\" option's capture, s")
    fixed: dict | None = key(None, "{mean, std, samples, data}: the \"fixed\" option's statistics")
    data: str | None = key(None, "the recordings measured on")
    limit_pp: float | None = key(None, "warning limit: |time called FOG streamed - offline|, percentage points")
    limit_prob: float | None = key(None, "warning limit: mean |any-FOG probability difference|")
    normalization: str = key("declared", " | ".join(f'"{m}"' for m in STREAM_NORMALIZATIONS)
                             + ": what the daemon runs")
    options: dict | None = key(None, "{option: fidelity figures} of every option measured")
    fidelity: dict | None = key(None, "the chosen option's figures (deploy.fidelity)")
    chosen_by: str | None = key(None, "why this option")
    lookahead: dict | None = key(None, "{measured_with, options: {look-ahead: figures}, rule, tolerance_pp, overlap, "
                                       "recommended, chosen, chosen_by}: the look-ahead sweep "
                                       "(toolkit.export.lookahead)")
    skipped: str | None = key(None, "why fidelity was not measured")

    def __post_init__(self):
        if self.normalization not in STREAM_NORMALIZATIONS:
            raise ConfigError(f"streaming.normalization is {self.normalization!r}, not one of "
                              f"{STREAM_NORMALIZATIONS}")
