"""`toolkit export`: a model in, a checked and verified deployment bundle out.

`ExportPipeline.run` performs the steps in order, each one shown, timed and named by `toolkit.export.steps.Steps`
(a step bar on stderr when it is a terminal), each returning what it found; the manifest is assembled from those
results (`toolkit.export.manifest.build_manifest`). Any failure stops before a bundle is written.
1. `float_graph`, `check_float`: the float ONNX at the target's opset, checked (toolkit.export.checks);
2. `int8_graph`: where the target has INT8, the QAT variant with its ranges (a QAT checkpoint's or a cache's as
   they are, else calibrated here: toolkit.export.ranges) as a Q/DQ ONNX, checked;
3. `verify`: numerical verification on held-out windows (toolkit.export.verify);
4. `cpu_precision`: for an onnxruntime target, what it runs (toolkit.export.cpu_choice);
5. `engine_or_kit`: a TensorRT engine where possible and the on-device build kit; ONNX Runtime: the thread cap;
6. `streaming`: the daemon's pipeline against offline (toolkit.export.streaming), then the look-ahead sweep
   (toolkit.export.lookahead: the look-ahead the bundle runs);
7. `manifest`: manifest.json listing every file with its sha256, and the detector's checks
   (toolkit.export.detector: a degenerate detector is refused, or with --allow-degenerate a warning).
"""
from __future__ import annotations

import shutil
import sys
from dataclasses import replace
from pathlib import Path

from calibration.data import BatchReader, WindowReader, synthetic_windows
from deploy.bundle import write_manifest
from deploy.contract import FP32_FILE, INT8_FILE
from deploy.contract.events import EventSettings
from toolkit.export.detector import bundle_events, check_class_names, check_fires, check_fog_free, settle
from deploy.contract.runtime import PrecisionPlan
from deploy.lazy import lazy_import
from deploy.recording import read_recordings
from toolkit.export import buildkit, plan, ranges, threads, trt_build, verify
from toolkit.export.batches import BatchExport, Batches
from toolkit.export.checks import assert_checks, run_checks
from toolkit.export.cpu_choice import INT8_MIN_SPEEDUP, choose_cpu_precision
from toolkit.export.manifest import (FP16_NOTE, build_manifest, input_section, model_section, onnxruntime_section,
                                     output_section, verification_section)
from toolkit.export.onnx import ExportError, export_float, export_graph, with_activation
from toolkit.export.options import ExportOptions
from toolkit.export.steps import EngineOrKit, FloatGraph, Int8Graph, Steps, Verification, Windows
from toolkit.export.streaming import describe_streaming, lookahead_set, measure_streaming, with_lookahead
from toolkit.export.targets import Target

onnx = lazy_import("onnx", "workstation", "exporting ONNX")
qat_convert = lazy_import("models.qat", "workstation", "the quantization-aware variant of a model")
fp16 = lazy_import("toolkit.export.fp16", "workstation", "the FP16 recurrence")
torch = lazy_import("torch", "workstation", "exporting a PyTorch model")

__all__ = ["ExportOptions", "ExportPipeline", "export_bundle", "INT8_MIN_SPEEDUP"]

_WIDE = 16  # batch of the calibration/verification twin of the QAT variant
# Calibration and verification sized in patches, not windows: fog-small's 64 windows of 128 patches are 8,192
# patches; 64 windows of fog-1st-place (864 patches, attention maps of 864 x 864 per head) took minutes of
# histogramming for no better ranges. A large window brings many patches per window.
CALIB_PATCHES, VERIFY_PATCHES = 8192, 2048
# What the calibration windows are, for the manifest (they come from calibration.data.synthetic_windows, seed 1).
SYNTHETIC_CALIBRATION = {"source": "deploy.synth recordings through deploy.preprocess "
                                   "(calibration.data.synthetic_windows)", "seed": 1}


def windows_for(asked: int | None, n_patches: int, patches: int, least: int, most: int | None = None) -> int:
    """`asked`, else enough windows for `patches` patches, between `least` and `most`."""
    if asked:
        return int(asked)
    return max(least, min(most or 10 ** 9, patches // max(n_patches, 1)))


def choose_precision(target: Target, asked: str | None) -> str:
    precision = asked or target.default_precision
    if precision == "fastest" and not (target.runtime == "onnxruntime" and target.int8):
        raise ExportError(f"--precision fastest measures fp32 against int8 on ONNX Runtime: only for the cpu target, "
                          f"not {target.name}; choose from {', '.join(target.precisions)}")
    if precision != "fastest" and precision not in target.precisions:
        raise ExportError(f"target {target.name} cannot run {precision} (it offers {', '.join(target.precisions)}); "
                          f"{'it has no INT8 hardware; ' if precision == 'int8' and not target.int8 else ''}"
                          "choose --precision from those")
    return precision


class ExportPipeline:
    """One export of `source` for `target` into the folder `work` with the event settings `events`; `run()` performs
    the steps and returns the manifest. Fixed for the whole run: what was asked (`precision`: the precision asked for
    or the target's default) and what follows from it; everything a step finds is its return value."""

    def __init__(self, source, target: Target, work: Path, opt: ExportOptions, precision: str,
                 events: EventSettings, events_chosen: dict | None = None, given=None, calib_reader=None,
                 fidelity_recordings=None, event_mode: dict | None = None, names_check: dict | None = None,
                 lookahead_asked=None):
        self.source, self.target, self.work, self.opt, self.precision = source, target, Path(work), opt, precision
        self.events, self.events_chosen, self.given, self.calib_reader = events, events_chosen, given, calib_reader
        self.event_mode, self.names_check, self.lookahead_asked = event_mode, names_check, lookahead_asked
        self.fidelity_recordings = fidelity_recordings
        self.opset = opt.opset or target.export_opset
        self.want_int8 = target.int8 and precision in ("int8", "fastest")
        self.onnxruntime = target.runtime == "onnxruntime"
        self.shape = source.input_shape(opt.own_batch)
        self.n_steps = int(source.preprocess["n_patches"])
        self.steps = Steps(total=5 + self.want_int8 + self.onnxruntime + opt.fidelity + (len(opt.batch_sizes) > 1),
                           quiet=opt.quiet)

    def run(self) -> dict:
        try:
            return self._run()
        finally:
            self.steps.close()

    def _run(self) -> dict:
        fp32 = self.float_graph()
        checks = self.check_float(fp32)
        windows = self.windows()
        int8 = self.int8_graph(windows) if self.want_int8 else None
        verification = self.verify(windows, int8)
        cpu = self.cpu_precision(windows, verification) if self.onnxruntime else None
        precision = cpu.precision if cpu else self.precision
        batches = self.batches(int8, cpu, precision)
        engine = self.engine_or_kit(windows, verification, precision, cpu, batches.section)
        streaming = self.streaming() if self.opt.fidelity else None
        checks = checks + self.detector_checks(verification, streaming)
        with self.steps.step("manifest", "manifest") as step:
            manifest = build_manifest(self.sections(fp32, checks + batches.checks, windows, int8, verification, cpu,
                                                    precision, engine, streaming, batches))
            written = write_manifest(self.work, manifest)
            step.detail = f"{len(written['files'])} files"
        return written

    def sections(self, fp32, checks, windows, int8, verification, cpu, precision, engine, streaming, batches) -> dict:
        """The manifest's sections from what the steps returned."""
        plan_ = (cpu.plan if cpu and cpu.plan else None) or (int8.plan if int8 else None)
        int8_file = (cpu.int8_file if cpu and cpu.int8_file else INT8_FILE) if self.want_int8 else None
        export = {"opset": self.opset, "batch": self.opt.own_batch, "calibration": int8.calibration if int8 else None,
                  "timings": dict(self.steps.timings), "engine": engine.note, "kit": engine.kit,
                  "cpu_latency_ms": cpu.record.get("latency_ms") if cpu else None,
                  "cpu_precision": cpu.record if cpu else None, "fp16_note": FP16_NOTE,
                  "cpu_dynamic_plan": cpu.dynamic if cpu else None, "events_chosen": self.events_chosen,
                  "event_mode": self.event_mode, "batch_notes": batches.notes}
        return {"model": replace(fp32.model, notes=tuple(self.source.notes)),   # with the detector's warnings
                "input": fp32.input, "output": fp32.output, "precision": precision,
                "events": with_lookahead(self.events, streaming).per_class(self.source.classes),
                "models": {"fp32": FP32_FILE, "fp16": None, "int8": int8_file, "engine": engine.engine_file},
                "target": self.target.to_dict(), "export": export,
                "onnxruntime": onnxruntime_section(cpu, engine.thread_cap), "precision_plan": plan_,
                "verification": verification_section({**verification.pairs, **(cpu.pairs if cpu else {})},
                                                     windows.count, self.source),
                "checks": checks + (int8.checks if int8 else []), "streaming": streaming, "batching": batches.section}

    def detector_checks(self, verification: Verification, streaming) -> list[dict]:
        """Is the bundle's detector a working one (toolkit.export.detector; refused, or warned, here)."""
        events, allow = with_lookahead(self.events, streaming), self.opt.allow_degenerate
        found = [check_fog_free(streaming, self.source), check_fires(verification.reference, self.source, events,
                                                                     streaming)]
        return [c for c in [self.names_check] if c] + [settle(c, self.source, allow) for c in found]

    def _checks(self, model, precision: str, file: str, label: str, int8_graph: bool = False,
                recurrence: str = "unrolled") -> list[dict]:
        found = run_checks(model, self.target, precision, int8_graph=int8_graph, recurrence=recurrence,
                           strongly_typed=self.target.graph_strongly_typed)
        assert_checks(found, f"{label} ({file})", self.target)
        return [dict(c.to_dict(), model=file) for c in found]

    def float_graph(self) -> FloatGraph:
        with self.steps.step("export_fp32", f"float ONNX, opset {self.opset}, input {self.shape}") as step:
            how = export_float(self.source, self.shape, self.work / FP32_FILE, self.opset, self.opt.own_batch,
                               self.target)
            fp32 = onnx.load(str(self.work / FP32_FILE))
            step.detail = f"{len(fp32.graph.node)} nodes"
            return FloatGraph(onnx=fp32, model=model_section(self.source, fp32, how),
                              input=input_section(self.source, self.shape), output=output_section(self.source, fp32))

    def check_float(self, fp32: FloatGraph) -> list[dict]:
        with self.steps.step("check_fp32", "static checks of the float model") as step:
            precision = self.precision if self.precision in ("fp16", "fp32") else \
                ("fp16" if self.target.fp16 else "fp32")
            checks = self._checks(fp32.onnx, precision, FP32_FILE, "the float model")
            step.detail = f"{len(checks)} checks passed"
            return checks

    def windows(self) -> Windows:
        calib = windows_for(self.opt.calib_windows, self.n_steps, CALIB_PATCHES, 4, 64)
        # a twin no wider than the calibration set (it pads nothing then); tsai_compat mixes the batch axis: none
        wide = self.opt.own_batch if self.source.tsai_compat else min(_WIDE, calib)
        checked = windows_for(self.opt.verify_windows, self.n_steps, VERIFY_PATCHES, 4, 16)
        return Windows(calibration=synthetic_windows(self.source.preprocess, calib, wide, seed=1),
                       verification=synthetic_windows(self.source.preprocess, checked, self.opt.own_batch, seed=2),
                       wide=wide)

    def int8_graph(self, windows: Windows) -> Int8Graph:
        opt, source, given = self.opt, self.source, self.given
        recurrence, why = plan.choose_recurrence(source.module, self.n_steps, opt.recurrence,
                                                 given and list(given.cache.amax))
        how = f"{given.source} ranges from {given.path}" if given else f"{opt.calib_method} calibration"
        with self.steps.step("export_int8", f"INT8: QAT variant ({recurrence} recurrence), {how}, Q/DQ ONNX") as step:
            qat, qat_wide, calibration, watch = self._calibrated_qat(recurrence, windows)
            ranges.assert_inert(qat, self.shape, calibration["unused"])
            strongly = self.target.graph_strongly_typed and recurrence == "fused"
            layer_plan = PrecisionPlan(recurrence=recurrence, reason=why, strongly_typed=strongly,
                                       layers=tuple(plan.layer_plan(qat, self.target, strongly)))
            export_graph(with_activation(qat, source.activation), self.shape, self.work / INT8_FILE, self.opset)
            int8 = onnx.load(str(self.work / INT8_FILE), load_external_data=False)
            if strongly:
                fp16.cast_fused_recurrence(int8)
                onnx.save(int8, str(self.work / INT8_FILE))
            checks = self._checks(int8, "int8", INT8_FILE, "the INT8 model", int8_graph=True, recurrence=recurrence)
            n = len(checks)
            if recurrence == "fused":
                checks.append(self._range_check(watch.check()))
            step.detail = f"{len(int8.graph.node)} nodes, {n} checks passed; {plan.describe_plan(layer_plan.to_dict())}"
            return Int8Graph(qat=qat, qat_wide=qat_wide, calibration=calibration, plan=layer_plan, checks=checks)

    def _calibrated_qat(self, recurrence: str, windows: Windows):
        """(the QAT variant, its wide twin, the manifest's export.calibration, the fused layers' range watch)."""
        opt, source, given = self.opt, self.source, self.given
        qat = qat_convert.to_qat(source.module, batch_size=opt.own_batch, seq_len=self.n_steps,
                                 recurrence=recurrence).eval()
        # Calibrate (and later verify) a wide-batch twin: the unrolled graph runs step by step in Python, so one
        # window at a time is slow. Windows are independent unless the model mixes the batch axis (tsai_compat).
        wide = qat if windows.wide == opt.own_batch else \
            qat_convert.to_qat(source.module, batch_size=windows.wide, seq_len=self.n_steps,
                               recurrence=recurrence).eval()
        with fp16.RecurrentRanges(wide) as watch:  # the fused layers' values on calibration data
            if given:
                calibration = ranges.apply_given(wide, given)
                if recurrence == "fused":   # no calibration pass to watch: one pass for the FP16 range check
                    watch.observe(wide, windows.calibration)
            else:
                reader = self.calib_reader or BatchReader(windows.calibration, SYNTHETIC_CALIBRATION)
                calibration = ranges.calibrate_int8(wide, reader, opt.calib_method, progress=not opt.quiet)
        if wide is not qat:
            qat.load_state_dict(wide.state_dict())  # same names: the ranges do not depend on the batch
            qat_convert.set_quantization(qat, True)
        return qat, wide, calibration, watch

    @staticmethod
    def _range_check(check: dict) -> dict:
        if not check["passed"]:
            raise ExportError(f"the fused recurrence cannot run in FP16: {check['detail']}; export with "
                              "--recurrence unrolled or --precision fp32")
        return {**check, "model": INT8_FILE}

    def verify(self, windows: Windows, int8: Int8Graph | None) -> Verification:
        batches, threads_ = windows.verification, self.opt.threads
        with self.steps.step("verify", f"verification on {windows.count} held-out windows") as step:
            reference = verify.torch_run(with_activation(self.source.module, self.source.activation), batches)
            fp32 = verify.ort_run(self.work / FP32_FILE, batches, threads_)
            pairs = {"torch_vs_ort_fp32": verify.compare("torch_vs_ort_fp32", reference, fp32)}
            ran_int8 = None
            if int8 is not None:
                qat_ref = verify.torch_run_fixed(with_activation(int8.qat_wide, self.source.activation), batches,
                                                 int8.qat_wide.qat_batch_size)
                as_written = verify.ort_run(verify.ort_session(self.work / INT8_FILE, as_written=True,
                                                               threads=threads_), batches)
                # For TensorRT, ONNX Runtime only stands in: the graph as written is the reference (and the kit's).
                # The cpu target runs ONNX Runtime's own integer kernels: those are what its quantization error is.
                ran_int8 = as_written if self.target.runtime == "tensorrt" else \
                    verify.ort_run(self.work / INT8_FILE, batches, threads_)
                pairs["torch_qat_vs_ort_int8"] = verify.compare("torch_qat_vs_ort_int8", qat_ref, as_written)
                pairs["torch_vs_ort_int8"] = verify.compare("torch_vs_ort_int8", reference, ran_int8)
            verify.assert_verified(pairs)
            step.detail = ", ".join(f"{k} max {v['max_abs']:.2g}" for k, v in pairs.items())
            return Verification(pairs=pairs, reference=reference, fp32=fp32, int8=ran_int8)

    def cpu_precision(self, windows: Windows, verification: Verification):
        title = "cpu INT8 plans (static Q/DQ, onnxruntime dynamic) against fp32, interleaved" if self.want_int8 \
            else "cpu plan: the fp32 graph rewritten for onnxruntime"
        with self.steps.step("cpu_precision", title) as step:
            cpu = choose_cpu_precision(self.work, self.precision, self.want_int8, windows, verification)
            latency = cpu.record["latency_ms"] or {}
            step.detail = ", ".join(f"{k} {v:.2f} ms" for k, v in latency.items()) + f": {cpu.precision}"
            return cpu

    def batches(self, int8, cpu, precision: str) -> Batches:
        if len(self.opt.batch_sizes) == 1:
            return BatchExport(self, int8, cpu, precision).run()   # the section, nothing to export
        with self.steps.step("batches", f"graphs at batch {', '.join(map(str, self.opt.batch_sizes[1:]))}") as step:
            found = BatchExport(self, int8, cpu, precision).run()
            step.detail = f"rows exact: {found.section.row_exact}, {len(found.checks)} checks passed"
            return found

    def engine_or_kit(self, windows: Windows, verification: Verification, precision: str, cpu,
                      batching=None) -> EngineOrKit:
        with self.steps.step("engine", "engine or on-device build kit") as step:
            if self.onnxruntime:   # the engine the device opens, timed at 1..N threads: its cap
                int8_file = cpu.int8_file if cpu and cpu.int8_file else INT8_FILE
                caps = threads.bundle_thread_cap(self.work, onnxruntime_section(cpu), precision, int8_file,
                                                 windows.verification[0])
                result = EngineOrKit(note="target runs ONNX Runtime", thread_cap=caps)
                step.detail = f"{result.note}; {threads.describe(caps)}"
                return result
            result = self._kit_and_engine(windows, verification, precision, batching)
            step.detail = result.note
            return result

    def _kit_and_engine(self, windows: Windows, verification: Verification, precision: str,
                        batching=None) -> EngineOrKit:
        run_file = INT8_FILE if precision == "int8" else FP32_FILE
        ref = buildkit.export_reference(self.work / run_file, precision, self.opt.own_batch, self.calib_reader,
                                        windows.calibration + windows.verification, self.source)
        kit = buildkit.write_kit(self.work, self.target, model_file=run_file, precision=precision, ref=ref,
                                 dla_core=self.opt.dla_core, batching=batching.to_dict() if batching else None)
        can, why = trt_build.can_build_here(self.target) if self.opt.build_engine == "auto" \
            else (False, "--no-engine")
        if not can:
            return EngineOrKit(note=f"not built here ({why}); build on the device with kit/build_engine.sh", kit=kit)
        trt_build.build_engine(self.work / run_file, self.work / "model.engine", target=self.target,
                               precision=precision, timing_cache=self.work / "timing.cache",
                               dla_core=self.opt.dla_core)
        return EngineOrKit(note="built here", kit=kit, engine_file="model.engine")

    def streaming(self):
        with self.steps.step("streaming", "streaming fidelity: the daemon's pipeline vs offline under the declared "
                                          "normalization") as step:
            section = measure_streaming(self.work / FP32_FILE, self.source, self.events,
                                        self.opt.stream_normalization, self.fidelity_recordings,
                                        self.opt.fidelity_budget_s, self.lookahead_asked)
            step.detail = describe_streaming(section)
            return section


def warn_notes(source) -> None:
    """Say at the start what the user must know before waiting minutes (random initial weights above all); the
    same notes end the summary and stay in the manifest (model.notes), which `toolkit inspect` and the daemon show."""
    for note in source.notes:
        kind = "warning" if "random initial weights" in note else "note"
        print(f"export: {kind}: {note}", file=sys.stderr, flush=True)


def _recordings(data, layout, mapping) -> list:
    """Recordings named by paths (read with `layout` and `mapping`) or given as Recording objects."""
    items = [data] if isinstance(data, (str, Path)) else list(data)
    paths = [x for x in items if isinstance(x, (str, Path))]
    loaded = read_recordings(paths, layout=layout, mapping=mapping) if paths else []
    return loaded + [x for x in items if not isinstance(x, (str, Path))]


def _inputs(source, opt: ExportOptions) -> dict:
    """What the options name, read before any work: the ranges that ship as they are, the calibration reader over
    --calib-data recordings, the --fidelity-data recordings."""
    given = ranges.given_ranges(source, opt.calibration)
    if given and opt.calib_data:
        raise ExportError(f"--calib-data calibrates at export, but the {given.source} ranges of {given.path} ship as "
                          "they are: drop --calib-data (or --calibration)")
    if given:
        ranges.check_belongs(source.module, given)  # ranges made for other weights are refused
    reader = WindowReader(_recordings(opt.calib_data, opt.layout, opt.calib_mapping), source.preprocess,
                          limit=opt.calib_windows or 64, batch_size=16) if opt.calib_data else None
    fidelity = _recordings(opt.fidelity_data, opt.layout, opt.fidelity_mapping) if opt.fidelity_data else None
    return {"given": given, "calib_reader": reader, "fidelity_recordings": fidelity}


def export_bundle(source, target: Target, out, options: ExportOptions | None = None, chosen=None) -> dict:
    """Export `source` (toolkit.export.source.ModelSource) for `target` into the folder `out`; returns the
    manifest. `chosen`: the operating point --on-threshold-from names (toolkit.api.threshold, read and checked by
    the API): its event settings replace the flags', its record goes into the manifest. The bundle is built in
    `out.partial` and renamed at the end, so a failure leaves nothing behind."""
    opt = options or ExportOptions()
    out = Path(out)
    precision = choose_precision(target, opt.precision)
    layer = chosen.events if chosen else opt.events   # the preset's events, then this layer over them
    events, event_mode = bundle_events(source, layer)   # the event mode from the training labels unless given
    inputs = _inputs(source, opt)
    if inputs["given"] and not (target.int8 and precision in ("int8", "fastest")):
        source.notes.append(f"the {inputs['given'].source} ranges ({inputs['given'].path}) are not shipped: the "
                            f"bundle has no INT8 graph at precision {precision} (pass --precision int8 to ship them)")
    warn_notes(source)
    names = settle(check_class_names(source), source, opt.allow_degenerate)   # a 'no event' class counted as FOG
    if out.exists() and any(out.iterdir()) and not opt.force:
        raise ExportError(f"{out} exists and is not empty; choose another --out or pass --force")
    work = out.with_name(out.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    # One thread by default: on a shared 2-core machine under load, torch at 2 threads ran fog-1st-place's forward
    # 10x slower than at 1 (46 s vs 4.7 s at load 13.8): a thread waiting for a busy core spins (docs/export.md).
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(opt.threads)
    try:
        manifest = ExportPipeline(source, target, work, opt, precision, events, chosen.record if chosen else None,
                                  **inputs, event_mode=event_mode, names_check=names,
                                  lookahead_asked=lookahead_set(source, layer)).run()
        if out.exists():
            shutil.rmtree(out)
        work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        torch.set_num_threads(torch_threads)
    return manifest
