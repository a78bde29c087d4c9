"""`toolkit bench`: how fast a model runs on each backend, and whether it got slower than its baseline.

Per backend (PyTorch eager, onnxruntime FP32/INT8, TensorRT where present): batch-1 latency after warm-up (median,
p90, p99), throughput (windows/s, real-time factor), peak memory, the latency normalized by a reference workload
timed in the same run, and a batch sweep. The model's MACs and the machine's measured MatMul throughput give the
compute bound, so a latency reads as a fraction of it. The pieces: toolkit.timing (harness), toolkit.export.macs
(counter), bench.reference (reference workloads), bench.backends (benched models and runners), bench.baseline
(regression files), bench.report (table and plot).
"""
from __future__ import annotations

from pathlib import Path

from calibration import progress as bars
from deploy.bundle import Bundle
from deploy.contract.events import EventSettings
from deploy.errors import FogError, MissingDependency
from deploy.lazy import lazy_import
from deploy.preprocess import PreprocessSpec
from toolkit.bench.backends import (BACKENDS, REFERENCE_OF, BackendUnavailable, BenchedModel, check_available,
                                    open_reference, open_runner, prepare)
from toolkit.bench import split
from toolkit.bench.baseline import (DEFAULT_TOLERANCE, Verdict, compare, entry_key, entry_of, machine_class,
                                    measured_on, toolchain)
from toolkit.bench.reference import REFERENCE_VERSION, matmul_macs_per_s, reference_size
from toolkit.export.macs import graph_stats
from toolkit.timing import BUDGET_S as REGRESSION_BUDGET_S  # timed s per backend: slow models get fewer blocks
from toolkit.timing import PeakMemory, interleaved, normalized

models = lazy_import("models", "workstation", "benching a preset")

REGRESSION_BLOCKS = 24       # interleaved blocks per backend in the regression protocol
REGRESSION_BLOCK_S = 0.04    # seconds of calls per block and workload
# A slow model gets one call per block, so its figure is a median over few blocks: 5 gave the 1st-place model a
# p5-p95 spread of 5-9 % against the large reference, 8 gave 4-6 % (docs/bench.md); 8 costs it ~6 s.
REGRESSION_MIN_BLOCKS = 8


def progress(msg: str) -> None:
    """A line of what the bench did (a skipped backend, a measured batch); above a running bar, if any."""
    bars.write(f"[bench] {msg}")


# --- what to bench --------------------------------------------------------------------------------------------

def load_benched(spec: str, overrides: dict | None = None, name: str | None = None) -> BenchedModel:
    """A bundle folder (has manifest.json) or a registry preset name."""
    path = Path(spec)
    if (path / "manifest.json").is_file():
        bundle = Bundle.load(path)
        model = bundle.model
        extra = dict(overrides or {})
        if model.tsai_compat:
            extra.setdefault("tsai_compat", True)
        return BenchedModel(name=name or model.name or path.name, input_shape=tuple(bundle.input.shape),
                       window_s=bundle.spec.window_s, hop_s=bundle.events.hop_s,
                       parameters=model.parameters, preset=model.preset, overrides=extra, bundle=bundle)
    if path.exists():
        raise FogError(f"{spec}: a folder without manifest.json; pass a bundle made by `toolkit export` or a preset")
    try:
        preset = models.get_preset(spec)
    except MissingDependency:
        raise FogError(f"{spec}: benching a preset needs torch (pip install 'fog-edge-toolkit[workstation]')") from None
    except Exception as exc:  # the registry's own unknown-name error, whatever its type
        raise FogError(f"{spec}: neither a bundle folder nor a known preset ({exc}); see `toolkit models`") from None
    pre = PreprocessSpec.from_dict(preset.preprocess)
    # hop: what a bundle of this preset would get from `toolkit export` (its events over the defaults)
    return BenchedModel(name=name or spec, input_shape=pre.input_shape, window_s=pre.window_s,
                   hop_s=float(EventSettings.resolve(preset.events).hop_s), preset=spec,
                   overrides=dict(overrides or {}))


def structure(benched: BenchedModel, backend: str) -> dict:
    """The exactly-compared facts of one backend's graph: nodes, Q/DQ nodes, MACs, parameters, ONNX bytes (a staged
    plan: over all its stage files, with the nodes per stage and the steps, staged_structure)."""
    check_available(benched, backend)
    fp32 = graph_stats(benched.onnx("fp32", benched.input_shape[0]))
    if benched.parameters is None and (benched.preset is not None or benched.factory is not None):
        benched.torch_model()  # fills benched.parameters
    if backend == "pytorch-eager":
        return {"macs": fp32.macs, "parameters": benched.parameters}
    if backend.startswith("onnxruntime-staged"):
        return {**staged_structure(benched, backend), "parameters": benched.parameters}
    precision = backend.split("-", 1)[1] if backend.startswith("onnxruntime-") else "fp32"
    if backend == "tensorrt" and benched.bundle is not None:  # the engine is built from the bundle's precision
        precision = benched.bundle.precision
        precision = precision if benched.bundle.path(precision) else "fp32"
    stats = fp32 if precision == "fp32" else graph_stats(benched.onnx(precision, benched.input_shape[0]))
    return {**stats.structure(), "parameters": benched.parameters}  # MACs of this graph (unrolled: per step)


def staged_structure(benched: BenchedModel, backend: str) -> dict:
    """A staged plan's exactly-compared facts, over all its stage files: the sums (nodes, Q/DQ nodes, MACs, ONNX
    bytes), the nodes of every stage in plan order (`stage_nodes`, so a node moved between stages shows), and the
    number of steps and stages. MACs are what toolkit.export.macs counts in the pre-optimized stages: the model's
    compute, equal to its float graph's (tests/test_cpu_plans_staged.py)."""
    folder, plan = benched.staged(benched.input_shape[0], activations=backend.endswith("-activations"))
    stages = [graph_stats(folder / stage["file"]) for step in plan["steps"] for stage in step]
    return {"nodes": sum(s.nodes for s in stages), "qdq_nodes": sum(s.qdq_nodes for s in stages),
            "macs": sum(s.macs for s in stages), "onnx_bytes": sum(s.onnx_bytes for s in stages),
            "stage_nodes": [s.nodes for s in stages], "steps": len(plan["steps"]), "stages": len(stages)}


# --- measuring ----------------------------------------------------------------------------------------------

class _References:
    """Reference workloads, loaded once per run and shared by the backends of the same runtime."""

    def __init__(self, threads: int, workdir: Path):
        self.threads, self.workdir, self._loaded = threads, workdir, {}

    def get(self, kind: str, size: str = "small"):
        if (kind, size) not in self._loaded:
            self._loaded[kind, size] = open_reference(kind, self.threads, self.workdir, size)
        return self._loaded[kind, size]


def reference_name(benched: BenchedModel, backend: str) -> tuple[str, str]:
    """(reference size, its recorded name) for this backend: the block nearest the model in MACs; INT8 graphs have
    their one unrolled reference."""
    if REFERENCE_OF[backend] == "onnxruntime-int8":
        return "small", f"{REFERENCE_VERSION}/int8"
    size = reference_size(graph_stats(benched.onnx("fp32", benched.input_shape[0])).macs)
    return size, f"{REFERENCE_VERSION}/{size}"


def measure_batch1(benched: BenchedModel, backend: str, threads: int, refs: _References,
                   blocks: int = REGRESSION_BLOCKS, block_s: float = REGRESSION_BLOCK_S) -> dict:
    """Batch-1 latency interleaved with the backend's reference workload; peak memory of load + run."""
    batch = benched.input_shape[0]
    prepare(benched, backend, batch, threads)  # export and measure the thread cap outside the memory window
    size, ref_name = reference_name(benched, backend)
    reference = refs.get(REFERENCE_OF[backend], size)
    with PeakMemory() as mem:  # load and the first (allocating) call; `interleaved` warms up further
        run = open_runner(benched, backend, batch, threads)
        run()
    timings = interleaved({"model": run, "reference": reference}, blocks=blocks, block_s=block_s,
                          budget_s=REGRESSION_BUDGET_S, min_blocks=REGRESSION_MIN_BLOCKS)
    model, ref = timings["model"], timings["reference"]
    # Single-threaded CPU backends run on this thread: compare thread CPU time (immune to preemption).
    cpu_clock = backend != "tensorrt" and threads == 1
    out = {"batch": batch, **model.summary_ms(), "reference": ref_name, "reference_median_ms": 1e3 * ref.median,
           "normalized_latency": normalized(model, ref, cpu=cpu_clock), "clock": "thread-cpu" if cpu_clock else "wall",
           "peak_mib": mem.peak_mib, "peak_exact": mem.exact, "threads": run.threads}
    if backend == "pytorch-eager":  # the module was built before the window: count its weights
        model_bytes = sum(t.numel() * t.element_size() for t in benched.torch_model().state_dict().values())
        out["peak_mib"] += model_bytes / 2 ** 20
    out.update(_throughput(benched, batch, model.cpu_median if cpu_clock else model.median))
    return out


def _throughput(benched: BenchedModel, batch: int, seconds: float) -> dict:
    windows_per_s = batch / seconds
    hop = benched.hop_s or benched.window_s
    return {"windows_per_s": windows_per_s,
            # seconds of signal processed per second: one inference per hop of new samples
            "realtime_factor": windows_per_s * hop if hop else None}


def measure_sweep(benched: BenchedModel, backend: str, batches, threads: int, block_s: float = 0.1,
                  tick=lambda what: None) -> list[dict]:
    """Per batch size: latency and throughput. Single-threaded CPU backends are read in thread CPU time, as the
    normalized latency is: on a shared machine wall time mostly measures the neighbours."""
    cpu_clock = backend != "tensorrt" and threads == 1
    rows = []
    for batch in batches:
        tick(f"{backend} batch {batch}")
        try:
            run = open_runner(benched, backend, batch, threads)
        except BackendUnavailable as exc:
            progress(f"{backend} batch {batch}: skipped ({exc})")
            continue
        timing = interleaved({"model": run}, blocks=3, block_s=block_s)["model"]
        seconds = timing.cpu_median if cpu_clock else timing.median
        rows.append({"batch": batch, **timing.summary_ms(), "clock": "thread-cpu" if cpu_clock else "wall",
                     **_throughput(benched, batch, seconds)})
    return rows


def run_bench(benched: BenchedModel, backends=BACKENDS, batches=(1, 4, 16, 64), threads: int = 1,
              blocks: int = REGRESSION_BLOCKS, sweep_block_s: float = 0.1, show_progress: bool = True) -> dict:
    """The full report `toolkit bench` prints, saves as JSON and plots (a bar over the measurements on stderr)."""
    with bars.bar(len(backends) * (1 + len(batches)) + (len(backends) > 1), "bench", unit="run",
                  enabled=show_progress) as bar:
        started = []

        def tick(what: str) -> None:  # one measurement begins: the one before it is done
            if started:
                bar.update(1)
            started.append(what)
            bar.set_postfix_str(what)
        report = _run_bench(benched, backends, batches, threads, blocks, sweep_block_s, tick)
        bar.update(bar.total - bar.n)
    return report


def _run_bench(benched, backends, batches, threads, blocks, sweep_block_s, tick) -> dict:
    refs = _References(threads, benched.workdir)
    fp32 = graph_stats(benched.onnx("fp32", benched.input_shape[0]))
    report = {"model": {"name": benched.name, "input_shape": list(benched.input_shape), "window_s": benched.window_s,
                          "hop_s": benched.hop_s, "macs": fp32.macs},
              "machine": {"class": machine_class(), **measured_on(), "threads": threads, "reference": REFERENCE_VERSION,
                          "matmul_gmacs_per_s": {}},
              "backends": {}, "skipped": {}}
    report["machine"]["memory_gb_per_s"] = split.memory_bandwidth() / 1e9
    for kind in ("onnxruntime", "torch"):
        try:
            report["machine"]["matmul_gmacs_per_s"][kind] = matmul_macs_per_s(kind, threads, benched.workdir) / 1e9
        except (ImportError, MissingDependency):
            pass
    for backend in backends:
        tick(f"{backend}: batch 1, interleaved with the reference")
        try:
            result = {"structure": structure(benched, backend),
                      "batch1": measure_batch1(benched, backend, threads, refs, blocks=blocks)}
        except (BackendUnavailable, MissingDependency, ImportError) as exc:
            report["skipped"][backend] = str(exc)
            progress(f"{backend}: skipped ({exc})")
            for batch in batches:
                tick(f"{backend}: skipped")
            continue
        if backend != "tensorrt":
            result["batch1"].update(where_time_goes(benched, backend, threads, report["machine"]))
        gmacs = report["machine"]["matmul_gmacs_per_s"].get("torch" if backend == "pytorch-eager" else "onnxruntime")
        if gmacs and backend != "tensorrt":
            bound_ms = fp32.macs / (gmacs * 1e9) * 1e3 * benched.input_shape[0]
            result["batch1"]["compute_bound_ms"] = bound_ms
            result["batch1"]["fraction_of_bound"] = bound_ms / result["batch1"]["median_ms"]
        result["sweep"] = measure_sweep(benched, backend, batches, threads, block_s=sweep_block_s, tick=tick)
        report["backends"][backend] = result
    if len(report["backends"]) > 1:
        tick("all backends interleaved at batch 1, for the ratios")
        report["head_to_head_threads"] = {}
        report["head_to_head_ms"] = head_to_head(benched, list(report["backends"]), threads,
                                                 used=report["head_to_head_threads"])
    report["model"]["parameters"] = benched.parameters
    return report


def where_time_goes(benched: BenchedModel, backend: str, threads: int, machine: dict) -> dict:
    """The encoder/recurrence split of one backend (its own profiler) and the recurrence's memory-bandwidth bound:
    recurrent weight bytes per step x steps / the measured copy bandwidth, and its fraction of the measured
    recurrence time (1.0 = running at the bandwidth floor)."""
    x = benched.example(benched.input_shape[0])
    graph = benched.onnx("fp32" if backend == "pytorch-eager" else backend.split("-", 1)[1], benched.input_shape[0])
    try:
        timing = (split.eager_split(benched.torch_model(), x) if backend == "pytorch-eager"
                  else split.onnxruntime_split(graph, x, threads, workdir=benched.workdir))
    except Exception as exc:  # profiling is informational: say why it is missing, never fail the bench on it
        return {"split": {"error": str(exc).splitlines()[0][:200]}}
    weights = split.recurrent_bytes(graph)
    bound = split.memory_bound_ms(weights, machine["memory_gb_per_s"] * 1e9)
    fraction = bound / timing["recurrence_ms"] if bound and timing["recurrence_ms"] else None
    return {"split": timing, "recurrent_weights": weights, "memory_bound_ms": bound,
            "recurrence_fraction_of_memory_bound": fraction}


def head_to_head(benched: BenchedModel, backends, threads: int, blocks: int = 12,
                 used: dict | None = None) -> dict[str, float]:
    """Batch-1 time per call of every backend, all interleaved in one run: the fair way to say "A is k times
    faster than B" on a machine whose speed drifts (separate runs would compare different moments).

    `threads=0`: every backend at its own default (onnxruntime engine: all cores; eager: torch.get_num_threads()),
    read in wall time, which is what a caller waits. The project's onnxruntime engines take `threads` as a budget
    (toolkit.bench.backends): `used`, when given, receives the threads each backend actually ran at."""
    runners = {}
    for backend in backends:
        try:
            runners[backend] = open_runner(benched, backend, benched.input_shape[0], threads)
        except (BackendUnavailable, MissingDependency, ImportError):
            continue
        if used is not None and backend != "tensorrt":   # a GPU engine: no CPU threads to say
            used[backend] = runners[backend].threads
    if not runners:
        return {}
    timings = interleaved(runners, blocks=blocks, block_s=0.05, budget_s=REGRESSION_BUDGET_S * len(runners))
    cpu_clock = threads == 1 and "tensorrt" not in runners
    return {b: 1e3 * (t.cpu_median if cpu_clock else t.median) for b, t in timings.items()}


def ratios(benched: BenchedModel, backends, threads: int, blocks: int = 12) -> dict[str, dict[str, dict]]:
    """The head-to-head twice: every backend at its own default threads, then all at `threads` (equal budgets:
    the project's engines use fewer where measured as fast). {setting: {"ms": {backend: ms}, "threads": {backend:
    threads used}}}. Defaults first: torch's default thread count is read before anything here changes it."""
    out = {}
    for setting, n in (("defaults", 0), (f"{threads} thread{'s' if threads > 1 else ''} each", threads)):
        used: dict = {}
        out[setting] = {"ms": head_to_head(benched, backends, n, blocks, used=used), "threads": used}
    return out


# --- regression ------------------------------------------------------------------------------------------------

def checked_verdicts(benched: BenchedModel, entries: dict[str, dict], baseline: dict,
                     threads: int = 1) -> list[Verdict]:
    """`entries` (regression_entries) judged against `baseline`. An entry whose structure matches but whose timing
    exceeds the limit is timed once more and judged on that second figure: a slowdown the code causes repeats, a
    busy minute of a shared machine seldom twice (docs/bench.md, "Confirmed before it fails"). Structure changes
    and a different reference workload fail at once."""
    tolerance = baseline.get("tolerance", DEFAULT_TOLERANCE)
    backend_of = {entry_key(benched.name, b): b for b in BACKENDS}
    verdicts = []
    for key, measured in entries.items():
        want = entry_of(baseline, key)
        verdict = compare(key, measured, want, tolerance)
        if verdict.structure_ok and verdict.timing_ok is False and key in backend_of \
                and measured.get("reference") == want.get("reference"):
            progress(f"{key}: normalized latency {verdict.normalized:.3f} over its limit {verdict.allowed:.3f}; "
                     "timing it once more")
            again = regression_entries(benched, [backend_of[key]], threads)[key]
            verdict = compare(key, again, want, tolerance)
            verdict.first = measured["normalized_latency"]
            verdict.problems = [f"{p} (first measurement {verdict.first:.3f}, confirmed)" for p in verdict.problems]
        verdicts.append(verdict)
    return verdicts


def regression_entries(benched: BenchedModel, backends, threads: int = 1, timed=None,
                       blocks: int = REGRESSION_BLOCKS) -> dict[str, dict]:
    """Baseline entries for `benched`: structure for every backend, timing for those in `timed` (default all)."""
    refs = _References(threads, benched.workdir)
    entries = {}
    for backend in backends:
        entry = {"structure": structure(benched, backend), "toolchain": toolchain()}
        if timed is None or backend in timed:
            b1 = measure_batch1(benched, backend, threads, refs, blocks=blocks)
            entry.update(normalized_latency=b1["normalized_latency"], median_ms=b1["median_ms"],
                         reference=b1["reference"])
        entries[entry_key(benched.name, backend)] = entry
    return entries
