"""Streaming fidelity: the daemon's own pipeline against the model offline under its declared normalization.

`measure` streams recordings through `deploy.stream.Pipeline` (the daemon's code, chunk by chunk, with the given
engine) and predicts them offline with `deploy.offline.predict_recording` under the spec as declared ("recording"
normalization included), on the same hop and look-ahead grid, so the only difference left is how the stream is
normalized. It reports, pooled over recordings:
- time called FOG (a sample inside an event, found as the daemon finds them: deploy.events.Detection) offline and
  streamed, and the difference in percentage points;
- decision agreement: the share of samples whose called/not-called status is the same;
- events offline and streamed, and those of one without an overlapping event in the other;
- the daemon's own per-class events, and how many fell on a background class (must be 0).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from deploy.counters import Counters
from deploy.event_classes import any_fog
from deploy.offline import batch_infer, predict_recording
from deploy.events import Detection
from deploy.scoring import event_mask
from deploy.sources import Chunk
from deploy.stream import Pipeline, StreamSettings

LIMIT_PP = 1.0          # export warns when streamed time called FOG differs from offline by more than this
LIMIT_PROB = 0.05       # ... or when the mean |any-FOG probability| difference exceeds this
_CHUNK_S = 1.0          # the stream arrives in 1 s chunks


def stream_recording(recording, spec, engine, classes, settings: StreamSettings):
    """(per-sample probabilities (n', C) at the model rate, the daemon's finished events) of one replayed recording."""
    rows, events = [], []
    pipeline = Pipeline(spec, engine, classes, Counters(), settings,
                        on_probs=lambda t0, p, rate: rows.append(np.array(p)),
                        on_event=lambda kind, ev, decided: events.append(ev) if kind == "event" else None)
    t = np.arange(recording.n_samples) / recording.rate_hz
    step = max(1, int(round(_CHUNK_S * recording.rate_hz)))
    for lo in range(0, recording.n_samples, step):
        pipeline.push(Chunk(t[lo:lo + step], recording.acc[lo:lo + step]))
    pipeline.end_segment()
    return (np.concatenate(rows) if rows else np.zeros((0, len(classes)))), events


def _overlaps(a, b) -> int:
    """Events of `a` that overlap no event of `b`."""
    return sum(not any(x.onset_s < (y.offset_s or np.inf) and y.onset_s < (x.offset_s or np.inf) for y in b)
               for x in a)


def compare(offline: np.ndarray, streamed: np.ndarray, rate_hz: float, detection: Detection) -> dict:
    """Figures of one recording: offline vs streamed (n, C) probabilities on the same grid, events as `detection`
    (the bundle's: event classes, any-FOG rule, mode) finds them."""
    n = min(len(offline), len(streamed))
    columns, rule = detection.columns, detection.rule
    a, b = any_fog(offline[:n], columns, rule), any_fog(streamed[:n], columns, rule)
    ev_a, ev_b = detection.events(offline[:n], rate_hz), detection.events(streamed[:n], rate_hz)
    called_a, called_b = event_mask(ev_a, n, rate_hz), event_mask(ev_b, n, rate_hz)
    return {"samples": n, "called_offline": int(called_a.sum()), "called_streamed": int(called_b.sum()),
            "agree": int((called_a == called_b).sum()), "abs_prob_diff": float(np.abs(a - b).sum()),
            "events_offline": len(ev_a), "events_streamed": len(ev_b),
            "events_only_offline": _overlaps(ev_a, ev_b), "events_only_streamed": _overlaps(ev_b, ev_a)}


def pool(items: list[dict], background_events: int, daemon_events: int) -> dict:
    """Pooled figures over recordings (sums, then shares)."""
    total = {k: sum(i[k] for i in items) for k in items[0]}
    n = max(1, total.pop("samples"))
    off, on = 100.0 * total.pop("called_offline") / n, 100.0 * total.pop("called_streamed") / n
    figures = {"percent_time_called_fog_offline": off, "percent_time_called_fog_streamed": on,
               "difference_pp": on - off, "decision_agreement": total.pop("agree") / n,
               "mean_abs_prob_diff": total.pop("abs_prob_diff") / n, **total,
               "daemon_events": daemon_events, "background_events": background_events}
    figures["passed"] = bool(abs(on - off) <= LIMIT_PP and figures["mean_abs_prob_diff"] <= LIMIT_PROB
                             and background_events == 0)
    return figures


class Fidelity:
    """One bundle's engine and settings; `offline` once per recording, `stream` per normalization option."""

    def __init__(self, spec, engine, classes, events, columns, rule: str):
        """`events`: the bundle's deploy.contract.events.EventSettings (its hop and look-ahead make the grid)."""
        self.spec, self.engine, self.classes = spec, engine, list(classes)
        self.events, self.columns, self.rule = events, list(columns), rule
        self.detection = Detection.of(events, self.classes, self.columns, rule)
        self.hop, self.look = events.hop_samples(spec.rate_hz), events.lookahead_samples(spec.rate_hz)
        self.infer = batch_infer(engine)
        self._offline = {}

    def offline(self, i: int, recording) -> np.ndarray:
        if i not in self._offline:
            self._offline[i] = predict_recording(recording, self.spec, self.infer, self.hop, self.look)
        return self._offline[i]

    def stream(self, recordings, spec, session=None) -> dict:
        """Pooled figures of streaming `recordings` with `spec` against offline; `session()`, called once per
        recording (each is a session of its own), gives the normalizer factory of deploy.wearer.stream_setup."""
        settings = StreamSettings(source_units=recordings[0].units, hop_samples=self.hop,
                                  lookahead_samples=self.look, events=self.events,
                                  event_columns=tuple(self.columns), any_fog=self.rule)
        items, background, daemon = [], 0, 0
        event_classes = {self.classes[c] for c in self.columns}
        for i, rec in enumerate(recordings):
            settings = replace(settings, source_units=rec.units, source_rate_hz=rec.rate_hz,
                               normalizer=session() if session else None)
            streamed, events = stream_recording(rec, spec, self.engine, self.classes, settings)
            items.append(compare(self.offline(i, rec), streamed, self.spec.rate_hz, self.detection))
            daemon += len(events)
            background += sum(ev.cls not in event_classes for ev in events)
        return pool(items, background, daemon)
