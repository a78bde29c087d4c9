"""Streaming fidelity: the daemon's own pipeline against the model offline under its declared normalization.

`measure` streams recordings through `deploy.stream.Pipeline` (the daemon's code, chunk by chunk, with the given
engine) and predicts them offline with `deploy.offline.predict_recording` under the spec as declared ("recording"
normalization included), on the same hop and look-ahead grid, so the only difference left is how the stream is
normalized. It reports, pooled over recordings:
- time called FOG (a sample inside an event, found as the daemon finds them: deploy.events.Detection) offline and
  streamed, and the difference in percentage points;
- decision agreement: the share of samples whose called/not-called status is the same;
- events offline and streamed, and those of one without an overlapping event in the other;
- the daemon's own per-class events, and how many fell on a background class (must be 0);
- time called FOG on FOG-free samples (labelled not FOG and valid; every sample of a recording without labels,
  which is declared FOG-free), offline and streamed: a detector that calls most of them is degenerate
  (toolkit.export.detector).
The look-ahead is a parameter of `offline` and `stream` (the look-ahead sweep of toolkit.export.lookahead); the engine
is wrapped in `Remembered`, so the same window is run once however many look-aheads combine it.
"""
from __future__ import annotations

import hashlib
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
BUNDLE = object()       # "the bundle's look-ahead" (a look-ahead of None is whole windows)


class Remembered:
    """An engine whose outputs are kept by input bytes: offline and streamed runs at several look-aheads run the
    same windows (the look-ahead only changes how their outputs are combined), so each window runs once. Outputs
    are returned read-only (callers copy what they keep, as from an engine's reused buffer)."""

    def __init__(self, engine):
        self.engine, self._seen = engine, {}
        self.input_shape, self.output_shape = engine.input_shape, engine.output_shape
        self.input_buffer = engine.input_buffer
        self.runs = 0

    def infer(self, x) -> np.ndarray:
        key = hashlib.blake2b(np.ascontiguousarray(x).tobytes(), digest_size=16).digest()
        out = self._seen.get(key)
        if out is None:
            out = np.array(self.engine.infer(x))
            out.flags.writeable = False
            self._seen[key] = out
            self.runs += 1
        return out


def fog_free(recording, n: int, rate_hz: float) -> np.ndarray:
    """(n,) True at the model-rate samples (nearest recording sample) labelled FOG-free and valid; every sample of
    a recording without labels (declared FOG-free)."""
    if recording.labels is None:
        return np.ones(n, bool)
    index = np.minimum(np.round(np.arange(n) * recording.rate_hz / rate_hz).astype(np.int64),
                       recording.n_samples - 1)
    free = np.asarray(recording.labels).max(axis=1)[index] <= 0.5
    if recording.mask is not None:
        free &= np.asarray(recording.mask, bool)[index]
    return free


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


def called(probs: np.ndarray, rate_hz: float, detection: Detection) -> tuple[np.ndarray, list]:
    """((n,) True inside an event, the events) of (n, C) probabilities, found as `detection` finds them."""
    events = detection.events(probs, rate_hz)
    return event_mask(events, len(probs), rate_hz), events


def compare(offline: np.ndarray, streamed: np.ndarray, rate_hz: float, detection: Detection, free=None) -> dict:
    """Figures of one recording: offline vs streamed (n, C) probabilities on the same grid, events as `detection`
    (the bundle's: event classes, any-FOG rule, mode) finds them; `free`: its FOG-free samples (`fog_free`)."""
    n = min(len(offline), len(streamed))
    columns, rule = detection.columns, detection.rule
    a, b = any_fog(offline[:n], columns, rule), any_fog(streamed[:n], columns, rule)
    (called_a, ev_a), (called_b, ev_b) = called(offline[:n], rate_hz, detection), called(streamed[:n], rate_hz,
                                                                                          detection)
    free = np.ones(n, bool) if free is None else np.asarray(free[:n], bool)
    return {"samples": n, "called_offline": int(called_a.sum()), "called_streamed": int(called_b.sum()),
            "agree": int((called_a == called_b).sum()), "abs_prob_diff": float(np.abs(a - b).sum()),
            "fog_free": int(free.sum()), "called_fog_free_offline": int((called_a & free).sum()),
            "called_fog_free_streamed": int((called_b & free).sum()),
            "events_offline": len(ev_a), "events_streamed": len(ev_b),
            "events_only_offline": _overlaps(ev_a, ev_b), "events_only_streamed": _overlaps(ev_b, ev_a)}


def pool(items: list[dict], background_events: int, daemon_events: int) -> dict:
    """Pooled figures over recordings (sums, then shares)."""
    total = {k: sum(i[k] for i in items) for k in items[0]}
    n = max(1, total.pop("samples"))
    off, on = 100.0 * total.pop("called_offline") / n, 100.0 * total.pop("called_streamed") / n
    free = total.pop("fog_free")
    free_off, free_on = (100.0 * total.pop(k) / free if free else None
                         for k in ("called_fog_free_offline", "called_fog_free_streamed"))
    figures = {"percent_time_called_fog_offline": off, "percent_time_called_fog_streamed": on,
               "difference_pp": on - off, "decision_agreement": total.pop("agree") / n,
               "mean_abs_prob_diff": total.pop("abs_prob_diff") / n,
               "percent_fog_free_called_offline": free_off, "percent_fog_free_called_streamed": free_on,
               "fog_free_samples": free, **total, "daemon_events": daemon_events, "background_events": background_events}
    figures["passed"] = bool(abs(on - off) <= LIMIT_PP and figures["mean_abs_prob_diff"] <= LIMIT_PROB
                             and background_events == 0)
    return figures


class Fidelity:
    """One bundle's engine and settings; `offline` once per recording and look-ahead, `stream` per normalization
    option and look-ahead (the engine's outputs remembered, `Remembered`)."""

    def __init__(self, spec, engine, classes, events, columns, rule: str):
        """`events`: the bundle's deploy.contract.events.EventSettings (its hop and look-ahead make the grid)."""
        self.spec, self.engine, self.classes = spec, Remembered(engine), list(classes)
        self.events, self.columns, self.rule = events, list(columns), rule
        self.detection = Detection.of(events, self.classes, self.columns, rule)
        self.hop, self.look = events.hop_samples(spec.rate_hz), events.lookahead_samples(spec.rate_hz)
        self.infer = batch_infer(self.engine)
        self._offline = {}

    def _look(self, look):
        return self.look if look is BUNDLE else look

    def offline(self, i: int, recording, look=BUNDLE) -> np.ndarray:
        """Recording i offline under the declared normalization, with look-ahead `look` samples (None: whole
        windows; default the bundle's)."""
        key = (i, self._look(look))
        if key not in self._offline:
            self._offline[key] = predict_recording(recording, self.spec, self.infer, self.hop, key[1])
        return self._offline[key]

    def streamed(self, recordings, spec, session=None, look=BUNDLE):
        """Per recording, (streamed (n, C) probabilities, the daemon's events) with `spec`, look-ahead `look`;
        `session()`, called once per recording (each is a session of its own), gives the normalizer factory of
        deploy.wearer.stream_setup."""
        settings = StreamSettings(source_units=recordings[0].units, hop_samples=self.hop,
                                  lookahead_samples=self._look(look), events=self.events,
                                  event_columns=tuple(self.columns), any_fog=self.rule)
        for rec in recordings:
            settings = replace(settings, source_units=rec.units, source_rate_hz=rec.rate_hz,
                               normalizer=session() if session else None)
            yield stream_recording(rec, spec, self.engine, self.classes, settings)

    def stream(self, recordings, spec, session=None, look=BUNDLE) -> dict:
        """Pooled figures of streaming `recordings` with `spec` against offline, both at look-ahead `look`."""
        items, background, daemon = [], 0, 0
        event_classes = set(self.detection.detector_classes)
        for i, (rec, (streamed, events)) in enumerate(zip(recordings, self.streamed(recordings, spec, session,
                                                                                    look))):
            offline = self.offline(i, rec, look)
            items.append(compare(offline, streamed, self.spec.rate_hz, self.detection,
                                 fog_free(rec, len(offline), self.spec.rate_hz)))
            daemon += len(events)
            background += sum(ev.cls not in event_classes for ev in events)
        return pool(items, background, daemon)
