"""Unit tests of the bench pieces: MAC counter, timing harness, memory probe, baseline comparison, CLI errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from toolkit.bench import baseline as bb
from toolkit.export.macs import graph_stats
from toolkit.bench.reference import reference_onnx
from toolkit.timing import PeakMemory, interleaved, normalized, percentile

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")


def test_percentile_matches_numpy():
    values = np.random.default_rng(0).exponential(size=101).tolist()
    for q in (0, 50, 90, 99, 100):
        assert percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_reference_graph_macs_counted_by_hand(tmp_path):
    stats = graph_stats(reference_onnx(tmp_path / "ref.onnx"))
    T, D, H = 128, 64, 64
    by_hand = (3 * T * D * D          # q, k, v projections
               + T * T * D + T * D * T  # scores, weighted sum
               + 2 * T * D * 2 * D      # feed-forward pair
               + T * 2 * 4 * H * (D + H)  # bidirectional LSTM
               + T * 2 * H * 3)         # classifier
    assert stats.macs == by_hand
    assert stats.nodes == 18 and stats.qdq_nodes == 0 and not stats.unresolved


def test_large_reference_is_counted_and_chosen_for_large_models(tmp_path):
    from toolkit.bench.reference import SIZES, reference_macs, reference_size
    for size in SIZES:
        assert graph_stats(reference_onnx(tmp_path / f"{size}.onnx", size=size)).macs == reference_macs(size)
    assert reference_macs("small") == 14_204_928  # the block counted by hand above
    assert reference_size(21_217_280) == "small"       # fog-small
    assert reference_size(28_000_000) == "small"       # fog-small with an extra encoder layer: same reference
    assert reference_size(12_414_041_856) == "large"   # fog-1st-place
    boundary = (reference_macs("small") * reference_macs("large")) ** 0.5
    assert reference_size(int(boundary * 0.9)) == "small" and reference_size(int(boundary * 1.1)) == "large"


class _Mixed(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(6, 8, kernel_size=3, padding=1)
        self.gru = torch.nn.GRU(8, 16, batch_first=True)
        self.fc = torch.nn.Linear(16, 3)

    def forward(self, x):                    # x: (B, 6, T)
        h = self.conv(x).transpose(1, 2)     # (B, T, 8)
        return self.fc(self.gru(h)[0])


def test_macs_of_exported_conv_gru_linear(tmp_path):
    from models.onnx_export import export_onnx
    B, T = 2, 20
    path = export_onnx(_Mixed(), torch.randn(B, 6, T), tmp_path / "m.onnx")
    stats = graph_stats(path)
    conv = B * 8 * T * 6 * 3
    gru = T * B * 3 * 16 * (8 + 16)
    linear = B * T * 16 * 3
    assert stats.macs == conv + gru + linear
    assert stats.onnx_bytes == path.stat().st_size


def _spin(n):
    def work():
        acc = 0
        for i in range(n):
            acc += i
        return acc
    return work


def test_normalized_latency_sees_twice_the_work():
    timings = interleaved({"model": _spin(40_000), "reference": _spin(20_000)}, blocks=8, block_s=0.02)
    assert normalized(timings["model"], timings["reference"]) == pytest.approx(2.0, rel=0.2)
    assert len(timings["model"].block_medians) == 8


def test_peak_memory_sees_a_large_allocation():
    with PeakMemory() as small:
        np.ones(1000)
    with PeakMemory() as big:
        block = np.ones(64 * 2 ** 20 // 8)  # 64 MiB, touched
        block += 1
        del block
    assert big.peak_mib > 50
    if big.exact:  # VmHWM was reset: the small block's peak is its own, not the big one's
        assert small.peak_mib < 20


def _entry(nodes=10, norm=1.0):
    return {"structure": {"nodes": nodes, "qdq_nodes": 0, "macs": 100, "parameters": 5, "onnx_bytes": 999},
            "normalized_latency": norm, "median_ms": 1.0}


def test_compare_structure_exact_and_timing_within_tolerance():
    base = _entry()
    assert bb.compare("m/b", _entry(norm=1.14), base, 0.15).ok
    slow = bb.compare("m/b", _entry(norm=1.2), base, 0.15)
    assert not slow.ok and slow.structure_ok and slow.timing_ok is False
    assert "normalized latency 1.200" in slow.problems[0]
    changed = bb.compare("m/b", _entry(nodes=11), base, 0.15)
    assert not changed.ok and not changed.structure_ok and changed.timing_ok
    assert changed.problems == ["m/b: nodes is 11, baseline 10"]
    assert not bb.compare("m/b", _entry(), {}, 0.15).ok  # no baseline is a failure, not a pass


def test_graph_counts_of_another_toolchain_are_not_compared_and_say_so():
    recorded = dict(_entry(), toolchain={"torch": "2.13.0", "onnx": "1.23.2", "onnxruntime": "1.31.1"})
    newer = dict(_entry(nodes=14), toolchain={"torch": "2.13.0", "onnx": "1.23.2", "onnxruntime": "1.32.0"})
    verdict = bb.compare("m/b", newer, recorded, 0.13)
    assert verdict.ok and verdict.notices == ["m/b: graph structure recorded with another toolchain (onnxruntime "
                                              "1.31.1 -> 1.32.0): only parameters compared; re-record on purpose: "
                                              "toolkit bench --model MODEL --update-baseline"]
    grown = dict(newer, structure=dict(newer["structure"], parameters=6))   # the model itself changed
    assert bb.compare("m/b", grown, recorded, 0.13).problems == ["m/b: parameters is 6, baseline 5"]
    same = dict(_entry(nodes=14), toolchain=recorded["toolchain"])
    assert bb.compare("m/b", same, recorded, 0.13).problems == ["m/b: nodes is 14, baseline 10"]
    # an entry from before per-entry toolchains was recorded with the file's measured_on
    file = {"measured_on": {"onnxruntime": "1.31.1", "cpu": "x"}, "entries": {"m/b": _entry()}}
    assert bb.entry_of(file, "m/b")["toolchain"] == {"onnxruntime": "1.31.1"} and bb.entry_of(file, "m/x") == {}


def test_a_ratio_to_another_reference_is_not_compared(tmp_path):
    base = dict(_entry(norm=700.0), reference="fog-block-v3/small")
    measured = dict(_entry(norm=5.0), reference="fog-block-v3/large")  # far below: would pass by accident
    verdict = bb.compare("m/b", measured, base, 0.13)
    assert not verdict.ok and verdict.structure_ok and verdict.timing_ok is False
    assert "re-record" in verdict.problems[0] and "fog-block-v3/large" in verdict.problems[0]
    assert not bb.compare("m/b", dict(_entry(), reference="x"), _entry(), 0.13).ok  # baseline from before v3
    assert bb.compare("m/b", dict(_entry(), reference="x"), dict(_entry(), reference="x"), 0.13).ok
    path = tmp_path / "c.json"
    bb.update(path, {"m/b": base}, threads=1, machine="c")
    old, new = bb.update(path, {"m/b": measured}, threads=1)
    assert json.loads(path.read_text())["entries"]["m/b"]["reference"] == "fog-block-v3/large"
    lines = bb.diff_lines(old, new)
    assert "~ m/b: reference fog-block-v3/small -> fog-block-v3/large" in lines
    assert any("not comparable" in line for line in lines)


def test_update_keeps_other_entries_and_diff_names_changes(tmp_path):
    path = tmp_path / "cpu-test.json"
    bb.update(path, {"a/x": _entry(), "b/x": _entry()}, threads=1, machine="cpu-test")
    old, new = bb.update(path, {"a/x": _entry(nodes=12, norm=1.5)}, threads=1)
    stored = json.loads(path.read_text())
    assert set(stored["entries"]) == {"a/x", "b/x"} and stored["machine_class"] == "cpu-test"
    assert stored["entries"]["a/x"]["structure"]["nodes"] == 12
    lines = bb.diff_lines(old, new)
    assert "~ a/x: nodes 10 -> 12" in lines
    assert any(line.startswith("~ a/x: normalized_latency 1.0 -> 1.5") for line in lines)
    assert not any(line.startswith("~ b/x") for line in lines)


def test_cli_errors_are_one_line(capsys):
    from toolkit.cli import main
    assert main(["bench", "fog-small", "--batches", "1,x"]) == 2
    assert "--batches" in capsys.readouterr().err
    assert main(["bench", "no-such-model-or-folder"]) == 2
    err = capsys.readouterr().err
    assert "no-such-model-or-folder" in err and "Traceback" not in err



def test_a_folder_as_the_json_output_is_refused_before_benchmarking(tmp_path, capsys):
    from toolkit.cli import main
    assert main(["bench", "fog-small", "--json-out", str(tmp_path)]) == 2
    assert f"--json-out {tmp_path} is a folder" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_report_of_a_small_model(tmp_path):
    from toolkit.bench import run as bench
    from toolkit.bench.backends import BenchedModel
    benched = BenchedModel(name="mixed", input_shape=(1, 6, 20), window_s=2.0, hop_s=0.5, factory=_Mixed,
                      workdir=tmp_path)
    report = bench.run_bench(benched, ["pytorch-eager", "onnxruntime-fp32", "tensorrt"], batches=(1, 4), blocks=4,
                              sweep_block_s=0.02)
    for name in ("pytorch-eager", "onnxruntime-fp32"):
        b1 = report["backends"][name]["batch1"]
        assert 0 < b1["median_ms"] <= b1["p90_ms"] <= b1["p99_ms"]
        assert 0 < b1["cpu_median_ms"] <= b1["p99_ms"] * 1.05
        assert b1["clock"] == "thread-cpu"  # single-threaded: throughput read from CPU time per call
        assert b1["windows_per_s"] == pytest.approx(1e3 / b1["cpu_median_ms"])
        assert b1["realtime_factor"] == pytest.approx(b1["windows_per_s"] * 0.5)
        assert [row["batch"] for row in report["backends"][name]["sweep"]] == [1, 4]
    assert "tensorrt" in report["skipped"] or "tensorrt" in report["backends"]
    from toolkit.bench.report import format_table, plot_sweep
    table = format_table(report)
    assert "onnxruntime-fp32" in table and "batch sweep" in table
    png = plot_sweep(report, tmp_path / "sweep.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def _mixed_bundle(tmp_path, **manifest):
    """A minimal fp32 bundle of the _Mixed toy model; `manifest` adds or replaces top-level keys."""
    from deploy.bundle import write_manifest
    from models.onnx_export import export_onnx
    folder = tmp_path / "bundle"
    export_onnx(_Mixed(), torch.randn(1, 6, 20), folder / "model_fp32.onnx")
    write_manifest(folder, {
        "model": {"name": "mixed", "preset": None, "parameters": 123},
        "input": {"name": "x", "shape": [1, 6, 20], "preprocess": {"rate_hz": 10.0, "patch": 2, "n_patches": 20}},
        "output": {"name": "logits", "shape": [1, 20, 3], "classes": ["A", "B", "C"]}, "precision": "fp32",
        "models": {"fp32": "model_fp32.onnx"}, **manifest})
    return folder


def test_bundle_subject_runs_its_own_file_and_names_missing_backends(tmp_path):
    from toolkit.bench import run as bench
    folder = _mixed_bundle(tmp_path, events={"hop_s": 0.5}, models={"fp32": "model_fp32.onnx", "int8": None})
    benched = bench.load_benched(str(folder))
    assert benched.window_s == 4.0 and benched.hop_s == 0.5 and benched.input_shape == (1, 6, 20)
    assert benched.onnx("fp32", 1) == folder / "model_fp32.onnx"
    structure = bench.structure(benched, "onnxruntime-fp32")
    assert structure["parameters"] == 123 and structure["onnx_bytes"] == (folder / "model_fp32.onnx").stat().st_size
    report = bench.run_bench(benched, ["onnxruntime-fp32", "onnxruntime-int8", "pytorch-eager"], batches=(1, 2),
                             blocks=3, sweep_block_s=0.02)
    assert [row["batch"] for row in report["backends"]["onnxruntime-fp32"]["sweep"]] == [1]  # no preset: no b2
    assert "int8" in report["skipped"]["onnxruntime-int8"]
    assert "preset" in report["skipped"]["pytorch-eager"]


def test_entry_tolerance_overrides_the_file_and_survives_updates(tmp_path):
    loose = dict(_entry(), tolerance=0.25)
    assert bb.compare("m/b", _entry(norm=1.2), loose, 0.13).ok
    assert not bb.compare("m/b", _entry(norm=1.3), loose, 0.13).ok
    path = tmp_path / "c.json"
    bb.update(path, {"m/b": _entry()}, threads=1, machine="c")
    data = json.loads(path.read_text())
    data["entries"]["m/b"]["tolerance"] = 0.25
    path.write_text(json.dumps(data))
    bb.update(path, {"m/b": _entry(norm=1.1)}, threads=1)
    assert json.loads(path.read_text())["entries"]["m/b"]["tolerance"] == 0.25


def test_cli_update_then_check_then_a_changed_baseline_fails(tmp_path, capsys):
    from toolkit.cli import main
    folder = _mixed_bundle(tmp_path)
    baseline = tmp_path / "cpu-test.json"
    common = [str(folder), "--backends", "onnxruntime-fp32", "--baseline", str(baseline)]
    assert main(["bench", *common, "--update-baseline", "--repeat", "1"]) == 0
    assert "+ mixed/onnxruntime-fp32" in capsys.readouterr().out
    data = json.loads(baseline.read_text())
    data["tolerance"] = 10.0  # this test is about structure; a toy model's timing spread is not the subject
    baseline.write_text(json.dumps(data))
    assert main(["bench", *common, "--check"]) == 0
    data["entries"]["mixed/onnxruntime-fp32"]["structure"]["nodes"] += 1
    baseline.write_text(json.dumps(data))
    assert main(["bench", *common, "--check"]) == 1
    assert "nodes is" in capsys.readouterr().out


def test_ratio_reports_defaults_and_equal_threads(tmp_path, capsys):
    from toolkit.cli import main
    folder = _mixed_bundle(tmp_path)
    assert main(["bench", str(folder), "--ratio", "--backends", "onnxruntime-fp32", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "defaults:" in out and "1 thread each:" in out and out.count("onnxruntime-fp32") == 2


def test_onnx_head_to_head_times_each_file_on_the_device_engine(tmp_path):
    from models.onnx_export import export_onnx
    from toolkit.timing import onnx_head_to_head
    x = torch.randn(1, 6, 20)
    heavy = torch.nn.Sequential(torch.nn.Conv1d(6, 384, 3, padding=1), torch.nn.Conv1d(384, 384, 3, padding=1)).eval()
    paths = {"small": export_onnx(_Mixed(), x, tmp_path / "small.onnx"),
             "heavy": export_onnx(heavy, x, tmp_path / "heavy.onnx")}  # ~9 MMAC vs ~20 kMAC: 400x the work
    ms = onnx_head_to_head(paths, x.numpy(), blocks=3)
    assert set(ms) == {"small", "heavy"} and 0 < ms["small"] < ms["heavy"]


def _timed_entry(norm, nodes=10, reference="fog-block-v3/small"):
    return {"structure": {"nodes": nodes}, "normalized_latency": norm, "reference": reference}


@pytest.mark.parametrize("first,second,ok,remeasured", [
    (1.20, 1.05, True, True),     # a busy minute: the second figure is within the limit, the check passes
    (1.20, 1.19, False, True),    # a slowdown repeats: it fails, and says both figures
    (1.05, None, True, False),    # within the limit: timed once
])
def test_a_timing_over_the_limit_is_measured_once_more_before_it_fails(monkeypatch, first, second, ok, remeasured):
    from types import SimpleNamespace
    from toolkit.bench import run
    calls = []

    def again(benched, backends, threads=1, timed=None):
        calls.append(backends)
        return {f"m/{backends[0]}": _timed_entry(second)}
    monkeypatch.setattr(run, "regression_entries", again)
    baseline = {"tolerance": 0.13, "entries": {"m/onnxruntime-fp32": _timed_entry(1.0)}}
    (verdict,) = run.checked_verdicts(SimpleNamespace(name="m"), {"m/onnxruntime-fp32": _timed_entry(first)}, baseline)
    assert verdict.ok is ok and (calls == [["onnxruntime-fp32"]]) is remeasured
    assert verdict.first == (first if remeasured else None)
    if not ok:
        assert "first measurement 1.200, confirmed" in verdict.problems[0]


@pytest.mark.parametrize("measured", [_timed_entry(1.5, nodes=11), _timed_entry(1.5, reference="fog-block-v2/small")])
def test_a_changed_structure_or_reference_fails_at_once(monkeypatch, measured):
    from types import SimpleNamespace
    from toolkit.bench import run
    monkeypatch.setattr(run, "regression_entries", lambda *a, **k: pytest.fail("re-measured"))
    baseline = {"tolerance": 0.13, "entries": {"m/onnxruntime-fp32": _timed_entry(1.0)}}
    (verdict,) = run.checked_verdicts(SimpleNamespace(name="m"), {"m/onnxruntime-fp32": measured}, baseline)
    assert not verdict.ok and verdict.first is None
