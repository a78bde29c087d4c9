"""`toolkit export`: a model in, a checked and verified deployment bundle out.

Pipeline (each step reports progress on stderr; any failure stops before a bundle is written):
1. float ONNX at the target's opset; an INT8 Q/DQ ONNX from the calibrated QAT variant where the target has INT8
2. static checks per graph (toolkit.target_checks)
3. numerical verification on held-out windows (toolkit.verify)
4. a TensorRT engine when TensorRT and a GPU are here, and always the on-device build kit (toolkit.buildkit)
5. manifest.json (deploy.bundle.write_manifest) listing every file with its sha256
"""
from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path



from deploy.errors import FogError
from deploy.events import DEFAULT_SETTINGS
from toolkit import __version__
from toolkit.verify import describe
from toolkit.target_checks import assert_checks, run_checks
from toolkit.targets import Target

# Event detection defaults written into every manifest (the daemon reads them from there); flags override them.
EVENT_DEFAULTS = DEFAULT_SETTINGS  # defined with the event detector, which every consumer of them runs

FP32_FILE, INT8_FILE = "model_fp32.onnx", "model_int8_qdq.onnx"

# The cpu target's precision. INT8 costs accuracy (see the verification thresholds), so it must win clearly: at least
# this much faster than FP32 in the interleaved head-to-head, else FP32 (a tie or the noise of a shared machine never
# picks the less accurate model).
INT8_MIN_SPEEDUP = 1.10
CPU_FP32_REASON = ("fp32, the cpu target's default: the INT8 graph is the TensorRT Q/DQ graph with recurrence "
                   "unrolled into thousands of nodes, which ONNX Runtime CPU runs several times slower than the fused "
                   "FP32 graph (fog-small: 6.6x, docs/bench.md); --precision fastest measures both here")
_WIDE = 16  # batch of the calibration/verification twin of the QAT variant


class ExportError(FogError):
    """The model cannot be exported for the target as asked."""


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
    calib_method: str = "percentile"  # measured on the trained fog-small: best mean |INT8 - float| (docs/export.md)
    calib_reader: object = None      # a calibration.data CalibrationDataReader over real recordings, else synthetic
    verify_windows: int = 16
    events: dict = field(default_factory=dict)
    dla_core: int | None = None
    build_engine: str = "auto"       # auto | never
    force: bool = False
    quiet: bool = False


def with_activation(module, activation: str):
    """The bundle's graph: the model plus its output activation, so the ONNX output is `probs`."""
    import torch

    class WithActivation(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = module

        def forward(self, x):
            y = self.model(x)
            if activation == "sigmoid":
                return torch.sigmoid(y)
            if activation == "softmax":
                return torch.softmax(y, dim=-1)
            return y

    return WithActivation().eval()


def _export(module, shape, path, opset) -> int:
    """Static-shape export, then fold what the exporter left foldable; returns the number of folded nodes."""
    import onnx
    import torch
    from models.onnx_export import export_onnx
    from toolkit.target_checks import fold_constants
    torch.manual_seed(0)
    export_onnx(module, torch.zeros(shape), path, opset=opset, input_names=("x",), output_names=("probs",))
    model = onnx.load(str(path))
    folded = fold_constants(model)
    if folded:
        onnx.save(model, str(path))
    return folded


def _float_static_variant(module, batch, n_steps):
    """The static QAT variant with quantization off: computes what the float model computes, with attention as
    explicit MatMul-Softmax-MatMul and recurrence unrolled, so it exports at opsets the fused graph cannot reach."""
    from models.qat import set_quantization, to_qat
    variant = to_qat(module, batch_size=batch, seq_len=n_steps)
    set_quantization(variant, False)
    return variant.eval()


def export_float(source, shape, path, opset: int, batch: int, target) -> str:
    """The float model (with its activation) as ONNX; returns which graph it is ("fused" or why "static")."""
    graph_model = with_activation(source.module, source.activation)
    try:
        _export(graph_model, shape, path, opset)
        return "fused"
    except Exception as exc:  # the exporter's own errors (e.g. SDPA below opset 14): try the static variant
        first = str(exc).splitlines()[0][:200]
    n_steps = int(source.preprocess["n_patches"])
    try:
        static = with_activation(_float_static_variant(source.module, batch, n_steps), source.activation)
        _export(static, shape, path, opset)
    except Exception as exc2:
        raise ExportError(f"the float model cannot be exported at opset {opset} for target {target.name} "
                          f"({first}); its static variant failed too ({str(exc2).splitlines()[0][:200]})") from None
    return f"static (quantization off): the fused graph does not export at opset {opset}: {first}"


class _Windows:
    """A calibration.data-style reader (get_next/rewind) over in-memory batches."""

    def __init__(self, batches):
        self.batches, self._i = batches, 0

    def get_next(self):
        if self._i >= len(self.batches):
            return None
        self._i += 1
        return {"x": self.batches[self._i - 1]}

    def rewind(self):
        self._i = 0

    def describe(self):
        return {"source": "deploy.synth recordings through deploy.preprocess (toolkit.verify.make_windows)", "seed": 1}


def calibrate_int8(qat, reader, method: str) -> dict:
    """The one calibration seam of the exporter: ranges into the QAT quantizers, then quantization on."""
    from calibration.ptq import calibrate
    from models.qat import set_quantization
    cache = calibrate(qat, reader, method=method, progress=False)
    set_quantization(qat, True)
    return {"method": method, "windows": cache.data.get("windows"), "data": cache.data}


def event_settings(overrides: dict) -> dict:
    """EVENT_DEFAULTS with the given overrides, refused here when the daemon's event detector would refuse them."""
    events = {**EVENT_DEFAULTS, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    if not 0 <= events["off"] <= events["on"] <= 1:
        raise ExportError(f"event thresholds need 0 <= off <= on <= 1, got on={events['on']} off={events['off']}")
    if events["hop_s"] <= 0 or any(events[k] < 0 for k in ("lookahead_s", "smoothing_s", "min_duration_s",
                                                            "refractory_s")):
        raise ExportError(f"event timings must be >= 0 and hop_s > 0, got {events}")
    return events


def export_bundle(source, target: Target, out, options: ExportOptions | None = None) -> dict:
    """Export `source` (toolkit.model_source.ModelSource) for `target` into the folder `out`; returns the manifest."""
    from toolkit import buildkit, trt_build, verify

    opt = options or ExportOptions()
    out = Path(out)
    precision = _choose_precision(target, opt.precision)
    event_settings(opt.events)  # refuse bad flags before minutes of work
    opset = opt.opset or target.export_opset
    want_int8 = target.int8 and precision in ("int8", "fastest")
    if out.exists() and any(out.iterdir()) and not opt.force:
        raise ExportError(f"{out} exists and is not empty; choose another --out or pass --force")
    work = out.with_name(out.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    progress = Progress(total=(6 if want_int8 else 5) + (precision == "fastest"), quiet=opt.quiet)
    try:
        manifest = _pipeline(source, target, work, opt, precision, opset, want_int8, progress, verify, buildkit,
                             trt_build)
        if out.exists():
            shutil.rmtree(out)
        work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return manifest


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


def _choose_precision(target: Target, asked: str | None) -> str:
    precision = asked or target.default_precision
    if precision == "fastest" and not (target.runtime == "onnxruntime" and target.int8):
        raise ExportError(f"--precision fastest measures fp32 against int8 on ONNX Runtime: only for the cpu target, "
                          f"not {target.name}; choose from {', '.join(target.precisions)}")
    if precision != "fastest" and precision not in target.precisions:
        raise ExportError(f"target {target.name} cannot run {precision} (it offers {', '.join(target.precisions)}); "
                          f"{'it has no INT8 hardware; ' if precision == 'int8' and not target.int8 else ''}"
                          "choose --precision from those")
    return precision


def _pipeline(source, target, work, opt, precision, opset, want_int8, progress, verify, buildkit, trt_build):
    import onnx

    shape = source.input_shape(opt.batch)
    n_steps = int(source.preprocess["n_patches"])
    graph_model = with_activation(source.module, source.activation)
    checks: list[dict] = []
    timings: dict[str, float] = {}

    progress.start(f"float ONNX, opset {opset}, input {shape}")
    float_graph = export_float(source, shape, work / FP32_FILE, opset, opt.batch, target)
    fp32 = onnx.load(str(work / FP32_FILE))
    timings["export_fp32_s"] = progress.done(f"{len(fp32.graph.node)} nodes")

    progress.start("static checks of the float model")
    float_precision = precision if precision in ("fp16", "fp32") else ("fp16" if target.fp16 else "fp32")
    float_checks = run_checks(fp32, target, float_precision)
    assert_checks(float_checks, f"the float model ({FP32_FILE})", target)
    checks += [dict(c.to_dict(), model=FP32_FILE) for c in float_checks]
    progress.done(f"{len(float_checks)} checks passed")

    wide = opt.batch if source.tsai_compat else _WIDE
    cal_batches = verify.make_windows(source.preprocess, opt.calib_windows, wide, seed=1)
    ver_batches = verify.make_windows(source.preprocess, opt.verify_windows, opt.batch, seed=2)
    calibration_info, qat, qat_wide = None, None, None
    if want_int8:
        progress.start(f"INT8: QAT variant, {opt.calib_method} calibration, Q/DQ ONNX")
        from models.qat import set_quantization, to_qat
        qat = to_qat(source.module, batch_size=opt.batch, seq_len=n_steps).eval()
        # Calibrate (and later verify) a wide-batch twin: the unrolled graph runs step by step in Python, so one
        # window at a time is slow. Windows are independent unless the model mixes the batch axis (tsai_compat).
        qat_wide = qat if wide == opt.batch else to_qat(source.module, batch_size=wide, seq_len=n_steps).eval()
        calibration_info = calibrate_int8(qat_wide, opt.calib_reader or _Windows(cal_batches), opt.calib_method)
        if qat_wide is not qat:
            qat.load_state_dict(qat_wide.state_dict())  # same names: the ranges do not depend on the batch size
            set_quantization(qat, True)
        _export(with_activation(qat, source.activation), shape, work / INT8_FILE, opset)
        int8 = onnx.load(str(work / INT8_FILE), load_external_data=False)
        int8_checks = run_checks(int8, target, "int8", int8_graph=True)
        assert_checks(int8_checks, f"the INT8 model ({INT8_FILE})", target)
        checks += [dict(c.to_dict(), model=INT8_FILE) for c in int8_checks]
        timings["export_int8_s"] = progress.done(f"{len(int8.graph.node)} nodes, {len(int8_checks)} checks passed")

    progress.start(f"verification on {sum(len(b) for b in ver_batches)} held-out windows")
    pairs = {}
    reference = verify.torch_run(graph_model, ver_batches)
    ort_fp32 = verify.ort_run(work / FP32_FILE, ver_batches)
    pairs["torch_vs_ort_fp32"] = verify.compare("torch_vs_ort_fp32", reference, ort_fp32)
    ort_int8 = None
    if want_int8:
        qat_ref = verify.torch_run_fixed(with_activation(qat_wide, source.activation), ver_batches,
                                         qat_wide.qat_batch_size)
        ort_int8 = verify.ort_run(work / INT8_FILE, ver_batches)
        pairs["torch_qat_vs_ort_int8"] = verify.compare("torch_qat_vs_ort_int8", qat_ref, ort_int8)
        pairs["torch_vs_ort_int8"] = verify.compare("torch_vs_ort_int8", reference, ort_int8)
    verify.assert_verified(pairs)
    timings["verify_s"] = progress.done(", ".join(f"{k} max {v['max_abs']:.2g}" for k, v in pairs.items()))
    latency, cpu_choice = None, None
    if target.runtime == "onnxruntime":
        asked = precision
        if precision == "fastest":
            progress.start("fp32 vs int8 on this machine's onnxruntime, interleaved")
            from toolkit.bench import onnx_head_to_head
            latency = onnx_head_to_head({"fp32": work / FP32_FILE, "int8": work / INT8_FILE}, ver_batches[0])
            precision, reason = choose_cpu_precision(latency)
            progress.done(f"fp32 {latency['fp32']:.2f} ms, int8 {latency['int8']:.2f} ms: {precision}")
        else:
            reason = CPU_FP32_REASON if precision == "fp32" else f"{precision}, as asked (--precision)"
        cpu_choice = {"asked": asked, "precision": precision, "reason": reason, "latency_ms": latency,
                      "method": "toolkit.bench.onnx_head_to_head: interleaved blocks, thread CPU time, 1 thread"
                      if latency else None}

    progress.start("engine or on-device build kit")
    run_file = INT8_FILE if precision == "int8" else FP32_FILE
    kit = None
    if target.runtime == "tensorrt":
        kit = buildkit.write_kit(work, target, model_file=run_file, precision=precision,
                                 inputs=ver_batches[0], outputs=(ort_int8 if precision == "int8" else ort_fp32)[
                                     :len(ver_batches[0])], dla_core=opt.dla_core)
    engine_file, engine_note = None, "target runs ONNX Runtime" if target.runtime != "tensorrt" else None
    if target.runtime == "tensorrt":
        can, why = trt_build.can_build_here(target) if opt.build_engine == "auto" else (False, "--no-engine")
        if can:
            engine_file = "model.engine"
            trt_build.build_engine(work / run_file, work / engine_file, target=target, precision=precision,
                                   timing_cache=work / "timing.cache", dla_core=opt.dla_core)
            engine_note = "built here"
        else:
            engine_note = f"not built here ({why}); build on the device with kit/build_engine.sh"
    progress.done(engine_note)

    progress.start("manifest")
    manifest = _manifest(source, target, opt, precision, opset, shape, fp32, float_graph, want_int8, checks, pairs,
                         sum(len(b) for b in ver_batches), calibration_info, cpu_choice, kit, engine_file,
                         engine_note, timings)
    from deploy.bundle import write_manifest
    manifest = write_manifest(work, manifest)
    progress.done(f"{len(manifest['files'])} files")
    return manifest


def _manifest(source, target, opt, precision, opset, shape, fp32, float_graph, want_int8, checks, pairs, n_windows,
              calibration_info, cpu_choice, kit, engine_file, engine_note, timings) -> dict:
    out_shape = [d.dim_value for d in fp32.graph.output[0].type.tensor_type.shape.dim]
    events = event_settings(opt.events)
    on, off = events.pop("on"), events.pop("off")
    events["on"] = {c: on for c in source.classes}
    events["off"] = {c: off for c in source.classes}
    return {
        "schema_version": 1,
        "toolkit_version": __version__,
        "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "model": {"name": source.name, "preset": source.preset, "source": source.kind,
                  "tsai_compat": source.tsai_compat, "weights_sha256": source.weights_sha256,
                  "parameters": source.parameters(), "macs": _macs(fp32), "float_graph": float_graph,
                  "notes": source.notes},
        "input": {"name": "x", "shape": list(shape), "dtype": "float32", "preprocess": source.preprocess,
                  "axes": ["AccV", "AccML", "AccAP"]},
        "output": {"name": "probs", "shape": out_shape, "classes": list(source.classes), "per": source.per,
                   "activation": source.activation},
        "events": events,
        "precision": precision,
        "models": {"fp32": FP32_FILE, "fp16": None, "int8": INT8_FILE if want_int8 else None,
                   "engine": engine_file},
        "target": target.to_dict(),
        "export": {"opset": opset, "batch": opt.batch, "calibration": calibration_info, "timings": timings,
                   "engine": engine_note, "kit": kit,
                   "cpu_latency_ms": (cpu_choice or {}).get("latency_ms"), "cpu_precision": cpu_choice,
                   "fp16_note": "FP16 runs from the fp32 ONNX with the builder's FP16 flag (TensorRT < 11); it is "
                                "verified on the device by the kit's polygraphy comparison"},
        "verification": {"pairs": pairs, "windows": n_windows,
                         "data": "deploy.synth recordings, seed 2 (calibration used seed 1)"},
        "checks": checks,
    }


def _macs(model) -> int | None:
    try:
        from toolkit.bench_macs import count_macs
    except ImportError:
        return None
    try:
        result = count_macs(model)
    except Exception:  # MAC counting is informational; never fail an export on it
        return None
    return int(result if isinstance(result, (int, float)) else getattr(result, "total", 0)) or None


def summary_table(out, manifest: dict) -> str:
    """The end-of-export summary: files, sizes, checks, verification figures."""
    lines = [f"bundle {out}  (target {manifest['target']['name']}, precision {manifest['precision']})", "",
             f"  {'file':<34} {'bytes':>12}  sha256"]
    for rel, entry in manifest["files"].items():
        lines.append(f"  {rel:<34} {entry['bytes']:>12,}  {entry['sha256'][:16]}")
    passed = sum(c["passed"] for c in manifest["checks"])
    lines += ["", f"  checks: {passed}/{len(manifest['checks'])} passed"]
    for c in manifest["checks"]:
        lines.append(f"    [{'ok' if c['passed'] else 'FAIL'}] {c['model']}: {c['name']}: {c['detail'][:90]}")
    lines += ["", f"  verification ({manifest['verification']['windows']} windows):"]
    for name, v in manifest["verification"]["pairs"].items():
        lines.append(f"    {name:<24} {describe(v)}")
    if manifest["export"].get("cpu_precision"):
        lines.append(f"  cpu precision: {manifest['export']['cpu_precision']['reason']}")
    lines.append(f"  engine: {manifest['export']['engine']}")
    for note in manifest["model"].get("notes", []):
        lines.append(f"  note: {note}")
    return "\n".join(lines)


