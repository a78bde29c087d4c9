"""A thread cap measured at export (issue 17): the export times the engine the device opens at 1..N intra-op threads
and records the fewest within a margin of the fastest; the engine (and the daemon) treat `threads` as a budget and
use min(budget, cap) unless told to ignore it; `toolkit bench` applies the same measurement and says what it used."""
from __future__ import annotations

import json
import time

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from deploy.bundle import Bundle, write_manifest  # noqa: E402
from deploy.config import build_config  # noqa: E402
from deploy.engines import open_engine  # noqa: E402
from deploy.errors import BundleError  # noqa: E402
from deploy.validate import ConfigError  # noqa: E402
from toolkit.export import threads  # noqa: E402


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class _FakeEngine:
    """An engine whose call takes a known time per thread count (a busy wait: the timing harness sees it)."""

    def __init__(self, threads: int, ms_at: dict[int, float], opened: list):
        self.threads, self.seconds = threads, ms_at[threads] / 1e3
        opened.append(self)
        self.closed = False

    def infer(self, x):
        _busy(self.seconds)

    def close(self):
        self.closed = True


def test_choose_takes_the_fewest_threads_within_the_margin_of_the_fastest():
    assert threads.choose_threads({"1": 1.13, "2": 1.48})["threads"] == 1          # fog-small: a thread costs
    assert threads.choose_threads({"1": 200.0, "2": 120.0})["threads"] == 2        # fog-1st-place's stages
    assert threads.choose_threads({"1": 1.02, "2": 1.0}, margin=0.03)["threads"] == 1   # within 3 %: fewer
    assert threads.choose_threads({"1": 1.05, "2": 1.0}, margin=0.03)["threads"] == 2   # beyond it: more
    cap = threads.choose_threads({"1": 4.0, "2": 2.0, "3": 1.99, "4": 1.5})
    assert cap["threads"] == 4 and cap["latency_ms"] == {"1": 4.0, "2": 2.0, "3": 1.99, "4": 1.5}
    assert "1 thread 4.000 ms" in cap["reason"] and "4 threads 1.500 ms" in cap["reason"] and "3%" in cap["reason"]
    with pytest.raises(ValueError, match="at least one"):
        threads.choose_threads({})


def test_on_a_busy_machine_no_cap_is_set_and_the_reason_says_why():
    quiet = threads.choose_threads({"1": 600.0, "2": 622.0}, others_cores=0.1)
    assert quiet["threads"] == 1 and quiet["others_cores"] == 0.1
    busy = threads.choose_threads({"1": 600.0, "2": 622.0}, others_cores=1.2)   # fog-1st-place's stages at load 3-5
    assert busy["threads"] == 2 and "not capped" in busy["reason"] and "1.20 cores" in busy["reason"]
    assert threads.choose_threads({"1": 1.0, "2": 2.0})["others_cores"] is None   # the OS did not say: trusted


def test_a_recorded_cap_is_reproduced_from_its_own_fields():
    """The reason quotes the other processes' cores as the cap records them: 0.4449 used to be quoted as 0.44 but
    stored as 0.445, which reads back as 0.45, so a manifest's cap could not be re-derived from its own fields."""
    cap = threads.choose_threads({"1": 1.0, "2": 0.9}, others_cores=0.4449)
    again = threads.choose_threads(cap["latency_ms"], cap["margin"], cap["others_cores"])
    assert again == cap and "0.45 cores" in cap["reason"] and cap["others_cores"] == 0.445


def test_other_processes_are_the_machine_s_cpu_less_this_process_s(monkeypatch):
    readings = iter([(100.0, 10.0), (103.0, 11.0)])  # machine-wide and own CPU seconds, at entry and exit
    clock = iter([50.0, 52.0])                        # two seconds of wall time
    monkeypatch.setattr(threads, "_cpu_seconds", lambda: next(readings))
    with threads.OtherProcesses(clock=lambda: next(clock)) as others:
        pass
    assert others.cores == pytest.approx((3.0 - 1.0) / 2.0)
    monkeypatch.setattr(threads, "_cpu_seconds", lambda: None)   # no /proc/stat: unknown, not zero
    with threads.OtherProcesses() as others:
        pass
    assert others.cores is None


def test_thread_counts_stop_at_the_cores_the_maximum_and_the_budget(monkeypatch):
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 16)
    assert threads.thread_counts() == list(range(1, threads.MAX_THREADS + 1))
    assert threads.thread_counts(2) == [1, 2] and threads.thread_counts(1) == [1]
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    assert threads.thread_counts(8) == [1, 2]


@pytest.mark.parametrize("ms_at,expected", [({1: 1.0, 2: 2.0}, 1), ({1: 2.0, 2: 0.5}, 2)])
def test_measure_times_each_thread_count_interleaved_and_closes_the_engines(monkeypatch, ms_at, expected):
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(threads, "BLOCKS", 5)
    monkeypatch.setattr(threads, "_cpu_seconds", lambda: None)   # the machine is shared: judge the figures alone
    opened: list = []
    cap = threads.measure_threads(lambda k: _FakeEngine(k, ms_at, opened), None)
    assert cap["threads"] == expected and [e.threads for e in opened] == [1, 2] and all(e.closed for e in opened)
    measured = cap["latency_ms"]
    # the figures are the measured ones: never less than the busy wait, ordered as the busy waits are (compared in
    # this run; how much longer a wait takes on a shared machine is not this test's business)
    assert all(ms <= measured[str(k)] for k, ms in ms_at.items())
    assert (measured["1"] < measured["2"]) == (ms_at[1] < ms_at[2])


# --- the manifest, written by the export and read by the engine ------------------------------------------------

def test_export_records_the_cap_of_the_engine_the_device_opens(tmp_path):
    from toolkit.export import ExportOptions, export_bundle
    from toolkit.export.source import resolve
    from toolkit.export.targets import get_target
    source = resolve("tests.fixtures.user_models:tiny_convnet",
                     preprocess={"patch": 4, "layout": "BCT", "rate_hz": 64.0}, n_patches=8)
    manifest = export_bundle(source, get_target("cpu"), tmp_path / "c",
                             ExportOptions(calib_windows=4, verify_windows=4, quiet=True, fidelity=False))
    assert set(manifest["onnxruntime"]["thread_cap"]) == {"fp32"}   # the cpu default runs fp32, no int8 model
    cap = manifest["onnxruntime"]["thread_cap"]["fp32"]
    assert set(cap["latency_ms"]) == {str(k) for k in threads.thread_counts()}
    assert all(ms > 0 for ms in cap["latency_ms"].values())
    assert cap == {**threads.choose_threads(cap["latency_ms"], cap["margin"], cap["others_cores"]),
                   "measured_on": cap["measured_on"]}
    assert "export machine" in cap["measured_on"]
    engine = open_engine(Bundle.load(tmp_path / "c"), backend="onnxruntime", threads=threads.MAX_THREADS)
    assert engine.threads == cap["threads"] == engine.thread_cap


def test_a_fastest_export_caps_the_model_the_device_opens_and_the_fp32_one(tmp_path):
    from toolkit.export import ExportOptions, export_bundle
    from toolkit.export.source import resolve
    from toolkit.export.targets import get_target
    source = resolve("tests.fixtures.user_models:tiny_convnet",
                     preprocess={"patch": 4, "layout": "BCT", "rate_hz": 64.0}, n_patches=8)
    manifest = export_bundle(source, get_target("cpu"), tmp_path / "f", ExportOptions(
        calib_windows=4, verify_windows=4, quiet=True, fidelity=False, precision="fastest"))
    caps = manifest["onnxruntime"]["thread_cap"]
    assert set(caps) == {manifest["precision"], "fp32"}
    bundle = Bundle.load(tmp_path / "f")
    for role, cap in caps.items():
        engine = open_engine(bundle, backend="onnxruntime", precision=role, threads=threads.MAX_THREADS)
        assert engine.threads == cap["threads"] and engine.precision == role


def _bundle(tmp_path, cap, name="b"):
    """The stand-in bundle with the thread cap `cap` in its manifest (None: none, as bundles made before the cap)."""
    from tests.helpers_bundle import make_bundle
    folder = make_bundle(tmp_path / name)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["onnxruntime"].pop("thread_cap")
    if cap is not None:
        manifest["onnxruntime"]["thread_cap"] = cap
    write_manifest(folder, manifest)
    return Bundle.load(folder)


def _session_threads(engine) -> int:
    return engine.session.get_session_options().intra_op_num_threads


def test_engine_uses_the_smaller_of_its_budget_and_the_cap(tmp_path):
    bundle = _bundle(tmp_path, {"fp32": {"threads": 1, "latency_ms": {"1": 1.1, "2": 1.5}}})
    capped = open_engine(bundle, backend="onnxruntime", threads=2)
    assert capped.threads == 1 == _session_threads(capped) and capped.thread_cap == 1
    everything = open_engine(bundle, backend="onnxruntime", threads=2, thread_cap=False)  # the cap turned off
    assert everything.threads == 2 == _session_threads(everything) and everything.thread_cap is None
    bundle2 = _bundle(tmp_path, {"fp32": {"threads": 2, "latency_ms": {"1": 2.0, "2": 1.0}}}, "b2")
    assert open_engine(bundle2, backend="onnxruntime", threads=1).threads == 1   # the budget is smaller
    assert open_engine(bundle2, backend="onnxruntime", threads=3).threads == 2


def test_a_bundle_without_a_cap_runs_at_its_budget_as_before(tmp_path):
    bundle = _bundle(tmp_path, None)
    assert "thread_cap" not in (bundle.manifest.get("onnxruntime") or {})
    engine = open_engine(bundle, backend="onnxruntime", threads=2)
    assert engine.threads == 2 == _session_threads(engine) and engine.thread_cap is None


def test_a_cap_for_another_role_leaves_this_one_alone(tmp_path):
    bundle = _bundle(tmp_path, {"int8": {"threads": 1, "latency_ms": {"1": 1.0, "2": 1.5}}})
    assert open_engine(bundle, backend="onnxruntime", threads=2).threads == 2   # the bundle runs fp32


@pytest.mark.parametrize("cap,words", [
    ({"fp32": {"threads": 0, "latency_ms": {"1": 1.0}}}, "not a measured thread cap"),
    ({"fp32": {"threads": "two", "latency_ms": {"1": 1.0}}}, "not a measured thread cap"),
    ({"fp32": {"threads": True, "latency_ms": {"1": 1.0}}}, "not a measured thread cap"),
    ({"fp32": {"threads": 2}}, "not a measured thread cap"),
    ({"fp32": {"threads": 3, "latency_ms": {"1": 1.0, "2": 0.9}}}, "never more than was measured"),
    ({"fp32": 2}, "not a measured thread cap"),
])
def test_a_malformed_cap_is_refused_naming_the_fix(tmp_path, cap, words):
    bundle = _bundle(tmp_path, cap)
    for off in (True, False):  # refused even when the caller ignores caps: the manifest is wrong either way
        with pytest.raises(BundleError, match=words) as err:
            open_engine(bundle, backend="onnxruntime", threads=2, thread_cap=off)
        assert "re-export the bundle" in str(err.value) and "thread_cap=False" in str(err.value)


# --- the daemon's option ----------------------------------------------------------------------------------------

def test_daemon_measures_by_default_and_takes_the_bundles_figure_a_count_or_none(tmp_path):
    from deploy.daemon_args import build_parser, overrides_from_args

    def config(*argv):
        return build_config(overrides=overrides_from_args(build_parser().parse_args([str(tmp_path), *argv])))
    assert config()["thread_cap"] == "measure" and config("--no-thread-cap")["thread_cap"] == "off"
    assert config("--set", "thread_cap=true")["thread_cap"] == "measure"
    assert config("--set", "thread_cap=2")["thread_cap"] == 2 and config("--set", "thread_cap=bundle")
    toml = tmp_path / "d.toml"
    toml.write_text(f'bundle = "{tmp_path}"\nthread_cap = "no"\n')
    with pytest.raises(ConfigError, match="thread_cap = 'no'.*measure.*bundle.*off.*whole number"):
        build_config(toml)


def test_daemon_wiring_opens_the_engine_as_thread_cap_says(tmp_path):
    from deploy.daemon import wire
    bundle = _bundle(tmp_path, {"fp32": {"threads": 1, "latency_ms": {"1": 1.1, "2": 1.5}}})
    for setting, expected in (("bundle", 1), ("off", 2), (1, 1)):
        config = build_config(overrides=[{"bundle": str(bundle.folder), "backend": "onnxruntime", "threads": 2,
                                          "thread_cap": setting}])
        w = wire(config)
        try:
            assert w.engine.threads == expected, setting
        finally:
            w.engine.close()
            for sink in w.sinks:
                sink.close()


# --- the bench --------------------------------------------------------------------------------------------------

def test_bench_runs_a_bundle_within_its_cap_and_says_so(tmp_path, capsys):
    from toolkit.cli import main
    bundle = _bundle(tmp_path, {"fp32": {"threads": 1, "latency_ms": {"1": 1.1, "2": 1.5}}})
    assert main(["bench", str(bundle.folder), "--ratio", "--backends", "onnxruntime-fp32", "--threads", "2"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines()[out.splitlines().index("  2 threads each:"):] if "onnxruntime-fp32" in ln)
    assert "1 thread" in line and "threads = what each backend ran at" in out


def test_bench_measures_a_re_exported_engine_within_its_budget(tmp_path, monkeypatch):
    from tests.helpers_bundle import _model
    from toolkit.bench import backends, run
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(threads, "BLOCKS", 5)
    benched = backends.BenchedModel(name="tiny", input_shape=(1, 24, 32), factory=lambda: _model(8, 32, 16, 0),
                               workdir=tmp_path)
    one = backends.open_runner(benched, "onnxruntime-fp32", 1, 1)
    assert one.threads == 1 and benched.thread_caps == {}        # a budget of one: nothing to measure
    used: dict = {}
    h2h = run.head_to_head(benched, ["onnxruntime-naive", "onnxruntime-fp32"], 2, blocks=3, used=used)
    cap = benched.thread_caps[("onnxruntime-fp32", 1, 2)]
    assert set(cap["latency_ms"]) == {"1", "2"} and used["onnxruntime-fp32"] == cap["threads"]
    assert used["onnxruntime-naive"] == 2 and set(h2h) == set(used)   # the naive export: the threads given
