"""Latency regression tests (`pytest -m latency`): the bundled default and the 1st-place-shaped preset, per backend.

Against `benchmarks/baselines/<machine class>.json`: graph structure (nodes, Q/DQ nodes, MACs, parameters, ONNX
bytes) must match exactly; the normalized latency (model / reference workload, same run, interleaved) may exceed
the baseline by at most the file's tolerance. One extra encoder layer must fail on structure; the encoder tripled must fail on timing too.
Re-record on purpose with `toolkit bench --model MODEL --update-baseline` (see docs/bench.md). A machine class without a
baseline file (or with no entries yet, e.g. a Jetson before its first recording) skips, saying how to record one.

What CI times, and why (the suite must stay fast): fog-small structure on every backend, timing on PyTorch eager,
the naive export, onnxruntime FP32, the dynamic INT8 plan and TensorRT (on a Jetson). Its INT8
Q/DQ graph is a TensorRT graph (recurrence unrolled into ~4300 nodes): on onnxruntime CPU it is dispatch-bound and
its normalized latency spreads 12-29 % between runs on the shared machine, too wide for a meaningful tolerance, so
here its structure is pinned and its speed is measured on the device. fog-1st-place: structure on eager, onnxruntime
FP32, the dynamic plan and its stages, timing on onnxruntime FP32 and the dynamic plan (0.3-0.6 s a call,
normalized by the large reference block, bench.reference.SIZES); its unrolled INT8 graph takes minutes to export and
load, so it is a bench command in docs/bench.md.

The staged plans (the dynamic plan with each BiLSTM split per direction and cut into stages, deploy.engines.staged)
are pinned over all their stage files: total nodes, Q/DQ nodes, MACs, ONNX bytes, the nodes of each stage (a list,
so a node moved across a cut fails), the number of steps and of stages (bench.run.staged_structure). Were it timed, it
would be at 1 thread like everything here: the stages then run in turn on the calling thread, read in thread CPU
time like the whole graph. Not at 2 threads, where the two directions run side by side: on this shared 2-core machine (load
1.2-3.6) fog-1st-place's staged plan, normalized by the reference at 2 threads in the same run (wall time), gave
1.58-2.92 in five runs (fog-small's whole dynamic plan 1.62-2.20): spreads of 85 % and 36 % against a 13 %
tolerance. The second core is measured by `toolkit bench --ratio --threads 2` (docs/bench.md), not here. The staged
plans are structure only: fog-small's timing (1.92 against the whole plan's 1.73 normalized, medians of six runs)
then spread past the tolerance inside the suite (2.65 against 2.28 in one whole-suite run, 2026-11-25), and at 1 thread
it times the whole plan's kernels in turn. The staged plan with int8 attention products is not
in the suite: once toolkit.export.cpu_graph fuses attention there is no activation x activation MatMul left to
quantize, and the bench says that backend is unavailable. fog-1st-place times the whole dynamic plan,
not its stages: at 1 thread they run the same kernels in turn (medians 2.58 and 2.55 over five runs), so a staged
timing would cost ~8 s and repeat the dynamic one.

Set FOG_LATENCY_BUNDLE=bundles/fog-small to time a bundle's own files as the default (how a Jetson runs these
tests against its TensorRT engine; docs/bench.md). Set FOG_LATENCY_RECORD=path.jsonl to append every measured entry (benchmarks/latency_spread.py uses it).
"""
from __future__ import annotations

import json
import os
import warnings

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

from toolkit.bench import baseline as bench_baseline  # noqa: E402
from toolkit.bench import run as bench  # noqa: E402
from toolkit.bench.backends import BackendUnavailable, check_available  # noqa: E402

pytestmark = [pytest.mark.latency, pytest.mark.slow]   # the exports and timings: minutes

DEFAULT = "fog-small"
FIRST_PLACE = "fog-1st-place"
CASES = {
    # model: (backends whose structure is pinned, backends also timed); the protocol is `toolkit bench --check`'s.
    # The naive export (a plain torch.onnx.export in a default session) is the baseline the project must beat; the
    # dynamic plan is the cpu target's INT8 plan (issue 17).
    # The staged plans: structure over all stage files, not timed (module docstring).
    DEFAULT: (("pytorch-eager", "onnxruntime-naive", "onnxruntime-fp32", "onnxruntime-int8", "onnxruntime-dynamic",
               "onnxruntime-staged", "tensorrt"),
              ("pytorch-eager", "onnxruntime-naive", "onnxruntime-fp32", "onnxruntime-dynamic", "tensorrt")),
    FIRST_PLACE: (("pytorch-eager", "onnxruntime-fp32", "onnxruntime-dynamic", "onnxruntime-staged"),
                  ("onnxruntime-fp32", "onnxruntime-dynamic")),
}


@pytest.fixture(scope="module")
def baseline() -> dict:
    path = bench_baseline.baseline_path()
    data = bench_baseline.load(path)
    if not data.get("entries"):
        pytest.skip(f"no latency baseline recorded for machine class {bench_baseline.machine_class()!r} "
                    f"({path}); record one with `toolkit bench --model {DEFAULT} --update-baseline` (docs/bench.md)")
    return data


def _record(entries: dict, label: str) -> None:
    target = os.environ.get("FOG_LATENCY_RECORD")
    if target:
        with open(target, "a") as fh:
            for key, entry in entries.items():
                fh.write(json.dumps({"label": label, "key": key, **entry}) + "\n")


def _measure(model: str, overrides=None, backends=None, timed=None, benched_too: bool = False):
    pinned, timed_here = CASES[model]
    timed = timed_here if timed is None else timed
    spec = os.environ.get("FOG_LATENCY_BUNDLE", model) if model == DEFAULT and not overrides else model
    benched = bench.load_benched(spec, overrides, name=model)
    usable = []
    for backend in backends or pinned:
        try:
            check_available(benched, backend)
            usable.append(backend)
        except BackendUnavailable:
            continue  # e.g. tensorrt off the Jetson: not in this machine's baseline either
    entries = bench.regression_entries(benched, usable, threads=1, timed=timed)
    _record(entries, f"{model}{'+' + json.dumps(overrides) if overrides else ''}")
    return (benched, entries) if benched_too else entries


def _verdicts(entries: dict, baseline: dict):
    tolerance = baseline["tolerance"]
    return [bench_baseline.compare(key, got, bench_baseline.entry_of(baseline, key), tolerance)
            for key, got in entries.items()]


def _same_toolchain(baseline: dict, key: str) -> None:
    """Skip, saying why, a test of graph counts when the entry was recorded with other torch/onnx/onnxruntime."""
    changed = bench_baseline.toolchain_changes(bench_baseline.entry_of(baseline, key).get("toolchain"),
                                               bench_baseline.toolchain())
    if changed:
        pytest.skip(f"{key} was recorded with another toolchain ({', '.join(changed)}): its graph counts are not "
                    "this toolchain's; re-record on purpose with `toolkit bench --model MODEL --update-baseline`")


@pytest.mark.parametrize("model", [DEFAULT, FIRST_PLACE])
def test_model_matches_its_baseline(model, baseline):
    # a timing over the limit is measured once more before it fails (bench.checked_verdicts): CI once saw
    # fog-small's eager at +13.3 % in the whole suite while four fresh processes the same hour measured -2..+4 %
    benched, entries = _measure(model, benched_too=True)
    verdicts = bench.checked_verdicts(benched, entries, baseline)
    assert verdicts, f"no backend of {model} could run here"
    for notice in (n for v in verdicts for n in v.notices):
        warnings.warn(notice)   # graph counts of another toolchain: not compared, said in the summary
    problems = [p for v in verdicts for p in v.problems]
    assert not problems, "latency regression:\n" + "\n".join(problems) + \
        "\nIf the change is deliberate, re-record: toolkit bench --model MODEL --update-baseline"


def test_extra_encoder_layer_fails_on_structure(baseline):
    slowed = _measure(DEFAULT, {"num_encoder_layers": 3}, backends=("pytorch-eager", "onnxruntime-fp32"))
    for verdict in _verdicts(slowed, baseline):
        assert not verdict.structure_ok, f"{verdict.key}: an extra layer left the structure unchanged"


def test_tripled_encoder_fails_on_timing(baseline):
    # Timing catches slowdowns beyond the tolerance, not every change. Against the baseline, one extra layer (+23 %
    # MACs since the freeze-index blend) measured +1..21 % normalized in eager (CI once saw +5.5 %) and +16..24 % in
    # onnxruntime FP32: eager is inside its own noise. The encoder tripled (2 -> 6 layers) measured +52..68 % in
    # eager and +82..101 % in onnxruntime, far beyond the 13 % tolerance (docs/bench.md).
    slowed = _measure(DEFAULT, {"num_encoder_layers": 6}, backends=("pytorch-eager", "onnxruntime-fp32"))
    for verdict in _verdicts(slowed, baseline):
        assert not verdict.structure_ok, f"{verdict.key}: a tripled encoder left the structure unchanged"
        assert verdict.timing_ok is False, (f"{verdict.key}: a tripled encoder was not caught by timing "
                                            f"({verdict.normalized:.3f} <= limit {verdict.allowed:.3f})")


def test_extra_encoder_layer_fails_on_stage_structure(baseline):
    # The staged plan is pinned per stage: one extra encoder layer changes the encoder's stage (the first), and only
    # it; the LSTM directions and the glue after them keep their node counts. Structure only: cheap (~2 s).
    key = bench_baseline.entry_key(DEFAULT, "onnxruntime-staged")
    _same_toolchain(baseline, key)
    want = baseline["entries"].get(key, {}).get("structure", {}).get("stage_nodes")
    assert want, f"{key}: no stage_nodes in the baseline; record it with `toolkit bench --model {DEFAULT} --update-baseline`"
    slowed = _measure(DEFAULT, {"num_encoder_layers": 3}, backends=("onnxruntime-staged",), timed=())
    (verdict,) = _verdicts(slowed, baseline)
    got = slowed[key]["structure"]["stage_nodes"]
    assert not verdict.structure_ok and any("stage_nodes" in p for p in verdict.problems), verdict.problems
    assert got[0] > want[0] and got[1:] == want[1:], f"stage nodes {got}, baseline {want}"


def test_a_node_moved_between_stages_fails_on_structure(baseline):
    # Totals alone would miss a cut that moves a node from one stage to the next: the per-stage list catches it.
    key = bench_baseline.entry_key(DEFAULT, "onnxruntime-staged")
    recorded = baseline["entries"].get(key)
    assert recorded, f"{key}: not in the baseline; record it with `toolkit bench --model {DEFAULT} --update-baseline`"
    moved = json.loads(json.dumps(recorded))
    stage_nodes = moved["structure"]["stage_nodes"]
    stage_nodes[0], stage_nodes[-1] = stage_nodes[0] - 1, stage_nodes[-1] + 1
    verdict = bench_baseline.compare(key, moved, recorded, baseline["tolerance"])
    assert not verdict.structure_ok and verdict.problems == [
        f"{key}: stage_nodes is {stage_nodes}, baseline {recorded['structure']['stage_nodes']}"]
