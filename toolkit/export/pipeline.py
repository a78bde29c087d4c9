"""`toolkit export`: a model in, a checked and verified deployment bundle out.

`ExportPipeline` is one export; each step is a method, in the order `run` calls them (each reports progress on
stderr; any failure stops before a bundle is written):
1. `export_float`, `check_float`: the float ONNX at the target's opset, checked (toolkit.export.checks);
2. `export_int8`: where the target has INT8, the QAT variant with its ranges (a QAT checkpoint's or a cache's as
   they are, else calibrated here: toolkit.export.ranges) as a Q/DQ ONNX, checked;
3. `verify`: numerical verification on held-out windows (toolkit.export.verify);
4. `choose_cpu_precision`: for an onnxruntime target, what it runs (measured with --precision fastest);
5. `engine_or_kit`: a TensorRT engine when TensorRT and a GPU are here, and the on-device build kit;
6. `write_manifest`: manifest.json (toolkit.export.manifest) listing every file with its sha256.
"""
from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from calibration.calibrators import DEFAULT_METHOD
from calibration.data import BatchReader, synthetic_windows
from deploy.contract import CPU_FP32_REASON, EVENT_KEYS, FP32_FILE, INT8_FILE, with_defaults
from deploy.lazy import lazy_import
from toolkit.export import buildkit, ranges, trt_build, verify
from toolkit.export.checks import assert_checks, run_checks
from toolkit.export.manifest import build_manifest
from toolkit.export.onnx import ExportError, export_float, export_graph, with_activation
from toolkit.export.streaming import measure_streaming
from toolkit.export.targets import Target
from toolkit.timing import onnx_head_to_head

onnx = lazy_import("onnx", "workstation", "exporting ONNX")
qat_convert = lazy_import("models.qat", "workstation", "the quantization-aware variant of a model")
ptq = lazy_import("calibration.ptq", "workstation", "INT8 calibration")

# The cpu target's precision. INT8 costs accuracy (see the verification thresholds), so it must win clearly: at least
# this much faster than FP32 in the interleaved head-to-head, else FP32 (a tie or the noise of a shared machine never
# picks the less accurate model).
INT8_MIN_SPEEDUP = 1.10
_WIDE = 16  # batch of the calibration/verification twin of the QAT variant
# What the calibration windows are, for the manifest (they come from calibration.data.synthetic_windows, seed 1).
SYNTHETIC_CALIBRATION = {"source": "deploy.synth recordings through deploy.preprocess "
                                   "(calibration.data.synthetic_windows)", "seed": 1}


class Progress:
    """One line per step on stderr: `[export 3/7] verifying ... 2.1 s`."""

    def __init__(self, total: int, quiet: bool = False):
        self.total, self.step, self.quiet, self._t0 = total, 0, quiet, None

    def start(self, what: str) -> None:
        self.step += 1
        self._t0 = time.perf_counter()
        if not self.quiet:
            print(f"[export {self.step}/{self.total}] {what} ...", file=sys.stderr, flush=True)

    def done(self, detail: str = "") -> float:
        seconds = time.perf_counter() - self._t0
        if not self.quiet:
            print(f"[export {self.step}/{self.total}]   {detail + ', ' if detail else ''}{seconds:.1f} s",
                  file=sys.stderr, flush=True)
        return seconds


@dataclass
class ExportOptions:
    batch: int = 1
    precision: str | None = None     # None: the target's default
    opset: int | None = None         # None: the target's export opset
    calib_windows: int = 64
    calib_method: str = DEFAULT_METHOD  # chosen by measurement (docs/calibration.md)
    calib_reader: object = None      # a calibration.data CalibrationDataReader over real recordings, else synthetic
    ranges: object = None            # toolkit.export.ranges.GivenRanges (a QAT checkpoint's or a cache's): no calibration
    verify_windows: int = 16
    events: dict = field(default_factory=dict)
    dla_core: int | None = None
    build_engine: str = "auto"       # auto | never
    force: bool = False
    quiet: bool = False
    stream_normalization: str = "auto"  # deploy.wearer.STREAM_NORMALIZATIONS, or auto: chosen by measurement
    fidelity_recordings: object = None  # recordings for the streaming-fidelity step (default synthetic)
    fidelity: bool = True               # measure streaming fidelity (toolkit.export.streaming)


def calibrate_int8(qat, reader, method: str) -> dict:
    """The one calibration seam of the exporter: ranges into the QAT quantizers, then quantization on. The result
    lists the quantizers no window reached (`unused`, inert at this shape; placeholder range, see calibration.ptq)."""
    cache = ptq.calibrate(qat, reader, method=method, progress=False)
    qat_convert.set_quantization(qat, True)
    return ranges.describe("export-calibrated", cache.calibrator, cache.data, cache.unused)


def assert_inert(qat, shape, unused) -> None:
    """Refuse an INT8 graph in which a quantizer that calibration never reached would quantize with its placeholder."""
    live = sorted(set(unused) & ptq.active_quantizers(qat, shape)) if unused else []
    if live:
        raise ExportError(f"calibration never reached quantizer(s) {', '.join(live[:3])} but the export at input "
                          f"{tuple(shape)} uses them: calibrate at the export's batch and window (--batch, "
                          "--n-patches), or with --calib-data recordings long enough to reach them")


def event_settings(overrides: dict) -> dict:
    """The event defaults with the given overrides, refused here when the daemon's event detector would refuse them."""
    events = with_defaults(overrides)
    if not 0 <= events["off"] <= events["on"] <= 1:
        raise ExportError(f"event thresholds need 0 <= off <= on <= 1, got on={events['on']} off={events['off']}")
    if events["hop_s"] <= 0 or any(events[k] < 0 for k in EVENT_KEYS if k not in ("hop_s", "on", "off")):
        raise ExportError(f"event timings must be >= 0 and hop_s > 0, got {events}")
    return events


def choose_cpu_precision(latency_ms: dict[str, float]) -> tuple[str, str]:
    """The cpu target's precision from measured ms per call {"fp32": a, "int8": b}: int8 only when it is at least
    INT8_MIN_SPEEDUP times faster; returns (precision, the reason, with the figures)."""
    fp32, int8 = latency_ms["fp32"], latency_ms["int8"]
    figures = f"fp32 {fp32:.2f} ms, int8 {int8:.2f} ms per window on this machine's ONNX Runtime"
    if int8 * INT8_MIN_SPEEDUP <= fp32:
        return "int8", f"int8: {fp32 / int8:.2f}x faster than fp32 ({figures})"
    if int8 < fp32:
        return "fp32", (f"fp32: int8 only {fp32 / int8:.2f}x faster ({figures}), under the {INT8_MIN_SPEEDUP:.2f}x "
                        "that would justify its accuracy cost")
    return "fp32", f"fp32: int8 {int8 / fp32:.2f}x slower ({figures})"


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
        self.progress = Progress(total=(6 if self.want_int8 else 5) + (precision == "fastest") + opt.fidelity,
                                 quiet=opt.quiet)
        self.shape = source.input_shape(opt.batch)
        self.n_steps = int(source.preprocess["n_patches"])
        self.wide = opt.batch if source.tsai_compat else _WIDE
        self.checks: list[dict] = []
        self.timings: dict[str, float] = {}
        self.pairs: dict[str, dict] = {}
        self.calibration_info = self.qat = self.qat_wide = self.ort_fp32 = self.ort_int8 = None
        self.cal_batches = self.ver_batches = self.fp32 = self.float_graph = None
        self.cpu_choice = self.kit = self.engine_file = self.engine_note = self.streaming = None
        self.event_settings = event_settings(opt.events)
        if opt.ranges and not self.want_int8:
            source.notes.append(f"the {opt.ranges.source} ranges ({opt.ranges.path}) are not shipped: the bundle has no "
                                f"INT8 graph at precision {precision} (pass --precision int8 to ship them)")

    def run(self) -> dict:
        self.export_float()
        self.check_float()
        self.cal_batches = synthetic_windows(self.source.preprocess, self.opt.calib_windows, self.wide, seed=1)
        self.ver_batches = synthetic_windows(self.source.preprocess, self.opt.verify_windows, self.opt.batch, seed=2)
        if self.want_int8:
            self.export_int8()
        self.verify()
        if self.target.runtime == "onnxruntime":
            self.choose_cpu_precision()
        self.engine_or_kit()
        if self.opt.fidelity:
            self.streaming_fidelity()
        return self.write_manifest()

    def _add_checks(self, model, precision: str, file: str, label: str, int8_graph: bool = False) -> int:
        found = run_checks(model, self.target, precision, int8_graph=int8_graph)
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
        how = f"{given.source} ranges from {given.path}" if given else f"{opt.calib_method} calibration"
        self.progress.start(f"INT8: QAT variant, {how}, Q/DQ ONNX")
        self.qat = qat_convert.to_qat(source.module, batch_size=opt.batch, seq_len=self.n_steps).eval()
        # Calibrate (and later verify) a wide-batch twin: the unrolled graph runs step by step in Python, so one
        # window at a time is slow. Windows are independent unless the model mixes the batch axis (tsai_compat).
        self.qat_wide = self.qat if self.wide == opt.batch else \
            qat_convert.to_qat(source.module, batch_size=self.wide, seq_len=self.n_steps).eval()
        if given:
            self.calibration_info = ranges.apply_given(self.qat_wide, given)
        else:
            reader = opt.calib_reader or BatchReader(self.cal_batches, SYNTHETIC_CALIBRATION)
            self.calibration_info = calibrate_int8(self.qat_wide, reader, opt.calib_method)
        if self.qat_wide is not self.qat:
            self.qat.load_state_dict(self.qat_wide.state_dict())  # same names: the ranges do not depend on the batch
            qat_convert.set_quantization(self.qat, True)
        assert_inert(self.qat, self.shape, self.calibration_info["unused"])
        export_graph(with_activation(self.qat, source.activation), self.shape, self.work / INT8_FILE, self.opset)
        int8 = onnx.load(str(self.work / INT8_FILE), load_external_data=False)
        n = self._add_checks(int8, "int8", INT8_FILE, "the INT8 model", int8_graph=True)
        self.timings["export_int8_s"] = self.progress.done(f"{len(int8.graph.node)} nodes, {n} checks passed")

    def verify(self) -> None:
        batches = self.ver_batches
        self.progress.start(f"verification on {sum(len(b) for b in batches)} held-out windows")
        reference = verify.torch_run(with_activation(self.source.module, self.source.activation), batches)
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

    def choose_cpu_precision(self) -> None:
        asked, latency = self.precision, None
        if self.precision == "fastest":
            self.progress.start("fp32 vs int8 on this machine's onnxruntime, interleaved")
            latency = onnx_head_to_head({"fp32": self.work / FP32_FILE, "int8": self.work / INT8_FILE},
                                        self.ver_batches[0])
            self.precision, reason = choose_cpu_precision(latency)
            self.progress.done(f"fp32 {latency['fp32']:.2f} ms, int8 {latency['int8']:.2f} ms: {self.precision}")
        else:
            reason = f"fp32, the cpu target's default: {CPU_FP32_REASON}" if self.precision == "fp32" \
                else f"{self.precision}, as asked (--precision)"
        self.cpu_choice = {"asked": asked, "precision": self.precision, "reason": reason, "latency_ms": latency,
                           "method": "toolkit.timing.onnx_head_to_head: interleaved blocks, thread CPU time, 1 thread"
                           if latency else None}

    def engine_or_kit(self) -> None:
        self.progress.start("engine or on-device build kit")
        if self.target.runtime != "tensorrt":
            self.engine_note = "target runs ONNX Runtime"
            self.progress.done(self.engine_note)
            return
        run_file = INT8_FILE if self.precision == "int8" else FP32_FILE
        outputs = self.ort_int8 if self.precision == "int8" else self.ort_fp32
        inputs = self.ver_batches[0]
        self.kit = buildkit.write_kit(self.work, self.target, model_file=run_file, precision=self.precision,
                                      inputs=inputs, outputs=outputs[:len(inputs)], dla_core=self.opt.dla_core)
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
        self.streaming = measure_streaming(self, self.opt.stream_normalization, self.opt.fidelity_recordings)
        f = self.streaming.get("fidelity")
        if f is None:
            self.progress.done(self.streaming["skipped"])
            return
        self.progress.done(f"{self.streaming['normalization']}: {f['percent_time_called_fog_streamed']:.2f} % "
                           f"time called FOG streamed vs {f['percent_time_called_fog_offline']:.2f} % offline, "
                           f"agreement {100 * f['decision_agreement']:.1f} %")

    def write_manifest(self) -> dict:
        self.progress.start("manifest")
        manifest = build_manifest(self, self.event_settings)
        self.progress.done(f"{len(manifest['files'])} files")
        return manifest


def export_bundle(source, target: Target, out, options: ExportOptions | None = None) -> dict:
    """Export `source` (toolkit.export.source.ModelSource) for `target` into the folder `out`; returns the
    manifest. The bundle is built in `out.partial` and renamed at the end, so a failure leaves nothing behind."""
    opt = options or ExportOptions()
    out = Path(out)
    precision = choose_precision(target, opt.precision)
    event_settings(opt.events)  # refuse bad flags before minutes of work
    if opt.ranges:
        ranges.check_belongs(source.module, opt.ranges)  # and ranges made for other weights
    if out.exists() and any(out.iterdir()) and not opt.force:
        raise ExportError(f"{out} exists and is not empty; choose another --out or pass --force")
    work = out.with_name(out.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        manifest = ExportPipeline(source, target, work, opt, precision).run()
        if out.exists():
            shutil.rmtree(out)
        work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return manifest
