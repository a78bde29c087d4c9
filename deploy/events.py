"""Freezing episodes from per-sample probabilities: smoothing, hysteresis, minimum duration, refractory merge.

Per class, independently:
1. smooth: trailing (causal) moving average over `smoothing_s` (fewer samples at the very start);
2. an episode *candidate* runs while the smoothed probability s >= off; it starts where s rose to >= off;
3. the candidate is *confirmed* at the first sample where it has reached s >= on at least once and has lasted
   `min_duration_s` (onset to this sample inclusive): that sample's time is `detect_s` (the moment a cue could
   fire; the daemon may replace it with wall-clock time). A candidate that falls below `off` before that is dropped;
4. a confirmed episode ends at the first sample with s < off (`offset_s`), unless s reaches `on` again within
   `refractory_s`, in which case it continues as the same episode (no second cue);
5. onset_s and offset_s are moved back by the smoothing filter's delay ((N - 1) / 2 samples for N taps);
   `peak` is the largest smoothed probability within the episode.
`update` returns finished episodes; confirmed-but-ongoing ones of the last update are in `started` (offset_s None),
for real-time cueing. Chunked updates give exactly the events of one update; offline use is `update` + `flush`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from deploy.recording import CLASSES


@dataclass(frozen=True)
class Event:
    cls: str
    onset_s: float
    offset_s: float | None
    detect_s: float
    peak: float

    @property
    def duration_s(self) -> float | None:
        return None if self.offset_s is None else self.offset_s - self.onset_s


def _per_class(value, classes, name) -> np.ndarray:
    if isinstance(value, dict):
        missing = [c for c in classes if c not in value]
        if missing:
            raise ValueError(f"{name} lacks thresholds for {missing}")
        return np.array([float(value[c]) for c in classes])
    arr = np.broadcast_to(np.asarray(value, dtype=float), (len(classes),))
    return arr.copy()


class _ClassState:
    def __init__(self):
        self.start = None       # candidate start index (first sample with s >= off)
        self.seen_on = False
        self.confirmed = False
        self.detect = None
        self.peak = 0.0
        self.low_since = None   # index where s fell below off while confirmed (refractory pending)


class EventDetector:
    def __init__(self, classes=CLASSES, rate_hz: float = 64.0, on=0.5, off=0.3, min_duration_s: float = 0.5,
                 smoothing_s: float = 0.5, refractory_s: float = 0.0, t0_s: float = 0.0):
        self.classes = tuple(classes)
        self.rate_hz = float(rate_hz)
        self.on, self.off = _per_class(on, self.classes, "on"), _per_class(off, self.classes, "off")
        if np.any(self.off > self.on):
            raise ValueError(f"each off threshold must be <= its on threshold (on={self.on}, off={self.off})")
        self.taps = max(1, int(round(smoothing_s * rate_hz)))
        self.min_len = max(1, int(round(min_duration_s * rate_hz)))
        self.refractory = int(round(refractory_s * rate_hz))
        self.lag_s = (self.taps - 1) / 2.0 / self.rate_hz
        self._history = np.full((self.taps - 1, len(self.classes)), np.nan)   # last taps-1 raw samples
        self._n = 0                                         # samples seen so far
        self._time0 = float(t0_s)                           # time of sample 0
        self._states = [_ClassState() for _ in self.classes]
        self.started: list[Event] = []

    def time_of(self, index: int) -> float:
        return self._time0 + index / self.rate_hz

    def _smooth(self, chunk: np.ndarray) -> np.ndarray:
        # History starts as NaN so the first samples average over what exists; nanmean everywhere keeps every
        # sample's sum identical however the stream is chunked.
        full = np.concatenate([self._history, chunk])
        smooth = np.nanmean(sliding_window_view(full, self.taps, axis=0), axis=-1)
        self._history = full[len(full) - (self.taps - 1):]
        return smooth

    def update(self, probs_chunk, t0_s: float | None = None) -> list[Event]:
        """Feed (n, C) probabilities (C = len(classes)); returns the episodes that finished in this chunk.
        `t0_s`, if given, is the time of this chunk's first sample (times of earlier samples shift with it)."""
        probs = np.asarray(probs_chunk, dtype=np.float64).reshape(-1, len(self.classes))
        if t0_s is not None:
            self._time0 = float(t0_s) - self._n / self.rate_hz
        self.started = []
        if len(probs) == 0:
            return []
        smooth = self._smooth(probs)
        events = []
        for c, state in enumerate(self._states):
            events += self._run(c, state, smooth[:, c], self._n)
        self._n += len(probs)
        return sorted(events, key=lambda e: (e.offset_s, e.onset_s, e.cls))

    def _event(self, c, st, end_index) -> Event:
        return Event(self.classes[c], max(self._time0, self.time_of(st.start) - self.lag_s),
                     None if end_index is None else max(self._time0, self.time_of(end_index) - self.lag_s),
                     self.time_of(st.detect), float(st.peak))

    def _run(self, c: int, st: _ClassState, s: np.ndarray, base: int) -> list[Event]:
        on, off = self.on[c], self.off[c]
        out = []
        i, n = 0, len(s)
        while i < n:
            g = base + i
            v = s[i]
            if st.start is None:                         # idle: jump to the next sample >= off
                above = np.flatnonzero(s[i:] >= off)
                if above.size == 0:
                    break
                i += int(above[0])
                st.start, st.seen_on, st.confirmed, st.peak, st.low_since = base + i, False, False, 0.0, None
                continue
            if v >= off:
                st.peak = max(st.peak, v)
                st.seen_on = st.seen_on or v >= on
                if st.low_since is not None and v >= on:  # back within the refractory period: same episode
                    st.low_since = None
                if not st.confirmed and st.seen_on and g - st.start + 1 >= self.min_len:
                    st.confirmed, st.detect = True, g
                    self.started.append(self._event(c, st, None))
            if v < off or (st.low_since is not None):
                if not st.confirmed:
                    st.start = None                       # dropped: too short or never reached `on`
                elif st.low_since is None:
                    st.low_since = g
                    if self.refractory == 0:
                        out.append(self._event(c, st, g))
                        st.start = None
                elif g - st.low_since >= self.refractory:
                    out.append(self._event(c, st, st.low_since))
                    st.start = None
            i += 1
        return out

    def flush(self) -> list[Event]:
        """End of stream: close every open confirmed episode at the time just after the last sample."""
        out = []
        for c, st in enumerate(self._states):
            if st.start is not None and st.confirmed:
                event = self._event(c, st, st.low_since)
                if st.low_since is None:  # still frozen when the stream ended: it ends with the stream
                    event = Event(event.cls, event.onset_s, self.time_of(self._n), event.detect_s, event.peak)
                out.append(event)
            st.start, st.low_since = None, None
        return sorted(out, key=lambda e: (e.offset_s, e.onset_s, e.cls))


def detect_events(probs: np.ndarray, rate_hz: float, **kwargs) -> list[Event]:
    """Offline: one update + flush."""
    det = EventDetector(rate_hz=rate_hz, **kwargs)
    return sorted(det.update(probs) + det.flush(), key=lambda e: (e.onset_s, e.cls))
