"""Acceptance: replaying synthetic recordings with labelled FOG through the daemon gives the same event metrics
(sensitivity, false alarms per hour, onset latency median/p90) as the offline evaluation of the same model.

The bundle here is the small untrained test model (the trained default bundle comes from `toolkit export`): its
thresholds are set from its own offline timeline so it fires; what is checked is that streaming == offline.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from deploy.bundle import Bundle
from deploy.config import build_config
from deploy.daemon import run
from deploy.engines import open_engine
from deploy.events import Event, detect_events
from deploy.metrics import event_metrics, pool_event_metrics
from deploy.offline import predict_recording
from deploy.preprocess import PreprocessSpec
from deploy.recording import write_recording
from deploy.synth import synth_recording
from tests.helpers_bundle import make_bundle

HOP_S, LOOKAHEAD_S = 0.5, 1.0


def test_streamed_event_metrics_equal_offline(tmp_path):
    bundle_dir = make_bundle(tmp_path / "bundle")
    bundle = Bundle.load(bundle_dir)
    spec = PreprocessSpec.from_dict(bundle.manifest["input"]["preprocess"])
    engine = open_engine(bundle, backend="onnxruntime", threads=1)
    infer = lambda batch: np.concatenate([engine.infer(b[None]).copy() for b in batch])  # noqa: E731
    hop, look = int(HOP_S * spec.rate_hz), int(LOOKAHEAD_S * spec.rate_hz)
    recordings = [synth_recording(minutes=3.0, seed=s, rate_hz=100.0) for s in (1, 2)]
    timelines = [predict_recording(r, spec, infer, hop, look) for r in recordings]
    pooled = np.concatenate(timelines)
    knobs = {"on": np.quantile(pooled, 0.9, axis=0).tolist(), "off": np.quantile(pooled, 0.7, axis=0).tolist(),
             "min_duration_s": 0.5, "smoothing_s": 0.5, "refractory_s": 0.5}

    offline, streamed = [], []
    for k, (rec, timeline) in enumerate(zip(recordings, timelines)):
        labels_model_rate = rec.labels[np.minimum((np.arange(len(timeline)) * rec.rate_hz / spec.rate_hz)
                                                  .astype(int), rec.n_samples - 1)]
        off_events = detect_events(timeline, spec.rate_hz, classes=bundle.classes, **knobs)
        offline.append(event_metrics(labels_model_rate, off_events, spec.rate_hz))

        path = tmp_path / f"rec{k}.npz"
        write_recording(rec, path, "npz")
        out = tmp_path / f"events{k}.jsonl"
        config = build_config(None, [{"bundle": str(bundle_dir), "threads": 1, "backend": "onnxruntime",
                                      "source": {"kind": "replay", "path": str(path)},
                                      "stream": {"hop_s": HOP_S, "lookahead_s": LOOKAHEAD_S},
                                      "events": {"on": dict(zip(bundle.classes, knobs["on"])),
                                                 "off": dict(zip(bundle.classes, knobs["off"])),
                                                 **{k2: knobs[k2] for k2 in ("min_duration_s", "smoothing_s",
                                                                             "refractory_s")}},
                                      "sinks": [{"kind": "jsonl", "path": str(out)}],
                                      "log": {"status_interval_s": 0}}])
        counters = run(config)
        assert counters["balanced"] and counters["accepted"] == rec.n_samples
        messages = [json.loads(l) for l in out.read_text().splitlines()]
        events = [Event(m["class"], m["onset_s"], m["offset_s"], m["detect_s"], m["peak"])
                  for m in messages if m["type"] == "event"]
        assert len(events) == len(off_events) > 0
        streamed.append(event_metrics(labels_model_rate, events, spec.rate_hz))
        assert all(m["decided_s"] >= m["detect_s"] for m in messages)  # a decision never precedes its data

    s, o = pool_event_metrics(streamed), pool_event_metrics(offline)
    print("\nstreamed:", {k: v for k, v in s.items() if k != "latencies_s"})
    print("offline: ", {k: v for k, v in o.items() if k != "latencies_s"})
    assert s["episodes_true"] == o["episodes_true"] > 0
    for key in ("sensitivity", "false_alarms_per_hour", "latency_median_s", "latency_p90_s"):
        assert (math.isnan(s[key]) and math.isnan(o[key])) or s[key] == pytest.approx(o[key], abs=1e-3), key
