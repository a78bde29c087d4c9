"""`toolkit export`: a model in, a checked and verified deployment bundle out.

`ExportPipeline` is one export; each step is a method, in the order `run` calls them (a step bar on stderr when it is
a terminal, calibration.progress.StepBar; any failure stops before a bundle is written):
1. `export_float`, `check_float`: the float ONNX at the target's opset, checked (toolkit.export.checks);
2. `export_int8`: where the target has INT8, the QAT variant with its ranges (a QAT checkpoint's or a cache's as
   they are, else calibrated here: toolkit.export.ranges) as a Q/DQ ONNX, checked;
3. `verify`: numerical verification on held-out windows (toolkit.export.verify);
4. `choose_cpu_precision`: for an onnxruntime target, what it runs (measured with --precision fastest);
5. `engine_or_kit`: a TensorRT engine where possible and the on-device build kit; ONNX Runtime: the thread cap;
6. `write_manifest`: manifest.json (toolkit.export.manifest) listing every file with its sha256.
"""
from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from calibration.calibrators import DEFAULT_METHOD
from calibration.data import BatchReader, synthetic_windows
from calibration.progress import StepBar
from deploy.contract import CPU_FP32_REASON, FP32_FILE, INT8_FILE
from deploy.lazy import lazy_import
from deploy.engines.onnxruntime import DISABLED_OPTIMIZERS
from toolkit.export import buildkit, cpu_graph, cpu_plans, plan, ranges, threads, trt_build, verify
from toolkit.export.checks import assert_checks, run_checks
from toolkit.export.detector import bundle_events, check_class_names, check_fires, check_fog_free, settle
from toolkit.export.lookahead import as_setting as lookahead_setting
from toolkit.export.manifest import build_manifest
from toolkit.export.onnx import ExportError, export_float, export_graph, with_activation
from toolkit.export.streaming import BUDGET_S, describe_streaming, lookahead_set, measure_streaming
from toolkit.export.targets import Target
from toolkit.timing import onnx_head_to_head

onnx = lazy_import("onnx", "workstation", "exporting ONNX")
qat_convert = lazy_import("models.qat", "workstation", "the quantization-aware variant of a model")
ptq = lazy_import("calibration.ptq", "workstation", "INT8 calibration")
fp16 = lazy_import("toolkit.export.fp16", "workstation", "the FP16 recurrence")
torch = lazy_import("torch", "workstation", "exporting a PyTorch model")

# The cpu target's precision. INT8 costs accuracy (see the verification thresholds), so it must win clearly: at least
# this much faster than FP32 in the interleaved head-to-head, else FP32 (a tie or the noise of a shared machine never
# picks the less accurate model).
INT8_MIN_SPEEDUP = 1.10
_WIDE = 16  # batch of the calibration/verification twin of the QAT variant
# Calibration and verification sized in patches, not windows: fog-small's 64 windows of 128 patches are 8,192
# patches; 64 windows of fog-1st-place (864 patches, attention maps of 864 x 864 per head) took minutes of
# histogramming for no better ranges. A large window brings many patches per window.
CALIB_PATCHES, VERIFY_PATCHES = 8192, 2048


def windows_for(asked: int | None, n_patches: int, patches: int, least: int, most: int | None = None) -> int:
    """`asked`, else enough windows for `patches` patches, between `least` and `most`."""
    if asked:
        return int(asked)
    return max(least, min(most or 10 ** 9, patches // max(n_patches, 1)))
# What the calibration windows are, for the manifest (they come from calibration.data.synthetic_windows, seed 1).
SYNTHETIC_CALIBRATION = {"source": "deploy.synth recordings through deploy.preprocess "
                                   "(calibration.data.synthetic_windows)", "seed": 1}


@dataclass
class ExportOptions:
    batch: int = 1
    precision: str | None = None     # None: the target's default
    opset: int | None = None         # None: the target's export opset
    calib_windows: int | None = None  # None: as many windows as make CALIB_PATCHES patches (4 to 64)
    calib_method: str = DEFAULT_METHOD  # chosen by measurement (docs/calibration.md)
    calib_reader: object = None      # a calibration.data CalibrationDataReader over real recordings, else synthetic
    ranges: object = None            # toolkit.export.ranges.GivenRanges (a QAT checkpoint's or a cache's): no calibration
    verify_windows: int | None = None  # None: as many windows as make VERIFY_PATCHES patches (4 to 16)
    events: dict = field(default_factory=dict)
    dla_core: int | None = None
    build_engine: str = "auto"       # auto | never
    force: bool = False
    quiet: bool = False
    stream_normalization: str = "auto"  # deploy.wearer.STREAM_NORMALIZATIONS, or auto: chosen by measurement
    fidelity_recordings: object = None  # recordings for the streaming-fidelity step (default synthetic)
    fidelity: bool = True               # measure streaming fidelity (toolkit.export.streaming)
    fidelity_budget_s: float = BUDGET_S  # ... unless one timed inference says it would cost more (then skipped)
    recurrence: str = "auto"            # toolkit.export.plan.RECURRENCE_CHOICES: auto | fused | unrolled
    threads: int = 1                    # torch and onnxruntime threads of the export's own work (see export_bundle)
    allow_degenerate: bool = False      # export a detector the checks call degenerate (toolkit.export.detector)


def calibrate_int8(qat, reader, method: str, progress: bool = False) -> dict:
    """The one calibration seam of the exporter: ranges into the QAT quantizers, then quantization on. The result
    lists the quantizers no window reached (`unused`, inert at this shape; placeholder range, see calibration.ptq).
    `progress`: a bar of the windows calibrated (under the export's step bar: minutes for the large preset)."""
    cache = ptq.calibrate(qat, reader, method=method, progress=progress)
    qat_convert.set_quantization(qat, True)
    return ranges.describe("export-calibrated", cache.calibrator, cache.data, cache.unused)


def assert_inert(qat, shape, unused) -> None:
    """Refuse an INT8 graph in which a quantizer that calibration never reached would quantize with its placeholder."""
    live = sorted(set(unused) & ptq.active_quantizers(qat, shape)) if unused else []
    if live:
        raise ExportError(f"calibration never reached quantizer(s) {', '.join(live[:3])} but the export at input "
                          f"{tuple(shape)} uses them: calibrate at the export's batch and window (--batch, "
                          "--n-patches), or with --calib-data recordings long enough to reach them")


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
    """One export of `source` for `target` into the folder `work`; `run()` performs the steps and returns the
    manifest. What a step finds is kept on the pipeline for the steps after it (and for the manifest)."""

    def __init__(self, source, target: Target, work: Path, opt: ExportOptions, precision: str):
        self.source, self.target, self.work, self.opt, self.precision = source, target, Path(work), opt, precision
        self.opset = opt.opset or target.export_opset
        self.want_int8 = target.int8 and precision in ("int8", "fastest")
        self.progress = StepBar(total=(6 if self.want_int8 else 5)
                                + (self.want_int8 and target.runtime == "onnxruntime") + opt.fidelity,
                                desc="export", enabled=not opt.quiet)
        self.shape = source.input_shape(opt.batch)
        self.n_steps = int(source.preprocess["n_patches"])
        self.wide = opt.batch if source.tsai_compat else _WIDE
        self.checks: list[dict] = []
        self.timings: dict[str, float] = {}
        self.pairs: dict[str, dict] = {}
        self.calibration_info = self.qat = self.qat_wide = self.ort_fp32 = self.ort_int8 = None
        self.cal_batches = self.ver_batches = self.fp32 = self.float_graph = None
        self.cpu_choice = self.kit = self.engine_file = self.engine_note = self.streaming = self.plan = None
        self.thread_cap = None  # {role: the measured cap} (toolkit.export.threads), for onnxruntime targets
        self.int8_file, self.reference, self.ort_dynamic, self.dynamic_info, self.preoptimized, self.staged = \
            INT8_FILE, None, None, None, None, None
        self.event_settings, self.event_mode = bundle_events(source, opt.events)
        if opt.ranges and not self.want_int8:
            source.notes.append(f"the {opt.ranges.source} ranges ({opt.ranges.path}) are not shipped: the bundle has no "
                                f"INT8 graph at precision {precision} (pass --precision int8 to ship them)")

    def run(self) -> dict:
        try:
            return self._steps()
        finally:
            self.progress.close()

    def _steps(self) -> dict:
        self.export_float()
        self.check_float()
        calib = windows_for(self.opt.calib_windows, self.n_steps, CALIB_PATCHES, 4, 64)
        if not self.source.tsai_compat:  # a twin no wider than the calibration set (it pads nothing then)
            self.wide = min(_WIDE, calib)
        self.cal_batches = synthetic_windows(self.source.preprocess, calib, self.wide, seed=1)
        checked = windows_for(self.opt.verify_windows, self.n_steps, VERIFY_PATCHES, 4, 16)
        self.ver_batches = synthetic_windows(self.source.preprocess, checked, self.opt.batch, seed=2)
        if self.want_int8:
            self.export_int8()
        self.verify()
        if self.target.runtime == "onnxruntime":
            self.choose_cpu_precision()
        self.engine_or_kit()
        if self.opt.fidelity:
            self.streaming_fidelity()
        self.checks.append(settle(check_fires(self.reference, self.source, self.event_settings, self.streaming),
                                  self.source, self.opt.allow_degenerate))
        return self.write_manifest()

    def _add_checks(self, model, precision: str, file: str, label: str, int8_graph: bool = False) -> int:
        recurrence = self.plan["recurrence"] if self.plan else "unrolled"
        found = run_checks(model, self.target, precision, int8_graph=int8_graph, recurrence=recurrence,
                           strongly_typed=self.target.graph_strongly_typed)
        assert_checks(found, f"{label} ({file})", self.target)
        self.checks += [dict(c.to_dict(), model=file) for c in found]
        return len(found)

    def export_float(self) -> None:
        self.progress.start(f"float ONNX, opset {self.opset}, input {self.shape}")
        self.float_graph = export_float(self.source, self.shape, self.work / FP32_FILE, self.opset, self.opt.batch,
                                        self.target)
        self.fp32 = onnx.load(str(self.work / FP32_FILE))
        self.timings["export_fp32_s"] = self.progress.done(f"{len(self.fp32.graph.node)} nodes")

    def check_float(self) -> None:
        self.progress.start("static checks of the float model")
        precision = self.precision if self.precision in ("fp16", "fp32") else ("fp16" if self.target.fp16 else "fp32")
        n = self._add_checks(self.fp32, precision, FP32_FILE, "the float model")
        self.progress.done(f"{n} checks passed")

    def export_int8(self) -> None:
        opt, source = self.opt, self.source
        given = opt.ranges
        recurrence, why = plan.choose_recurrence(source.module, self.n_steps, opt.recurrence)
        how = f"{given.source} ranges from {given.path}" if given else f"{opt.calib_method} calibration"
        self.progress.start(f"INT8: QAT variant ({recurrence} recurrence), {how}, Q/DQ ONNX")
        self.qat = qat_convert.to_qat(source.module, batch_size=opt.batch, seq_len=self.n_steps,
                                      recurrence=recurrence).eval()
        # Calibrate (and later verify) a wide-batch twin: the unrolled graph runs step by step in Python, so one
        # window at a time is slow. Windows are independent unless the model mixes the batch axis (tsai_compat).
        self.qat_wide = self.qat if self.wide == opt.batch else \
            qat_convert.to_qat(source.module, batch_size=self.wide, seq_len=self.n_steps, recurrence=recurrence).eval()
        with fp16.RecurrentRanges(self.qat_wide) as watch:  # the fused layers' values on calibration data
            if given:
                self.calibration_info = ranges.apply_given(self.qat_wide, given)
                if recurrence == "fused":   # no calibration pass to watch: one pass for the FP16 range check
                    watch.observe(self.qat_wide, self.cal_batches)
            else:
                reader = opt.calib_reader or BatchReader(self.cal_batches, SYNTHETIC_CALIBRATION)
                self.calibration_info = calibrate_int8(self.qat_wide, reader, opt.calib_method,
                                                       progress=not opt.quiet)
        if self.qat_wide is not self.qat:
            self.qat.load_state_dict(self.qat_wide.state_dict())  # same names: the ranges do not depend on the batch
            qat_convert.set_quantization(self.qat, True)
        assert_inert(self.qat, self.shape, self.calibration_info["unused"])
        strongly = self.target.graph_strongly_typed and recurrence == "fused"
        self.plan = {"recurrence": recurrence, "reason": why, "strongly_typed": strongly,
                     "layers": plan.layer_plan(self.qat, self.target, strongly)}
        export_graph(with_activation(self.qat, source.activation), self.shape, self.work / INT8_FILE, self.opset)
        int8 = onnx.load(str(self.work / INT8_FILE), load_external_data=False)
        if strongly:
            fp16.cast_fused_recurrence(int8)
            onnx.save(int8, str(self.work / INT8_FILE))
        n = self._add_checks(int8, "int8", INT8_FILE, "the INT8 model", int8_graph=True)
        if recurrence == "fused":
            self._add_range_check(watch.check())
        self.timings["export_int8_s"] = self.progress.done(f"{len(int8.graph.node)} nodes, {n} checks passed; "
                                                           f"{plan.describe_plan(self.plan)}")

    def _add_range_check(self, check: dict) -> None:
        self.checks.append({**check, "model": INT8_FILE})
        if not check["passed"]:
            raise ExportError(f"the fused recurrence cannot run in FP16: {check['detail']}; export with "
                              "--recurrence unrolled or --precision fp32")

    def verify(self) -> None:
        batches = self.ver_batches
        self.progress.start(f"verification on {sum(len(b) for b in batches)} held-out windows")
        self.reference = reference = verify.torch_run(with_activation(self.source.module, self.source.activation),
                                                      batches)
        self.ort_fp32 = verify.ort_run(self.work / FP32_FILE, batches)
        self.pairs["torch_vs_ort_fp32"] = verify.compare("torch_vs_ort_fp32", reference, self.ort_fp32)
        if self.want_int8:
            qat_ref = verify.torch_run_fixed(with_activation(self.qat_wide, self.source.activation), batches,
                                             self.qat_wide.qat_batch_size)
            as_written = verify.ort_run(verify.ort_session(self.work / INT8_FILE, as_written=True), batches)
            # For TensorRT, ONNX Runtime only stands in: the graph as written is the reference (and the kit's). The
            # cpu target runs ONNX Runtime's own integer kernels: those are what its quantization error is.
            self.ort_int8 = as_written if self.target.runtime == "tensorrt" else \
                verify.ort_run(self.work / INT8_FILE, batches)
            self.pairs["torch_qat_vs_ort_int8"] = verify.compare("torch_qat_vs_ort_int8", qat_ref, as_written)
            self.pairs["torch_vs_ort_int8"] = verify.compare("torch_vs_ort_int8", reference, self.ort_int8)
        verify.assert_verified(self.pairs)
        self.timings["verify_s"] = self.progress.done(", ".join(f"{k} max {v['max_abs']:.2g}"
                                                                for k, v in self.pairs.items()))

    def choose_cpu_precision(self) -> None:  # fp32 and the int8 plans from one float graph, rewritten for the CPU
        asked, latency, rewrite = self.precision, None, cpu_graph.rewrite_in_place(self.work / FP32_FILE)
        if self.want_int8:
            self.progress.start("cpu INT8 plans (static Q/DQ, onnxruntime dynamic) against fp32, interleaved")
            files = {"fp32": self.work / FP32_FILE, "int8-qdq": self.work / INT8_FILE}
            dynamic = self._dynamic_plan()
            if dynamic is not None:
                files["int8-dynamic"] = self.work / cpu_plans.DYNAMIC_FILE
            if self.precision == "int8":
                files.pop("fp32")
            latency = onnx_head_to_head(files, self.ver_batches[0])
            if self.precision == "int8":
                winner = min(latency, key=latency.get)
                reason = f"{winner}, the faster INT8 plan (" + ", ".join(f"{k} {v:.2f} ms" for k, v in
                                                                         latency.items()) + ")"
            else:
                winner, reason = cpu_plans.choose(latency, INT8_MIN_SPEEDUP)
            self._keep_cpu_plan(winner, dynamic)
            self.progress.done(", ".join(f"{k} {v:.2f} ms" for k, v in latency.items()) + f": {winner}")
        else:
            reason = f"fp32, the cpu target's default: {CPU_FP32_REASON}"
        self.cpu_choice = {"asked": asked, "precision": self.precision, "reason": reason, "latency_ms": latency,
                           "plan": self.int8_file if self.precision == "int8" else None, "float_rewrite": rewrite,
                           "method": "toolkit.timing.onnx_head_to_head: interleaved blocks, thread CPU time, 1 thread"
                           if latency else None}

    def _dynamic_plan(self) -> dict | None:
        """onnxruntime's dynamic quantization of the float graph, verified against the float model; None (and
        the figures in the manifest) when it fails verification."""
        info = cpu_plans.dynamic_plan(self.work / FP32_FILE, self.work, self.ver_batches[0], DISABLED_OPTIMIZERS,
                                      rewrite=False)   # FP32_FILE is rewritten already (choose_cpu_precision)
        self.ort_dynamic = cpu_plans.run_dynamic(self.work, info, self.ver_batches)  # as the device runs it
        pair = verify.compare("torch_vs_ort_int8_dynamic", self.reference, self.ort_dynamic)
        self.dynamic_info = {**{k: v for k, v in info.items() if k != "staged"}, "verification": pair}
        if not pair["passed"]:
            cpu_plans.remove_dynamic(self.work, info)
            return None
        self.pairs["torch_vs_ort_int8_dynamic"] = pair
        return info

    def _keep_cpu_plan(self, winner: str, dynamic: dict | None) -> None:
        """Keep the winner's INT8 file (and only it) as the bundle's int8 model, pre-optimized for onnxruntime."""
        self.precision = "fp32" if winner == "fp32" else "int8"
        if winner == "int8-dynamic":
            (self.work / INT8_FILE).unlink()
            self.int8_file, self.ort_int8 = cpu_plans.DYNAMIC_FILE, self.ort_dynamic
            self.plan = {"recurrence": "fused", "cpu_int8": "dynamic", "strongly_typed": False,
                         "reason": dynamic["how"], "layers": cpu_plans.layer_rows(dynamic)}
            self.staged = dynamic["staged"]
        elif dynamic is not None:
            cpu_plans.remove_dynamic(self.work, dynamic)
        if self.precision == "int8":
            self.preoptimized = cpu_plans.save_optimized(self.work / self.int8_file, self.work / self.int8_file,
                                                         DISABLED_OPTIMIZERS)

    def engine_or_kit(self) -> None:
        self.progress.start("engine or on-device build kit")
        if self.target.runtime != "tensorrt":  # the engine the device opens, timed at 1..N threads: its cap
            self.thread_cap = threads.bundle_thread_cap(self)
            self.engine_note = "target runs ONNX Runtime"
            self.progress.done(f"{self.engine_note}; {threads.describe(self.thread_cap)}")
            return
        run_file = INT8_FILE if self.precision == "int8" else FP32_FILE
        ref = buildkit.export_reference(self.work / run_file, self.precision, self.opt.batch, self.opt.calib_reader,
                                        self.cal_batches + self.ver_batches, self.source)
        self.kit = buildkit.write_kit(self.work, self.target, model_file=run_file, precision=self.precision,
                                      ref=ref, dla_core=self.opt.dla_core)
        can, why = trt_build.can_build_here(self.target) if self.opt.build_engine == "auto" \
            else (False, "--no-engine")
        if can:
            self.engine_file = "model.engine"
            trt_build.build_engine(self.work / run_file, self.work / self.engine_file, target=self.target,
                                   precision=self.precision, timing_cache=self.work / "timing.cache",
                                   dla_core=self.opt.dla_core)
            self.engine_note = "built here"
        else:
            self.engine_note = f"not built here ({why}); build on the device with kit/build_engine.sh"
        self.progress.done(self.engine_note)

    def streaming_fidelity(self) -> None:
        self.progress.start("streaming fidelity: the daemon's pipeline vs offline under the declared normalization")
        self.streaming = measure_streaming(self.work / FP32_FILE, self.source, self.event_settings,
                                           self.opt.stream_normalization, self.opt.fidelity_recordings,
                                           self.opt.fidelity_budget_s, lookahead_set(self.source, self.opt.events))
        self.checks.append(settle(check_fog_free(self.streaming, self.source), self.source,
                                  self.opt.allow_degenerate))
        if self.streaming.fidelity is not None:     # the look-ahead the sweep chose (or the one the user set)
            self.event_settings = replace(self.event_settings,
                                          lookahead_s=lookahead_setting(self.streaming.lookahead["chosen"]))
        self.progress.done(describe_streaming(self.streaming))

    def write_manifest(self) -> dict:
        self.progress.start("manifest")
        manifest = build_manifest(self, self.event_settings)
        self.progress.done(f"{len(manifest['files'])} files")
        return manifest


def warn_notes(source) -> None:
    """Say at the start what the user must know before waiting minutes (random initial weights above all); the
    same notes end the summary and stay in the manifest (model.notes), which `toolkit inspect` and the daemon show."""
    for note in source.notes:
        kind = "warning" if "random initial weights" in note else "note"
        print(f"export: {kind}: {note}", file=sys.stderr, flush=True)


def export_bundle(source, target: Target, out, options: ExportOptions | None = None) -> dict:
    """Export `source` (toolkit.export.source.ModelSource) for `target` into the folder `out`; returns the
    manifest. The bundle is built in `out.partial` and renamed at the end, so a failure leaves nothing behind."""
    opt = options or ExportOptions()
    out = Path(out)
    precision = choose_precision(target, opt.precision)
    bundle_events(source, opt.events)  # bad flags: refused before any work
    warn_notes(source)
    names = settle(check_class_names(source), source, opt.allow_degenerate)   # a 'no event' class counted as FOG
    if opt.ranges:
        ranges.check_belongs(source.module, opt.ranges)  # and ranges made for other weights
    if out.exists() and any(out.iterdir()) and not opt.force:
        raise ExportError(f"{out} exists and is not empty; choose another --out or pass --force")
    work = out.with_name(out.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    # One thread by default: on a shared 2-core machine under load, torch at 2 threads ran fog-1st-place's forward
    # 10x slower than at 1 (46 s vs 4.7 s at load 13.8): a thread waiting for a busy core spins (docs/export.md).
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, opt.threads))
    verify.THREADS = max(1, opt.threads)
    try:
        pipeline = ExportPipeline(source, target, work, opt, precision)
        pipeline.checks.append(names)
        manifest = pipeline.run()
        if out.exists():
            shutil.rmtree(out)
        work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        torch.set_num_threads(torch_threads)
    return manifest
