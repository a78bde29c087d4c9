"""The thread cap measured where the daemon runs (issue 27): at first start the daemon times its own engine at 1..N
intra-op threads, interleaved, keeps the fewest within the margin of the fastest beside its state, reuses that at
later starts unless the bundle, the graph, the budget or the machine changed; the export's figure is a hint, and a
setting turns the measurement off or forces a count. Time is a virtual clock each engine call advances by a known
cost (no wall-clock assertion)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from deploy import thread_cap
from deploy.bundle import Bundle, write_manifest
from deploy.config import build_config
from tests.helpers_bundle import make_bundle


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class CostedEngine:
    """Stands in for an engine in the measurement only: each call advances the clock by its thread count's cost."""

    def __init__(self, threads: int, cost_ms: dict, clock: Clock, log: list):
        self.threads, self.cost, self.clock, self.log = threads, cost_ms[threads] / 1e3, clock, log
        self.input_shape, self.closed = (1, 4), False

    def infer(self, x):
        self.log.append(self.threads)
        self.clock.now += self.cost

    def close(self):
        self.closed = True


def _opener(cost_ms, clock, opened, calls):
    def open_at(threads, cap=False):
        engine = CostedEngine(threads, cost_ms, clock, calls)
        opened.append(engine)
        return engine
    return open_at


IDENTITY = {"bundle_digest": "sha256:aa", "graph": "fp32", "budget": 2, "machine": {"cpu": "x", "cores": 2}}


@pytest.mark.parametrize("cost, chosen", [({1: 1.13, 2: 1.48}, 1),     # fog-small: a second thread costs
                                          ({1: 247.0, 2: 153.0}, 2),   # fog-1st-place's stages need both
                                          ({1: 1.02, 2: 1.0}, 1)])     # within 3 %: the fewer
def test_the_first_start_measures_interleaved_and_keeps_the_fewest_as_fast(tmp_path, monkeypatch, cost, chosen):
    monkeypatch.setattr(thread_cap, "counts", lambda budget: [1, 2])
    clock, opened, calls = Clock(), [], []
    engine, reason = thread_cap.choose(_opener(cost, clock, opened, calls), 2, IDENTITY, tmp_path, hint=2,
                                       timer=clock, example=np.zeros((1, 4), np.float32))
    assert engine.threads == chosen and "measured on this device" in reason and "export machine's figure was 2" \
        in reason
    assert [e.threads for e in opened] == [1, 2] and all(e.closed != (e is engine) for e in opened)
    # interleaved: one warm-up each, then rounds in which both run, the order rotating
    rounds = calls[2:]
    assert len(rounds) % 2 == 0 and all(sorted(rounds[i:i + 2]) == [1, 2] for i in range(0, len(rounds), 2))
    assert rounds[:2] != rounds[2:4]
    kept = json.loads((tmp_path / thread_cap.FILE).read_text())
    assert kept["threads"] == chosen and kept["identity"] == IDENTITY and set(kept["latency_ms"]) == {"1", "2"}


def test_later_starts_reuse_it_until_the_bundle_graph_budget_or_machine_change(tmp_path, monkeypatch):
    monkeypatch.setattr(thread_cap, "counts", lambda budget: [1, 2])
    clock = Clock()
    cost = {1: 1.0, 2: 2.0}

    def start(identity):
        opened, calls = [], []
        engine, reason = thread_cap.choose(_opener(cost, clock, opened, calls), 2, identity, tmp_path, timer=clock,
                                           example=np.zeros((1, 4), np.float32))
        return engine, reason, opened, calls

    start(IDENTITY)
    engine, reason, opened, calls = start(IDENTITY)
    assert engine.threads == 1 and len(opened) == 1 and calls == [] and "kept in" in reason   # no measurement
    for changed in ({"bundle_digest": "sha256:bb"}, {"graph": "int8"}, {"budget": 4},
                    {"machine": {"cpu": "y", "cores": 2}}):
        _, reason, opened, calls = start({**IDENTITY, **changed})
        assert len(opened) == 2 and calls and "measured on this device:" in reason, changed


def test_a_slow_model_gets_fewer_rounds_within_the_budget():
    clock, calls = Clock(), []
    engines = {k: CostedEngine(k, {1: 2000.0, 2: 1500.0}, clock, calls) for k in (1, 2)}
    latency = thread_cap.time_interleaved(engines, None, clock)
    assert latency == {1: 2000.0, 2: 1500.0}
    assert len(calls) == 2 * (1 + thread_cap.MIN_ROUNDS)          # 3.5 s a round: the minimum, not ROUNDS
    calls.clear()
    fast = {k: CostedEngine(k, {1: 0.5, 2: 0.6}, clock, calls) for k in (1, 2)}
    thread_cap.time_interleaved(fast, None, clock)
    assert len(calls) == 2 * (1 + thread_cap.ROUNDS)


def test_the_setting_accepts_measure_bundle_off_or_a_count():
    assert [thread_cap.check_setting(v) for v in (True, False, "measure", "bundle", "off", 3)] == \
        ["measure", "off", "measure", "bundle", "off", 3]
    for bad in ("no", 0, -1, 1.5):
        with pytest.raises(Exception, match="measure.*bundle.*off.*whole number"):
            thread_cap.check_setting(bad)


@pytest.fixture
def busy_export_bundle(tmp_path) -> Bundle:
    """A real bundle whose export ran on a busy workstation: 1 thread measured faster, yet 'not capped'."""
    folder = make_bundle(tmp_path / "bundle")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["onnxruntime"]["thread_cap"] = {"fp32": {
        "threads": 2, "latency_ms": {"1": 1.13, "2": 1.48}, "others_cores": 1.71,
        "reason": "2 threads, not capped: other processes used 1.71 cores on average while this was measured"}}
    write_manifest(folder, manifest)
    return Bundle.load(folder)


def test_the_daemon_measures_its_own_cap_where_the_export_could_not(busy_export_bundle, tmp_path, monkeypatch):
    """The daemon's wiring with the real engines of the bundle, timed on a virtual clock at the costs the busy
    workstation saw (1 thread faster): the device keeps 1 thread, writes it beside the state file, reuses it."""
    from deploy.daemon import wire
    monkeypatch.setattr(thread_cap, "counts", lambda budget: [1, 2])
    clock, real_open = Clock(), thread_cap.open_engine
    timed = []

    def open_engine(*args, **kw):
        engine = real_open(*args, **kw)
        infer, cost = engine.infer, {1: 1.13e-3, 2: 1.48e-3}[engine.threads]

        def costed(x):
            timed.append(engine.threads)
            clock.now += cost
            return infer(x)
        engine.infer = costed
        return engine
    monkeypatch.setattr(thread_cap, "open_engine", open_engine)
    monkeypatch.setattr(thread_cap, "clock", clock)
    state = tmp_path / "state" / "open_onsets.json"
    config = build_config(overrides=[{"bundle": str(busy_export_bundle.folder), "backend": "onnxruntime",
                                      "threads": 2, "stream": {"state_file": str(state)}}])
    for start in range(2):
        timed.clear()
        w = wire(config)
        try:
            assert w.engine.threads == 1 and "measured on this device" in w.engine.threads_reason
        finally:
            w.engine.close()
            for sink in w.sinks:
                sink.close()
        assert (state.parent / thread_cap.FILE).is_file()
        assert bool(timed) == (start == 0)          # measured at the first start only
    kept = json.loads((state.parent / thread_cap.FILE).read_text())
    assert kept["identity"]["bundle_digest"] == busy_export_bundle.digest and kept["threads"] == 1
    assert kept["identity"]["machine"] == thread_cap.machine()
