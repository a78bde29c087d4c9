"""The on-device build kit: everything a Jetson needs to build the engine and prove it matches ONNX Runtime.

`kit/` holds `build_engine.sh` (trtexec with the flags the target's TensorRT accepts), `reference.npz` (inputs `x`
and ONNX Runtime outputs `probs` from the export machine, one row per comparison), `npz_to_polygraphy.py` (turns the
npz into Polygraphy's JSON with Polygraphy's own serializer, on the device), and two Polygraphy commands: the engine
run on the reference inputs (outputs saved), then Polygraphy's comparator on the saved outputs against the reference
(`COMPARE`, the line a test runs on onnxruntime's own outputs, on zeros and on shuffled ones, without TensorRT).

A check that can fail (`Reference`): the reference holds many windows (REFERENCE_WINDOWS) whose any-FOG
probabilities span the model's range on the calibration data (real windows, freezes included, when export
calibrated on recordings; else synthetic ones), chosen at evenly spaced ranks of their peak any-FOG probability;
and the tolerance is relative to the spread of the reference outputs (REL_ATOL of their 1st-99th percentile range,
at most the precision's ENGINE_ATOL, at least ATOL_FLOOR), so an engine that outputs zeros, or the right outputs for
the wrong windows, fails even when a model's probabilities peak at 0.03.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from string import Template

import numpy as np

from deploy.contract import FP32_FILE, INPUT_NAME, OUTPUT_NAME
from deploy.event_classes import any_fog, event_columns

# trtexec options per TensorRT generation, from each release's trtexec help (samples/common/sampleOptions.cpp):
# --memPoolSize arrived in 8.4 and replaced --workspace (removed in 10.0); TensorRT 11 removed the precision flags
# (always strongly typed; --stronglyTyped is a deprecated no-op from 11.1). Only options used by the kit are listed.
TRTEXEC_OPTIONS = {
    "8.2": {"--onnx", "--saveEngine", "--workspace", "--fp16", "--int8", "--timingCacheFile", "--useDLACore",
            "--allowGPUFallback", "--exportLayerInfo", "--profilingVerbosity", "--explicitBatch", "--iterations",
            "--minShapes", "--optShapes", "--maxShapes"},
    "8.5": {"--onnx", "--saveEngine", "--memPoolSize", "--workspace", "--fp16", "--int8", "--timingCacheFile",
            "--useDLACore", "--allowGPUFallback", "--exportLayerInfo", "--profilingVerbosity", "--iterations",
            "--minShapes", "--optShapes", "--maxShapes"},
    "10": {"--onnx", "--saveEngine", "--memPoolSize", "--fp16", "--int8", "--timingCacheFile", "--useDLACore",
           "--allowGPUFallback", "--exportLayerInfo", "--profilingVerbosity", "--iterations", "--stronglyTyped",
           "--minShapes", "--optShapes", "--maxShapes"},
    "11": {"--onnx", "--saveEngine", "--memPoolSize", "--timingCacheFile", "--useDLACore", "--allowGPUFallback",
           "--exportLayerInfo", "--profilingVerbosity", "--iterations", "--minShapes", "--optShapes", "--maxShapes"},
}
# Engine vs ONNX Runtime reference tolerance on probabilities, by the precision the engine runs: the most allowed
# (outputs spanning 0..1); less where they span less (Reference.atol).
ENGINE_ATOL = {"fp32": 1e-3, "fp16": 0.02, "int8": 0.05}
REL_ATOL = 0.1          # an engine may differ from the reference by a tenth of the spread of the reference outputs
ATOL_FLOOR = 1e-4       # ... and never needs to agree closer than this (fp32 engines differ by ~1e-6)
REFERENCE_WINDOWS = 32  # comparisons on the device (fewer when the calibration data has fewer windows)
REFERENCE_MAX_BYTES = 8 << 20   # ... and at most this much input in kit/reference.npz (large windows: fewer)
WORKSPACE_MIB = 1024
# The comparison the kit runs: Polygraphy's comparator on the engine's saved outputs against the reference ones.
COMPARE = ("polygraphy run --load-outputs cache/engine_outputs.json cache/reference_outputs.json "
           "--atol {atol:.3g} --rtol 0 --check-error-stat max")


@dataclass(frozen=True)
class Reference:
    """The kit's reference: `inputs` (K, *input shape) and the outputs (K, *output shape) of the graph the engine
    is built from, on ONNX Runtime; `data` says where the windows came from."""
    inputs: np.ndarray
    outputs: np.ndarray
    data: str
    precision: str

    @property
    def spread(self) -> float:
        """The 1st-99th percentile range of every output value."""
        lo, hi = np.percentile(self.outputs, [1, 99]) if self.outputs.size else (0.0, 0.0)
        return float(hi - lo)

    @property
    def atol(self) -> float:
        return float(min(ENGINE_ATOL[self.precision], max(ATOL_FLOOR, REL_ATOL * self.spread)))

    def describe(self) -> dict:
        return {"windows": int(len(self.inputs)), "data": self.data, "atol": self.atol, "spread": self.spread,
                "range": [float(self.outputs.min()), float(self.outputs.max())] if self.outputs.size else None}


def candidate_windows(reader, batches) -> tuple[np.ndarray, str]:
    """(windows (N, *one window's input), what they are): the calibration reader's when it reads recordings (a
    `calibration.data.WindowReader` of --calib-data: real windows, half of them centred on labelled freezes),
    else the synthetic `batches` (calibration and verification windows of deploy.synth recordings)."""
    if reader is not None and hasattr(reader, "prepared"):
        reader.rewind()
        got, found = [], reader.get_next()
        while found is not None:
            got.append(next(iter(found.values())))
            found = reader.get_next()
        reader.rewind()
        names = sorted({r.name for r in reader.prepared})
        return np.concatenate(got), f"calibration windows of {len(names)} recording(s) ({', '.join(names[:3])}" \
                                    f"{', ...' if len(names) > 3 else ''}), spanning the any-FOG range"
    return np.concatenate(batches), "synthetic windows (deploy.synth), spanning the any-FOG range"


def export_reference(model_path, precision: str, batch: int, reader, batches, source) -> Reference:
    """The reference of an export of `source` (a ModelSource: its event classes and any-FOG rule rank the windows):
    the graph the engine is built from (`model_path`; INT8 as written, the Q/DQ graph TensorRT compiles, not
    onnxruntime's integer kernels) on ONNX Runtime over `candidate_windows`."""
    from toolkit.export.verify import ort_session
    session = ort_session(model_path, as_written=precision == "int8")
    name = session.get_inputs()[0].name
    windows, data = candidate_windows(reader, batches)
    return reference(lambda x: session.run(None, {name: x})[0], windows, batch, precision, data,
                     event_columns(source.classes, source.background), source.any_fog)


def spanning(scores: np.ndarray, k: int) -> np.ndarray:
    """Indexes of (at most) k items at evenly spaced ranks of `scores`, lowest and highest included."""
    order = np.argsort(np.asarray(scores), kind="stable")
    return order[np.unique(np.round(np.linspace(0, len(order) - 1, min(k, len(order)))).astype(int))]


def reference(run, windows: np.ndarray, batch: int, precision: str, data: str, columns=None,
              rule: str = "max") -> Reference:
    """The kit's reference from candidate `windows` (N, *one window's input): each window through `run` (a batch of
    `batch` windows -> outputs: the graph the engine is built from, on ONNX Runtime), the REFERENCE_WINDOWS whose
    peak any-FOG probability (event `columns`, any-FOG `rule`) spans the range kept, grouped `batch` at a time as
    the engine's input (the last group filled with copies), and run again as grouped (a model may mix its batch)."""
    def run_all(x):
        groups = [x[i:i + batch] for i in range(0, len(x), batch)]
        groups[-1] = np.concatenate([groups[-1], np.repeat(groups[-1][-1:], batch - len(groups[-1]), axis=0)])
        return np.stack(groups), np.stack([np.asarray(run(g)) for g in groups])
    _, outputs = run_all(windows)
    per_window = outputs.reshape(-1, *outputs.shape[2:])[:len(windows)]
    scores = [any_fog(np.asarray(o, np.float64).reshape(-1, o.shape[-1]), columns, rule).max() for o in per_window]
    k = max(1, min(REFERENCE_WINDOWS, REFERENCE_MAX_BYTES // max(1, windows[0].nbytes * batch)))
    inputs, outputs = run_all(windows[np.sort(spanning(np.array(scores), k * batch))])
    return Reference(inputs.astype(np.float32), outputs.astype(np.float32), data, precision)


def generation(tensorrt_version: str) -> str:
    """The TRTEXEC_OPTIONS key for a TensorRT version string ("8.2.1" -> "8.2", "8.6.2" -> "8.5", "10.3" -> "10")."""
    major, _, rest = tensorrt_version.partition(".")
    minor = int(rest.split(".")[0] or 0) if rest and rest[0].isdigit() else 0
    if major == "8":
        return "8.2" if minor < 4 else "8.5"
    return major


def trtexec_args(gen: str, *, model: str, engine: str, precision: str, dla: bool = False,
                 strongly_typed: bool = False, profile: dict | None = None) -> list[str]:
    """One trtexec command line (without the binary) for TensorRT generation `gen`; `strongly_typed` on 10.x
    passes --stronglyTyped instead of precision flags (11.x is strongly typed anyway); `profile`: the optimization
    profile of a dynamic-batch graph (the manifest's batching.tensorrt)."""
    args = [f"--onnx={model}", f"--saveEngine={engine}"]
    if profile is not None:
        args += [f"--{which}Shapes={profile['input']}:{'x'.join(map(str, profile[which]))}"
                 for which in ("min", "opt", "max")]
    args.append(f"--workspace={WORKSPACE_MIB}" if gen == "8.2" else f"--memPoolSize=workspace:{WORKSPACE_MIB}")
    if strongly_typed and gen == "10":
        args.append("--stronglyTyped")
    elif gen != "11":
        if precision in ("fp16", "int8"):
            args.append("--fp16")
        if precision == "int8":
            args.append("--int8")
    if dla:
        args += ["--useDLACore=${DLA_CORE}", "--allowGPUFallback"]
    args += ["--timingCacheFile=cache/timing.cache", "--profilingVerbosity=detailed",
             "--exportLayerInfo=cache/layers.json",
             "--iterations=100"]
    unknown = [a for a in args if a.split("=")[0] not in TRTEXEC_OPTIONS[gen]]
    assert not unknown, f"kit would pass {unknown} to trtexec of TensorRT {gen}"
    return args


def _generations(target) -> list[str]:
    if len(target.trt_majors) > 1:
        return [str(m) for m in target.trt_majors]
    return [generation(target.tensorrt)]


def _preamble(target, gens: list[str], dla_ok: bool) -> list[str]:
    """Where to run, which trtexec, and a refusal when the device's TensorRT (or DLA) is not the target's."""
    lines = [
        "#!/usr/bin/env bash",
        f"# Build and check the TensorRT engine for target {target.name} ({target.description}).",
        "# Run on the device, from the bundle folder:  bash kit/build_engine.sh",
        "# Engines are not portable across TensorRT versions or GPUs: build on the device that runs them.",
        "# DLA (where the device has it):  DLA_CORE=0 bash kit/build_engine.sh",
        "set -euo pipefail",
        'cd "$(dirname "$0")/.."',
        "# Everything built here goes to cache/, which the bundle's hash check ignores, so the bundle stays intact.",
        "mkdir -p cache",
        f'TRTEXEC=${{TRTEXEC:-{target.trtexec}}}',
        'command -v "$TRTEXEC" >/dev/null || TRTEXEC=trtexec',
        "# TensorRT version as trtexec reports it, e.g. [TensorRT v100300] -> 10, [TensorRT v8502] -> 8",
        'TRT_V=$("$TRTEXEC" --help 2>&1 | grep -o "TensorRT v[0-9]*" | head -1 | tr -dc 0-9 || true)',
        'if [ -z "$TRT_V" ]; then echo "cannot run $TRTEXEC (set TRTEXEC=/path/to/trtexec)" >&2; exit 1; fi',
        'if [ ${#TRT_V} -ge 6 ]; then TRT_MAJOR=$((TRT_V / 10000)); else TRT_MAJOR=$((TRT_V / 1000)); fi',
        f'echo "TensorRT major $TRT_MAJOR found; target {target.name} expects TensorRT {target.tensorrt}"',
    ]
    majors = sorted({g.split(".")[0] for g in gens})
    lines.append(f'case "$TRT_MAJOR" in {"|".join(majors)}) ;; *) echo "TensorRT $TRT_MAJOR does not match target '
                 f'{target.name} (TensorRT {target.tensorrt}); re-export for the right target" >&2; exit 1;; esac')
    lines.append('if [ -n "${DLA_CORE:-}" ]; then')
    if dla_ok:
        lines += ['  echo "DLA core $DLA_CORE with GPU fallback"']
    else:
        lines += [f'  echo "target {target.name} has no DLA ({target.dla_note or "none"})" >&2; exit 1']
    lines.append("fi")
    return lines


def _build(gens: list[str], model_file: str, precision: str, dla_ok: bool, fp32_file: str,
           strongly_typed: frozenset = frozenset()) -> list[str]:
    """One trtexec line per TensorRT generation (and its DLA variant where the device has DLA)."""
    # What the engine is built from; the DLA branch may switch it (recorded below for the daemon).
    lines = [f"BUILT_MODEL={model_file}; BUILT_PRECISION={precision}"]
    for gen in gens:
        cond = f'[ "$TRT_MAJOR" = "{gen.split(".")[0]}" ]'
        dla_model, dla_precision = model_file, precision
        if gen.startswith("8") and precision == "int8":
            dla_model, dla_precision = fp32_file, "fp16"  # TensorRT 8.x DLA takes no explicit Q/DQ
        gpu = " ".join(trtexec_args(gen, model=model_file, engine="cache/model.engine", precision=precision,
                                    strongly_typed=gen in strongly_typed))
        lines.append(f"if {cond}; then")
        if dla_ok:
            dla = " ".join(trtexec_args(gen, model=dla_model, engine="cache/model.engine", precision=dla_precision,
                                        dla=True))
            lines += ['  if [ -n "${DLA_CORE:-}" ]; then', f'    "$TRTEXEC" {dla}',
                      f'    BUILT_MODEL={dla_model}; BUILT_PRECISION={dla_precision}', "  else",
                      f'    "$TRTEXEC" {gpu}', "  fi"]
        else:
            lines.append(f'  "$TRTEXEC" {gpu}')
        lines.append("fi")
    return lines


def _check_and_record(atol: float) -> list[str]:
    """Compare the engine with the reference outputs, then record it for the daemon."""
    return [
        "# Compare the engine with the ONNX Runtime reference computed at export (needs: pip install polygraphy):",
        "# the engine runs every reference window, then Polygraphy's comparator checks each output against the",
        f"# reference within {atol:.3g} (a tenth of the spread of the reference outputs, at most the precision's limit)",
        "python3 kit/npz_to_polygraphy.py kit/reference.npz cache",
        "polygraphy run cache/model.engine --model-type engine --trt --load-inputs cache/inputs.json "
        "--save-outputs cache/engine_outputs.json",
        COMPARE.format(atol=atol),
        'echo "engine built and matches the ONNX Runtime reference: cache/model.engine"',
        "# Record TensorRT version, GPU and hashes beside it: the daemon uses this engine only when they match.",
        'if python3 -c "import deploy.engines.tensorrt" 2>/dev/null; then',
        '  python3 -m deploy.engines.tensorrt record-kit-engine . --model "$BUILT_MODEL" --precision "$BUILT_PRECISION"',
        "else",
        '  echo "note: the toolkit (device extra) is not installed here, so the engine was not recorded;'
        ' the daemon will build its own" >&2',
        "fi",
    ]


def _batches(gens: list[str], precision: str, batching: dict | None) -> list[str]:
    """With BATCHES=1: the engines of the gateway's batch sizes, to time them with trtexec (the gateway builds and
    caches its own on first start): the dynamic-batch graph with its optimization profile, or (INT8, static) one
    engine per size."""
    if not batching or len(batching.get("sizes", [])) < 2:
        return []
    profile = batching.get("tensorrt") if precision != "int8" else None
    files = batching.get("files", {})
    per_size = files.get(precision) or files.get("fp32", {})
    jobs = [(profile["file"], "cache/model_dynamic.engine", profile)] if profile else \
        [(f, f"cache/model_b{size}.engine", None) for size, f in per_size.items()]
    lines = ["# The gateway's batch sizes (it builds and caches these itself on first start): BATCHES=1 to time them",
             'if [ -n "${BATCHES:-}" ]; then']
    for gen in gens:
        lines.append(f'  if [ "$TRT_MAJOR" = "{gen.split(".")[0]}" ]; then')
        for model, engine, shapes in jobs:
            args = trtexec_args(gen, model=model, engine=engine, precision=precision, profile=shapes)
            lines.append(f'    "$TRTEXEC" {" ".join(args)}')
        lines.append("  fi")
    return lines + ["fi"]


def _script(target, model_file: str, precision: str, dla_ok: bool, fp32_file: str, atol: float,
            batching=None) -> str:
    gens = _generations(target)
    lines = (_preamble(target, gens, dla_ok) + _build(gens, model_file, precision, dla_ok, fp32_file,
                                                            frozenset(g for g in gens if g[0].isdigit() and
                                                                      target.strongly_typed(int(g.split(".")[0]))))
             + _check_and_record(atol) + _batches(gens, precision, batching))
    return "\n".join(lines) + "\n"


# The kit's converter, with the bundle's tensor names filled in (string.Template: $x, $probs).
_NPZ_TO_POLYGRAPHY = '''"""Polygraphy's input and reference-output JSON from reference.npz, by Polygraphy's own serializer."""
import sys
from pathlib import Path

import numpy as np
from polygraphy.comparator import RunResults
from polygraphy.comparator.struct import IterationResult
from polygraphy.json import save_json

data = np.load(sys.argv[1])
out = Path(sys.argv[2])
inputs, outputs = data["$x"], data["$probs"]     # one row per comparison: (K, *input shape), (K, *output shape)
save_json([{"$x": x} for x in inputs], str(out / "inputs.json"))
results = RunResults([("onnxruntime-reference", [IterationResult({"$probs": y}, runner_name="onnxruntime-reference")
                                                 for y in outputs])])
results.save(str(out / "reference_outputs.json"))
print("wrote", len(inputs), "reference inputs and outputs to", out)
'''


def write_kit(bundle_dir, target, *, model_file: str, precision: str, ref: Reference, dla_core=None,
              fp32_file: str = FP32_FILE, batching: dict | None = None) -> dict:
    """Write `kit/` into the bundle folder; returns what it holds for the manifest. The script builds for DLA when
    run with DLA_CORE set (where the target has DLA); `dla_core` (from --dla-core) is recorded as the suggestion."""
    kit = Path(bundle_dir) / "kit"
    kit.mkdir(parents=True, exist_ok=True)
    dla_ok = bool(target.dla)
    script = kit / "build_engine.sh"
    script.write_text(_script(target, model_file, precision, dla_ok, fp32_file, ref.atol, batching))
    script.chmod(0o755)
    np.savez(kit / "reference.npz", **{INPUT_NAME: ref.inputs, OUTPUT_NAME: ref.outputs})
    (kit / "npz_to_polygraphy.py").write_text(Template(_NPZ_TO_POLYGRAPHY).substitute(x=INPUT_NAME, probs=OUTPUT_NAME))
    commands = [line.strip().replace('"$TRTEXEC"', "trtexec") for line in script.read_text().splitlines()
                if line.strip().startswith('"$TRTEXEC" --onnx') and "Shapes=" not in line and "_b" not in line]
    return {"script": "kit/build_engine.sh", "reference": "kit/reference.npz", "generations": _generations(target),
            "trtexec": commands, "atol": ref.atol, "reference_windows": ref.describe(), "dla": dla_ok,
            "dla_core": dla_core if dla_ok else None}

