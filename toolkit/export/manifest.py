"""The bundle's manifest.json (schema: docs/architecture.md, deploy.contract.manifest) from the sections a finished
export's steps returned, and its summary for a person.

Every name in it comes from deploy.contract (the bundle's vocabulary and typed sections), so the device reads back
the words the exporter wrote.
"""
from __future__ import annotations

from datetime import datetime, timezone

from deploy.contract import INPUT_NAME, OUTPUT_NAME
from deploy.contract.manifest import Manifest
from deploy.contract.model import InputSection, ModelSection, OutputSection
from deploy.contract.runtime import OnnxRuntimeSection
from deploy.offline import output_per
from toolkit import __version__
from toolkit.export.lookahead import lines as lookahead_lines
from toolkit.export.macs import count_macs
from toolkit.export.ranges import ranges_line
from toolkit.export.verify import describe

FP16_NOTE = ("FP16 runs from the fp32 ONNX with the builder's FP16 flag (TensorRT < 11); it is verified on the device "
             "by the kit's polygraphy comparison")
VERIFICATION_DATA = "deploy.synth recordings, seed 2 (calibration used seed 1)"


def _macs(model) -> int | None:
    try:
        result = count_macs(model)
    except Exception:  # MAC counting is informational; never fail an export on it
        return None
    return int(result if isinstance(result, (int, float)) else getattr(result, "total", 0)) or None


def model_section(source, fp32, float_graph: str) -> ModelSection:
    """Where the model came from (source: a toolkit.export.source.ModelSource), with the float graph's MACs."""
    return ModelSection(name=source.name, preset=source.preset, source=source.kind, tsai_compat=source.tsai_compat,
                        factory=source.factory, weights_sha256=source.weights_sha256, parameters=source.parameters(),
                        macs=_macs(fp32), float_graph=float_graph, notes=tuple(source.notes),
                        trained_on=source.trained_on)


def input_section(source, shape) -> InputSection:
    return InputSection.of(shape, source.preprocess, name=INPUT_NAME)


def output_section(source, fp32) -> OutputSection:
    """The graph's output, its classes, which are background, how any-FOG is formed (deploy.event_classes)."""
    shape = tuple(d.dim_value for d in fp32.graph.output[0].type.tensor_type.shape.dim)
    return OutputSection(name=OUTPUT_NAME, shape=shape, classes=tuple(source.classes),
                         per=output_per(shape, source.spec), activation=source.activation,
                         background=tuple(source.background), any_fog=source.any_fog)


RANDOM_WEIGHTS = ("RANDOM initial weights were verified: their probabilities sit near 0.5, so the figures say the "
                  "export computes what the model computes, not how a trained model's decisions survive INT8; the "
                  "agreement gate counts only decisions the float model makes by more than the margin")


def weights_verified(source) -> str:
    """Which weights the verification ran: trained (a file or the factory's own), or random, said plainly."""
    if any("random initial weights" in note for note in source.notes):
        return RANDOM_WEIGHTS
    return f"trained weights ({source.weights_path or 'the factory' + chr(39) + 's own'})"


def verification_section(pairs: dict, windows: int, source) -> dict:
    return {"pairs": pairs, "windows": windows, "data": VERIFICATION_DATA, "weights": weights_verified(source)}


def onnxruntime_section(cpu, thread_cap: dict | None = None) -> OnnxRuntimeSection:
    """The manifest's `onnxruntime` settings the engine opens with (deploy.engines.onnxruntime.open_role) after the
    cpu step `cpu` (a toolkit.export.steps.CpuChoice, None for a TensorRT target), with the thread caps once
    toolkit.export.threads measured them on the engine these settings open. `preoptimized`: model roles whose file
    is the graph onnxruntime optimized at export (the device loads them as they are); `staged`: model roles the
    device runs as stages, two at a time where the plan allows (deploy.engines.staged)."""
    preoptimized = cpu.preoptimized if cpu else None
    staged = cpu.staged if cpu and cpu.precision == "int8" else None
    return OnnxRuntimeSection.from_dict({"preoptimized": ["int8"] if preoptimized else [], "load_s": preoptimized,
                                         "staged": {"int8": staged} if staged else {},
                                         "thread_cap": thread_cap or {}})


def build_manifest(sections: dict) -> dict:
    """manifest.json's content from the export's sections ({manifest key: section}, typed where
    deploy.contract.manifest types it), in the schema's order; deploy.bundle.write_manifest adds `files` and the
    digest."""
    created = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    return Manifest(toolkit_version=__version__, created=created, **sections).to_dict()


def _streaming_lines(streaming) -> list[str]:
    if streaming is None:
        return []
    if streaming.skipped:
        return [f"  streaming fidelity: {streaming.skipped}"]
    lines = [f"  streaming (declared {streaming.declared}; {streaming.data}; chosen {streaming.normalization}: "
             f"{streaming.chosen_by}):"]
    for mode, f in streaming.options.items():
        lines.append(f"    {mode:<13} time called FOG {f['percent_time_called_fog_streamed']:6.2f} % streamed vs "
                     f"{f['percent_time_called_fog_offline']:6.2f} % offline ({f['difference_pp']:+.2f} pp), "
                     f"agreement {100 * f['decision_agreement']:.1f} %, events {f['events_streamed']} vs "
                     f"{f['events_offline']}, {'ok' if f['passed'] else 'BEYOND LIMITS'}")
    if streaming.lookahead:
        lines += lookahead_lines(streaming.lookahead)
    return lines


def _plan_lines(plan) -> list[str]:
    """The precision plan grouped: one line per precision and kind of layer (recurrent layers one by one)."""
    if plan is None:
        return []
    groups: dict[tuple, int] = {}
    for r in plan.layers:
        recurrent = "fused" in r["op"] or "unrolled" in r["op"]
        key = (r["precision"], r["layer"] if recurrent else "", r["op"] if recurrent else r["op"].split(" (")[0])
        groups[key] = groups.get(key, 0) + 1
    return ["", f"  precision plan: recurrence {plan.recurrence}: {plan.reason}",
            *[f"    {p:<5} {(layer or f'{n} x'):<36} {op}" for (p, layer, op), n in groups.items()],
            "    (every layer with its reason: manifest precision_plan)"]


def summary_table(out, manifest: dict) -> str:
    """The end-of-export summary: files, sizes, checks, verification figures."""
    m = Manifest.from_dict(manifest)
    ranges = ranges_line(m.export.get("calibration"))
    chosen = m.export.get("events_chosen")
    chose = (f"  events: on {chosen['point']['on']:g}, off {chosen['point']['off']:g}: chosen for at most "
             f"{chosen['fa_per_hour_asked']:g} false alarms/h on {len(chosen['recordings'])} recording(s) "
             f"({chosen['from']})") if chosen else None
    lines = [f"bundle {out}  (target {m.target['name']}, precision {m.precision})",
             *([f"  {ranges}"] if ranges else []), *([chose] if chose else []), "",
             f"  {'file':<34} {'bytes':>12}  sha256"]
    for rel, entry in m.files.items():
        lines.append(f"  {rel:<34} {entry['bytes']:>12,}  {entry['sha256'][:16]}")
    warned = sum(bool(c.get("warning")) for c in m.checks)
    lines += ["", f"  checks: {sum(c['passed'] for c in m.checks)}/{len(m.checks)} passed"
                  + (f", {warned} WARNING(S)" if warned else "")]
    for c in m.checks:
        verdict = "ok" if c["passed"] else "WARN" if c.get("warning") else "FAIL"
        lines.append(f"    [{verdict}] {c['model']}: {c['name']}: {c['detail'][:90]}")
    unused = (m.export.get("calibration") or {}).get("unused")
    if unused:
        lines.append(f"  calibration: {len(unused)} quantizer(s) inert at this shape (no window reached them, no Q/DQ "
                     f"in the graph; placeholder amax): {', '.join(unused)}")
    lines += _plan_lines(m.precision_plan)
    lines += ["", f"  verification ({m.verification['windows']} windows, {m.verification.get('weights', '')}):"]
    for name, v in m.verification["pairs"].items():
        lines.append(f"    {name:<24} {describe(v)}")
    if m.export.get("cpu_precision"):
        lines.append(f"  cpu precision: {m.export['cpu_precision']['reason']}")
    lines.append(f"  engine: {m.export['engine']}")
    if m.export.get("event_mode"):
        lines.append(f"  events: mode {m.export['event_mode']['mode']} ({m.export['event_mode']['chosen_by']})")
    if m.batching is not None and len(m.batching.sizes) > 1:
        lines.append(f"  batch sizes: {', '.join(map(str, m.batching.sizes))}: each row equals the window alone "
                     f"{'bit for bit' if m.batching.row_exact else 'NOT bit for bit: a gateway runs the first only'}"
                     + ("; TensorRT: one dynamic-batch graph and its profile" if m.batching.tensorrt else ""))
    lines += [f"  note: {note}" for note in (m.export.get("batch_notes") or [])]
    for role, cap in (m.onnxruntime.thread_cap if m.onnxruntime else {}).items():
        lines.append(f"  thread cap ({role}, measured on {cap.measured_on.split(' (')[0]}): {cap.reason}")
    lines += _streaming_lines(m.streaming)
    lines += [f"  note: {note}" for note in m.model.notes]
    return "\n".join(lines)
