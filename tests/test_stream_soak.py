"""Fault injection and soak: every bad input, 12 minutes of signal, one inference per hop, nothing lost or leaked."""
from __future__ import annotations

import time

import numpy as np
import pytest

from deploy.bundle import Bundle
from deploy.counters import Counters
from deploy.engines import open_engine
from deploy.preprocess import PreprocessSpec
from deploy.sources import Chunk, parse_lines
from deploy.stream import Pipeline
from tests.helpers_bundle import make_bundle
from tests.test_stream import walking_recording

CLASSES = ["StartHesitation", "Turn", "Walking"]


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith("VmRSS")) / 1024


def faulty_chunks(rec, rng):
    """The recording as chunks, with every kind of bad input mixed in; yields (chunk, expected_drops)."""
    t = np.arange(rec.n_samples) / rec.rate_hz
    i = 0
    while i < rec.n_samples:
        j = min(rec.n_samples, i + int(rng.integers(1, 64)))
        tt, acc = t[i:j].copy(), rec.acc[i:j].copy()
        roll = rng.random()
        if roll < 0.05 and len(tt) > 2:
            acc[1, 0] = np.nan if rng.random() < 0.5 else np.inf            # NaN / inf
        elif roll < 0.10 and len(tt) > 2:
            tt, acc = np.insert(tt, 1, tt[0]), np.insert(acc, 1, acc[0], axis=0)  # duplicate
        elif roll < 0.15 and len(tt) > 2:
            tt, acc = np.append(tt, tt[0] - 0.5), np.vstack([acc, acc[:1]])      # out of order
        elif roll < 0.18 and len(tt) > 6:
            tt, acc = np.delete(tt, [2, 3, 4]), np.delete(acc, [2, 3, 4], axis=0)  # short gap
        elif roll < 0.19:
            tt = tt + 0.0  # a long gap is made below by skipping ahead
            i = min(rec.n_samples, j + int(rec.rate_hz * 3))
            yield Chunk(tt, acc, time.monotonic())
            continue
        elif roll < 0.21:
            yield parse_lines(["garbage", "1,2,3", "a,b,c,d"])  # garbage lines in a datagram
        yield Chunk(tt, acc, time.monotonic())
        i = j


def test_fault_injection_soak(tmp_path):
    bundle = Bundle.load(make_bundle(tmp_path / "b"))
    engine = open_engine(bundle, backend="onnxruntime", threads=1)
    calls = [0]
    infer = engine.infer
    engine.infer = lambda x: (calls.__setitem__(0, calls[0] + 1), infer(x))[1]   # the work done, counted
    rec = walking_recording(seconds=12 * 60.0, seed=3)
    counters = Counters()
    decided = [0]
    spec = PreprocessSpec.from_dict(bundle.manifest["input"]["preprocess"])
    pipe = Pipeline(spec, engine, CLASSES, counters, source_units="g", source_rate_hz=64, hop_samples=32,
                    lookahead_samples=32, events={"on": 0.6, "off": 0.4},
                    on_probs=lambda t, p, r: decided.__setitem__(0, decided[0] + len(p)))
    rng = np.random.default_rng(7)
    rss = []
    for k, chunk in enumerate(faulty_chunks(rec, rng)):
        counters.receive(chunk.received, chunk.rejected)
        pipe.push(chunk)
        if k % 500 == 0:
            rss.append(rss_mb())
    pipe.end_segment()
    snap = counters.snapshot()
    assert counters.balanced(), snap
    assert set(snap["dropped"]) == {"non_finite", "duplicate", "out_of_order", "parse", "columns"}
    assert snap["resets"] > 0 and snap["interpolated"] > 0
    assert decided[0] == counters.accepted + counters.interpolated  # every used sample decided exactly once
    # speed as work, not as a clock on a shared machine: one window per hop, never a window inferred twice; a
    # segment's first and last hops may be partial (its start, and the look-ahead flushed at its end)
    segments = snap["resets"] + snap["clock_resets"] + 1
    assert calls[0] == snap["hops_run"] <= decided[0] / 32 + 2 * segments, (calls[0], decided[0], segments)
    later = rss[len(rss) // 3:]
    assert max(later) - min(later) < 8, f"RSS drifted: {rss}"
