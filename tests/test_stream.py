"""The streaming pipeline's per-hop outputs equal deploy.offline.predict_recording; events equal offline events."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from deploy.bundle import Bundle
from deploy.counters import Counters
from deploy.engines import open_engine
from deploy.events import detect_events
from deploy.offline import predict_recording
from deploy.preprocess import PreprocessSpec
from deploy.recording import Recording
from deploy.sources import Chunk
from deploy.stream import Pipeline
from tests.helpers_bundle import make_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return Bundle.load(make_bundle(tmp_path_factory.mktemp("bundle")))


@pytest.fixture(scope="module")
def engine(bundle):
    return open_engine(bundle, backend="onnxruntime", threads=1)


def walking_recording(seconds=60.0, rate=64.0, units="g", seed=0) -> Recording:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    burst = ((t % 20) > 12).astype(float)  # trembling bursts the tiny detector reacts to
    acc = np.stack([-1 + 0.2 * np.sin(2 * np.pi * 1.8 * t) + 0.3 * burst * np.sin(2 * np.pi * 6 * t),
                    0.1 * np.sin(2 * np.pi * 0.9 * t), 0.15 * np.cos(2 * np.pi * 1.8 * t)], axis=1)
    acc += 0.02 * rng.normal(size=acc.shape)
    if units == "m/s^2":
        acc *= 9.80665
    return Recording(acc=acc, rate_hz=rate, units=units)


def batch_infer(engine):
    return lambda batch: np.concatenate([engine.infer(b[None]).copy() for b in batch])


def stream(rec, spec, engine, *, hop, lookahead, events=None, seed=1):
    outputs, evs = [], []
    counters = Counters()
    pipe = Pipeline(spec, engine, ["StartHesitation", "Turn", "Walking"], counters, source_units=rec.units,
                    source_rate_hz=rec.rate_hz, hop_samples=hop, lookahead_samples=lookahead, events=events,
                    on_probs=lambda t, p, r: outputs.append(p.copy()),
                    on_event=lambda kind, e, d: evs.append(e) if kind == "event" else None)
    rng = np.random.default_rng(seed)
    i, t = 0, np.arange(rec.n_samples) / rec.rate_hz
    while i < rec.n_samples:  # random chunk sizes: chunking must not matter
        j = min(rec.n_samples, i + int(rng.integers(1, 50)))
        counters.receive(j - i)
        pipe.push(Chunk(t[i:j], rec.acc[i:j], 0.0))
        i = j
    pipe.end_segment()
    assert counters.balanced() and counters.accepted == rec.n_samples
    return np.concatenate(outputs), evs, counters


@pytest.mark.parametrize("hop,lookahead", [(32, None), (32, 0), (20, 50), (256, None), (7, 0)])
def test_per_hop_outputs_equal_offline(bundle, engine, hop, lookahead):
    spec = PreprocessSpec.from_dict(bundle.manifest["input"]["preprocess"])
    rec = walking_recording(seconds=30.3)
    got, _, counters = stream(rec, spec, engine, hop=hop, lookahead=lookahead)
    expected = predict_recording(rec, spec, batch_infer(engine), hop, lookahead)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert counters.hops_run == -(-rec.n_samples // hop)


def test_resampling_and_unit_conversion_equal_offline(bundle, engine):
    spec = PreprocessSpec.from_dict(bundle.manifest["input"]["preprocess"])
    rec = walking_recording(seconds=20.0, rate=100.0, units="m/s^2")
    got, _, _ = stream(rec, spec, engine, hop=32, lookahead=None)
    expected = predict_recording(rec, spec, batch_infer(engine), 32, None)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_recording_normalization_streams_as_running(bundle, engine, caplog):
    spec = replace(PreprocessSpec.from_dict(bundle.manifest["input"]["preprocess"]), normalization="recording")
    rec = walking_recording(seconds=20.0)
    with caplog.at_level("WARNING"):
        got, _, _ = stream(rec, spec, engine, hop=32, lookahead=0)
    assert "cannot stream" in caplog.text
    expected = predict_recording(rec, replace(spec, normalization="running"), batch_infer(engine), 32, 0)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_streamed_events_equal_offline_events(bundle, engine):
    spec = PreprocessSpec.from_dict(bundle.manifest["input"]["preprocess"])
    rec = walking_recording(seconds=80.0)
    timeline = predict_recording(rec, spec, batch_infer(engine), 32, 32)
    # thresholds from the timeline's own spread, so the untrained tiny model crosses them now and then
    on, off = np.quantile(timeline, 0.85, axis=0), np.quantile(timeline, 0.6, axis=0)
    knobs = {"on": on, "off": off, "min_duration_s": 0.5, "smoothing_s": 0.25, "refractory_s": 0.5}
    probs, events, counters = stream(rec, spec, engine, hop=32, lookahead=32, events=knobs)
    offline = detect_events(timeline, spec.rate_hz, **knobs)
    assert len(offline) > 0, "the test signal should trigger the tiny detector"
    assert sorted(events, key=lambda e: (e.onset_s, e.cls)) == offline
    assert counters.events == len(events)


@pytest.mark.parametrize("horizontal", ["sensor", "principal"])
def test_gravity_alignment_and_std_floor_stream_as_offline(bundle, engine, horizontal):
    from deploy.preprocess import gravity_rotation
    spec = replace(PreprocessSpec.from_dict(bundle.manifest["input"]["preprocess"]), gravity_align=True,
                   horizontal=horizontal, min_std=0.05)
    rec = walking_recording(seconds=30.0)
    tilt = gravity_rotation(np.array([-0.8, 0.3, 0.52]))    # a belt tilted by ~37 degrees
    rec.acc = rec.acc @ tilt                                # gravity moves off AccV
    rec.acc[64 * 10:64 * 16] = rec.acc[64 * 10] + 0.001     # a still stretch: the floor keeps it small
    got, _, _ = stream(rec, spec, engine, hop=32, lookahead=32)
    expected = predict_recording(rec, spec, batch_infer(engine), 32, 32)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    plain = predict_recording(rec, replace(spec, gravity_align=False, horizontal="sensor", min_std=0.0),
                              batch_infer(engine), 32, 32)
    assert np.abs(plain - expected).max() > 1e-3           # the options change what the model sees
