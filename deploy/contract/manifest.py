"""The whole manifest (`manifest.json`, schema_version `deploy.contract.SCHEMA_VERSION`): its sections in the order
the exporter writes them, typed where a reader derives something from them.

Typed (deploy.contract.*): model, input, output, events, models, onnxruntime, precision_plan, streaming, batching.
Plain data,
because nobody derives a rule from them: `target` (the target profile, toolkit.export.targets.Target.to_dict),
`export` (how the bundle was made: opset, calibration, timings, kit, cpu choice: a record for people), `verification`
and `checks` (figures and verdicts, printed), `files` and `digest` (written and checked by deploy.bundle).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

from deploy.contract import SCHEMA_VERSION
from deploy.contract.batching import BatchingSection
from deploy.contract.events import EventSettings
from deploy.contract.model import InputSection, ModelFiles, ModelSection, OutputSection
from deploy.contract.runtime import OnnxRuntimeSection, PrecisionPlan, StreamingSection
from deploy.contract.section import Section, key
from deploy.errors import ConfigError

# manifest key -> its typed section
SECTIONS = {cls.KEY: cls for cls in (ModelSection, InputSection, OutputSection, EventSettings, ModelFiles,
                                     OnnxRuntimeSection, PrecisionPlan, StreamingSection, BatchingSection)}


def parse_section(name: str, data, classes=None):
    """The typed section `name` of a manifest from its dict (None stays None); events check their thresholds
    against the model's `classes` when given."""
    if data is None:
        return None
    if name == EventSettings.KEY:
        return EventSettings.from_dict(data, classes=classes)
    return SECTIONS[name].from_dict(data)


@dataclass(frozen=True, kw_only=True)
class Manifest(Section):
    """Every key of manifest.json, in order."""
    KEY: ClassVar[str] = "manifest"
    schema_version: int = key(SCHEMA_VERSION, "this schema's version (deploy.contract.SCHEMA_VERSION); Bundle.load "
                                              "refuses any other")
    toolkit_version: str | None = key(None, "the toolkit that wrote it")
    created: str | None = key(None, "ISO 8601 UTC")
    model: ModelSection = key(doc="ModelSection")
    input: InputSection = key(doc="InputSection")
    output: OutputSection = key(doc="OutputSection")
    events: EventSettings = key(EventSettings(), "EventSettings")
    precision: str = key("fp32", "\"int8\" | \"fp16\" | \"fp32\": what the target runs")
    models: ModelFiles = key(doc="ModelFiles")
    target: dict = key({}, "the target profile as data (toolkit.export.targets; `toolkit targets NAME`)")
    export: dict | None = key(None, "how it was made: {opset, batch, calibration: {source: qat|cache|"
                                    "export-calibrated, method, calibrator, windows, data, data_description, path, "
                                    "model_hash, unused}|null, timings: {step: s}, engine, kit: {script, reference, "
                                    "generations, trtexec}|null, cpu_latency_ms, cpu_precision, fp16_note, "
                                    "cpu_dynamic_plan, events_chosen: {from, sha256, fa_per_hour_asked, scored, "
                                    "point, events_scored, hours, recordings}|null (toolkit.api.threshold), "
                                    "event_mode: {mode, chosen_by} (toolkit.export.detector)}")
    onnxruntime: OnnxRuntimeSection | None = key(None, "OnnxRuntimeSection")
    precision_plan: PrecisionPlan | None = key(None, "PrecisionPlan | null (no INT8 graph)")
    verification: dict | None = key(None, "{pairs: {\"torch_vs_ort_fp32\": {max_abs, mean_abs, p99_abs, "
                                          "agreement, threshold, passed}, ...}, windows, data, weights}")
    checks: tuple[dict, ...] = key((), "[{name, passed, detail, model}]: the static checks of every graph")
    streaming: StreamingSection | None = key(None, "StreamingSection | null (--no-fidelity)")
    batching: BatchingSection | None = key(None, "BatchingSection | null (batch 1 only)")
    files: dict | None = key(None, "{relative path: {sha256, bytes}}: every file but manifest.json, signature.json "
                                   "and cache/ (built on the device)")
    digest: str | None = key(None, "\"sha256:<hex>\" of the canonical manifest (sorted keys, no spaces) without "
                                   "this field: covers every file")

    @classmethod
    def convert(cls, values: dict) -> dict:
        out = dict(values)
        output = out.get("output")
        classes = list(output.get("classes") or []) if isinstance(output, dict) else None
        for name in SECTIONS:
            if name in out:
                try:
                    out[name] = parse_section(name, out[name], classes)
                except (TypeError, ValueError) as exc:
                    raise ConfigError(f"manifest {name}: {exc}") from None
        return out

    def section(self, name: str):
        """A section by its manifest key."""
        if name not in {f.name for f in fields(self)}:
            raise ConfigError(f"the manifest has no section {name!r}")
        return getattr(self, name)
