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

`Detection` is how a model's probabilities become events, the one rule the daemon's pipeline, `toolkit evaluate`
(deploy.scoring), `toolkit score` and export's fidelity step share: the event classes (background ones left out),
and, by the settings' `mode`, one any-FOG detector ("any": the any-FOG probability of deploy.event_classes, class
`ANY_FOG_CLASS`, the least strict thresholds, EventSettings.any_fog) or one detector per event class ("per_class").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deploy.contract import CLASSES, EVENT_DEFAULTS
from deploy.contract.events import EventSettings, thresholds_per_class
from deploy.event_classes import any_fog


@dataclass(frozen=True)
class Event:
    cls: str
    onset_s: float
    offset_s: float | None
    detect_s: float
    peak: float
    cut: str | None = None   # why it was cut short: still going when the data stopped (offset_s is where they did)

    @property
    def duration_s(self) -> float | None:
        return None if self.offset_s is None else self.offset_s - self.onset_s


DEFAULT_SETTINGS = EVENT_DEFAULTS  # defined in deploy.contract (the bundle's vocabulary); this name stays importable


def _first(mask: np.ndarray) -> int | None:
    """Index of the first True, or None."""
    k = int(mask.argmax()) if len(mask) else 0
    return k if len(mask) and mask[k] else None


def _raise_peak(st, values: np.ndarray, at_least: float | None = None) -> None:
    """st.peak = max(st.peak, values), ignoring NaN (and values below `at_least`)."""
    if at_least is not None:
        values = values[values >= at_least]
    if len(values):
        top = np.fmax.reduce(values)
        if top > st.peak:
            st.peak = float(top)


class _ClassState:
    def __init__(self):
        self.start = None       # candidate start index (first sample with s >= off)
        self.seen_on = False
        self.confirmed = False
        self.detect = None
        self.peak = 0.0
        self.low_since = None   # index where s fell below off while confirmed (refractory pending)


class EventDetector:
    def __init__(self, classes=CLASSES, rate_hz: float = 64.0, on=DEFAULT_SETTINGS["on"], off=DEFAULT_SETTINGS["off"],
                 min_duration_s: float = DEFAULT_SETTINGS["min_duration_s"],
                 smoothing_s: float = DEFAULT_SETTINGS["smoothing_s"],
                 refractory_s: float = DEFAULT_SETTINGS["refractory_s"], t0_s: float = 0.0):
        self.classes = tuple(classes)
        self.rate_hz = float(rate_hz)
        on, off = thresholds_per_class(on, off, self.classes, exact=False)   # the contract's one threshold check
        self.on, self.off = np.array(on), np.array(off)
        self.taps = max(1, int(round(smoothing_s * rate_hz)))
        self.min_len = max(1, int(round(min_duration_s * rate_hz)))
        self.refractory = int(round(refractory_s * rate_hz))
        self.lag_s = (self.taps - 1) / 2.0 / self.rate_hz
        self._prefix = np.zeros((self.taps, 2, len(self.classes)))   # prefix sums and counts, see _smooth
        self._grow(64)
        self._nan_reach = 0                                 # see _smooth
        self._n = 0                                         # samples seen so far
        self._time0 = float(t0_s)                           # time of sample 0
        self._states = [_ClassState() for _ in self.classes]
        self.started: list[Event] = []

    def time_of(self, index: int) -> float:
        return self._time0 + index / self.rate_hz

    def _smooth(self, chunk: np.ndarray) -> np.ndarray:
        """Trailing mean of the last `taps` raw samples, NaN samples left out (nanmean), O(len(chunk)) per call.

        Prefix sums P(k) = sum of x[0:k] and Q(k) = number of non-NaN samples in x[0:k] run over the whole stream
        (P(k) = Q(k) = 0 for k <= 0, so the first samples average over what exists); sample g's mean is
        (P(g+1) - P(g+1-taps)) / (Q(g+1) - Q(g+1-taps)). `_prefix` holds the last `taps` rows of (P, Q) ahead of
        the new ones: np.add.accumulate adds strictly in order, so every P(k) is the same float however the
        stream is chunked, and chunked updates stay exactly one update. The differences lose about
        eps * P(k) ~ 1e-16 x samples seen: after a month at 64 Hz that is 1e-9 on a probability.
        """
        m, taps = len(chunk), self.taps
        if taps + m > len(self._prefix):
            self._grow(m)
        pq = self._prefix
        new = pq[taps:taps + m]
        np.copyto(new[:, 0], chunk)
        missing = np.isnan(new[:, 0], out=self._missing[:m])
        some_missing = missing.any()
        if some_missing:
            self._nan_reach = self._n + m + taps   # windows up to here may hold no valid sample at all
            new[:, 0][missing] = 0.0
            np.logical_not(missing, out=missing)
            np.copyto(new[:, 1], missing)
        else:
            new[:, 1] = 1.0
        np.add.accumulate(pq[taps - 1:taps + m], axis=0, out=pq[taps - 1:taps + m])
        diff = np.subtract(pq[taps:taps + m], pq[:m], out=self._diff[:m])  # window sums and counts
        out = self._out[:m]
        if self._n < self._nan_reach:
            with np.errstate(invalid="ignore", divide="ignore"):  # an all-NaN window gives NaN, as nanmean
                np.divide(diff[:, 0], diff[:, 1], out=out)
        else:                                                     # every count >= 1
            np.divide(diff[:, 0], diff[:, 1], out=out)
        pq[:taps] = pq[m:m + taps]         # the last taps rows, for the next call
        return out

    def _grow(self, m: int) -> None:
        # scratch sized for the largest chunk seen, so steady-state updates allocate nothing
        rows = max(m, 64, 2 * (len(self._prefix) - self.taps))
        prefix = np.zeros((self.taps + rows, 2, len(self.classes)))
        prefix[:self.taps] = self._prefix[:self.taps]
        self._prefix = prefix
        self._diff = np.empty((rows, 2, len(self.classes)))
        self._missing = np.empty((rows, len(self.classes)), bool)
        self._reached = np.empty((rows, len(self.classes)), bool)
        self._out = np.empty((rows, len(self.classes)))

    def update(self, probs_chunk, t0_s: float | None = None) -> list[Event]:
        """Feed (n, C) probabilities (C = len(classes)); returns the episodes that finished in this chunk.
        `t0_s`, if given, is the time of this chunk's first sample (times of earlier samples shift with it)."""
        probs = np.asarray(probs_chunk).reshape(-1, len(self.classes))
        if t0_s is not None:
            self._time0 = float(t0_s) - self._n / self.rate_hz
        self.started = []
        if len(probs) == 0:
            return []
        smooth = self._smooth(probs)
        # one comparison for all classes: an idle class with nothing >= off in this chunk has nothing to do
        reached = np.greater_equal(smooth, self.off, out=self._reached[:len(probs)]).any(axis=0)
        events = []
        for c, state in enumerate(self._states):
            if state.start is not None or reached[c]:
                events += self._run(c, state, smooth[:, c], self._n)
        self._n += len(probs)
        if len(events) > 1:
            events.sort(key=lambda e: (e.offset_s, e.onset_s, e.cls))
        return events

    def _event(self, c, st, end_index) -> Event:
        return Event(self.classes[c], max(self._time0, self.time_of(st.start) - self.lag_s),
                     None if end_index is None else max(self._time0, self.time_of(end_index) - self.lag_s),
                     self.time_of(st.detect), float(st.peak))

    def _run(self, c: int, st: _ClassState, s: np.ndarray, base: int) -> list[Event]:
        """The state machine of the module docstring over one chunk, jumping with numpy from one state change to
        the next (no Python step per sample). NaN compares false everywhere: it neither starts, confirms, ends nor
        raises the peak of an episode, as in a plain per-sample loop."""
        on, off = self.on[c], self.off[c]
        out = []
        i, n = 0, len(s)
        while i < n:
            if st.start is None:                         # idle: the next sample >= off starts a candidate
                k = _first(s[i:] >= off)
                if k is None:
                    break
                i += k
                st.start, st.seen_on, st.confirmed, st.peak, st.low_since = base + i, False, False, 0.0, None
            if st.low_since is None:                     # candidate or confirmed episode: runs while s >= off
                k = _first(s[i:] < off)
                j = n if k is None else i + k            # s[i:j] is >= off (or NaN)
                if not st.confirmed:
                    i = self._try_confirm(c, st, s, i, j, base)
                _raise_peak(st, s[i:j])
                if j == n:
                    break
                if not st.confirmed:                     # fell below off unconfirmed: dropped
                    st.start = None
                else:
                    st.low_since = base + j
                    if self.refractory == 0:
                        out.append(self._event(c, st, base + j))
                        st.start = None
                i = j + 1
                continue
            # confirmed, below off since low_since: back within the refractory period (s >= on) or ended
            end = st.low_since + self.refractory - base  # the sample where the refractory wait runs out
            k = _first(s[i:min(n, end + 1)] >= on)
            if k is not None:                            # same episode goes on
                _raise_peak(st, s[i:i + k + 1], off)
                st.low_since = None
                i += k + 1
                continue
            if end >= n:
                _raise_peak(st, s[i:], off)
                break
            _raise_peak(st, s[i:end + 1], off)
            out.append(self._event(c, st, st.low_since))
            st.start = None
            i = end + 1
        return out

    def _try_confirm(self, c, st, s, i, j, base) -> int:
        """Within s[i:j] (all >= off or NaN) find the confirming sample: it has s >= off, s >= on has been seen at
        or before it, and the candidate has lasted min_len samples. Returns where to continue (i or after it)."""
        k = i if st.seen_on else (None if (f := _first(s[i:j] >= self.on[c])) is None else i + f)
        if k is None:
            return i
        k = max(k, st.start + self.min_len - 1 - base)
        if k >= j:
            st.seen_on = True
            return i
        f = _first(s[k:j] >= self.off[c])                # skip NaN samples: they confirm nothing
        if f is None:
            st.seen_on = True
            return i
        k += f
        _raise_peak(st, s[i:k + 1])
        st.seen_on, st.confirmed, st.detect = True, True, base + k
        self.started.append(self._event(c, st, None))
        return k + 1

    def flush(self, reason: str = "the stream ended") -> list[Event]:
        """End of stream: close every open confirmed episode at the time just after the last sample; one still
        going is cut there, with `reason`."""
        out = []
        for c, st in enumerate(self._states):
            if st.start is not None and st.confirmed:
                event = self._event(c, st, st.low_since)
                if st.low_since is None:  # still frozen when the stream ended: it ends with the stream
                    event = Event(event.cls, event.onset_s, self.time_of(self._n), event.detect_s, event.peak,
                                  cut=reason)
                out.append(event)
            st.start, st.low_since = None, None
        return sorted(out, key=lambda e: (e.offset_s, e.onset_s, e.cls))


def detect_events(probs: np.ndarray, rate_hz: float, **kwargs) -> list[Event]:
    """Offline: one update + flush."""
    det = EventDetector(rate_hz=rate_hz, **kwargs)
    return sorted(det.update(probs) + det.flush(), key=lambda e: (e.onset_s, e.cls))


ANY_FOG_CLASS = "FOG"   # the class an any-FOG event names


@dataclass(frozen=True)
class Detection:
    """How (n, C) probabilities of a model with `classes` become events (see the module docstring). `columns`: the
    event classes' indexes (None: all), `rule`: the any-FOG rule ("max" | "sum", the manifest's output.any_fog)."""
    settings: EventSettings
    classes: tuple
    columns: tuple | None = None
    rule: str = "max"

    @classmethod
    def of(cls, settings, classes, columns=None, rule: str = "max") -> "Detection":
        settings = settings if isinstance(settings, EventSettings) else EventSettings.resolve(settings)
        return cls(settings, tuple(classes), None if columns is None else tuple(columns), rule)

    @classmethod
    def of_bundle(cls, bundle, settings=None) -> "Detection":
        """A bundle's detection, with `settings` (default: the bundle's events)."""
        out = bundle.output
        return cls.of(settings if settings is not None else bundle.events, out.classes, out.event_columns,
                      out.any_fog)

    @property
    def event_columns(self) -> list[int]:
        return list(range(len(self.classes))) if self.columns is None else list(self.columns)

    @property
    def detector_classes(self) -> tuple:
        """What the detector's events name: ANY_FOG_CLASS, or each event class."""
        return (ANY_FOG_CLASS,) if self.settings.any_event else self.event_classes

    def detector_kwargs(self) -> dict:
        if self.settings.any_event:
            return self.settings.any_fog(self.event_classes).detector_kwargs()
        return self.settings.detector_kwargs()

    @property
    def event_classes(self) -> tuple:
        return tuple(self.classes[i] for i in self.event_columns)

    def rows(self, probs: np.ndarray) -> np.ndarray:
        """The detector's input from (n, C) probabilities (or an (n,) any-FOG score, which is one stream whatever
        the mode): (n, 1) any-FOG or (n, event classes)."""
        probs = np.asarray(probs)
        if probs.ndim == 1:
            return probs[:, None]
        if self.settings.any_event:
            return any_fog(probs, self.columns, self.rule)[:, None]
        return probs if self.columns is None else probs[:, list(self.columns)]

    def detector(self, rate_hz: float, t0_s: float = 0.0) -> EventDetector:
        return EventDetector(self.detector_classes, rate_hz, **self.detector_kwargs(), t0_s=t0_s)

    def events(self, probs: np.ndarray, rate_hz: float) -> list[Event]:
        """Offline: the events of a whole timeline, in onset order (an (n,) score gives one stream)."""
        probs = np.asarray(probs)
        det = self.detector(rate_hz) if probs.ndim == 2 else \
            EventDetector((ANY_FOG_CLASS,), rate_hz, **self.settings.any_fog(self.event_classes).detector_kwargs())
        return sorted(det.update(self.rows(probs)) + det.flush(), key=lambda e: (e.onset_s, e.cls))
