"""The streaming pipeline: clean samples -> model-rate ring buffer -> a window every hop -> engine -> per-sample
probability timeline -> events. Per-hop outputs equal `deploy.offline.predict_recording` on the same signal.

Grid (see deploy/offline.py, the single definition): window k ends at e = (k + 1) * hop and covers [e - W, e);
positions before the segment start hold its first sample, positions past its end (at `flush`) its last sample.
A window contributes to its last `keep` samples, keep = min(W, (lookahead // hop + 1) * hop), so a sample is
decided after at most `keep` samples of right context: the look-ahead is the latency/accuracy dial.
lookahead None = whole windows (classic overlap averaging, up to W - hop of look-ahead). A per-window model (output
(1, C)) streams alike: its decision counts for each of those `keep` samples (deploy.offline.output_per).

Hot path: the window is read from the ring and handed to a `deploy.batching.WindowBatcher`, which z-scores it
(`deploy.preprocess.zscore_`, the function `patchify` uses) in pre-allocated scratch and scatters it into a row of
the engine's input with an index map derived once from `patchify` (checked against `patchify` at start). The
single-wearer daemon's batcher runs each window as soon as it is due; the gateway's (deploy.gateway) collects the
windows of every wearer due at a hop and runs them as one batch. Either way a window's output comes back through
`window_done`, in the order the windows fell due, and only then are its samples decided: the same code, the same
numbers. The decided probabilities handed downstream are a view of scratch, valid during the callback (copy them to
keep them).
"""
from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, replace

import numpy as np

from deploy.batching import WindowBatcher
from deploy.contract.events import EventSettings
from deploy.errors import FogError
from deploy.events import Detection
from deploy.intake import MAX_G, RESET, Intake
from deploy.offline import contribution, output_per
from deploy.preprocess import STANDARD_GRAVITY, PreprocessSpec, StreamingPreparer, unpatchify

log = logging.getLogger("deploy.stream")


GAP_REASON = "a gap in the sensor's data longer than stream.max_gap_s ended the segment"


def streaming_spec(spec: PreprocessSpec) -> PreprocessSpec:
    """'recording' normalization needs the whole recording: substitute 'running' (with a warning)."""
    if spec.normalization == "recording":
        log.warning("normalization 'recording' cannot stream: using 'running' (tau %.0f s) instead; expect small "
                    "differences from offline evaluation with 'recording'", spec.running_tau_s)
        return replace(spec, normalization="running")
    return spec


@dataclass(frozen=True)
class StreamSettings:
    """How a stream is read, cut and judged; the daemon fills it from the manifest, its config and the source."""
    source_units: str                      # units of the incoming samples ("g" | "m/s^2")
    source_rate_hz: float | None = None    # their nominal rate (None: the model rate)
    hop_samples: int | None = None         # model-rate samples between windows (None: the events' hop_s)
    lookahead_samples: int | None = None   # right context a sample waits for (None: whole windows)
    events: EventSettings | dict | None = None   # event settings (a partial dict: EventSettings.resolve completes it)
    live: bool = False                     # a live source: windows are skipped while behind real time
    max_gap_s: float = 0.5                 # gaps up to this are interpolated, longer ones end the segment
    max_behind_s: float = 1.0              # how far behind real time a live window may still run
    event_columns: tuple | None = None     # classes that raise events (None: all; deploy.event_classes)
    any_fog: str = "max"                   # how any-FOG is formed from them (the manifest's output.any_fog)
    normalizer: object = None              # () -> chunk normalizer replacing the spec's (deploy.wearer)


_HOP, _SKIPPED, _FINAL = "hop", "skipped", "final"   # what a due window is: a hop, one skipped, a segment's last


class Pipeline:
    """Feeds chunks from a source through intake, preprocessing, engine and events; calls back with outputs.

    on_probs(t_first_s, probs (m, C) float32, rate_hz): decided per-sample probabilities, in order.
    on_event(kind, event, decided_s): kind "onset" (confirmed, ongoing) or "event" (finished episode).
    `settings` (a StreamSettings) may also be given as its fields, as keywords.
    """

    def __init__(self, spec: PreprocessSpec, engine, classes, counters, settings: StreamSettings | None = None, *,
                 on_probs=None, on_event=None, windows: WindowBatcher | None = None, **settings_fields):
        """`windows`: the batcher this stream shares with others (the gateway); None: one of its own over `engine`
        that runs each window as soon as it is due (`engine` may then be None when `windows` is given)."""
        self.spec = streaming_spec(spec)
        self.engine, self.classes, self.counters = engine, list(classes), counters
        self.on_probs, self.on_event = on_probs, on_event
        self._apply(settings or StreamSettings(**settings_fields))
        self.intake = Intake(self.source_rate, counters, max_gap_s=self.settings.max_gap_s,
                             max_abs=MAX_G * (STANDARD_GRAVITY if self.source_units == "m/s^2" else 1.0))
        self.windows = windows or WindowBatcher(engine, self.spec, immediate=True)
        if self.windows.encoder.spec != self.spec:
            raise FogError("the shared batcher encodes windows for another preprocessing spec than this stream's "
                           "(a bug: build it from the same streaming spec)")
        self.per = output_per(self.windows.output_shape, self.spec)
        self.tail_rows = self._tail_rows()
        self._allocate(n_classes=self.windows.output_shape[-1])
        self._due: deque = deque()   # (window end, arrival, what) of hops whose decision waits for a window
        self._segment_open = False

    def _apply(self, settings: StreamSettings) -> None:
        """The stream's geometry at the model rate: window W, hop, and `keep` (the samples a window decides)."""
        self.settings = settings
        self.rate = float(self.spec.rate_hz)
        self.source_units = settings.source_units
        self.source_rate = float(settings.source_rate_hz or self.rate)
        self.W = self.spec.window
        self.event_settings = EventSettings.resolve(settings.events)
        self.hop = int(settings.hop_samples or min(self.W, self.event_settings.hop_samples(self.rate)))
        if not 1 <= self.hop <= self.W:
            raise FogError(f"hop of {self.hop} samples must be between 1 and the window ({self.W})")
        self.keep = contribution(self.W, self.hop, settings.lookahead_samples)
        self.lookahead_samples = settings.lookahead_samples
        self.live, self.max_behind_s = settings.live, float(settings.max_behind_s)
        # what the detector sees and names: one any-FOG stream or the event classes, as the events' mode says
        self.detection = Detection.of(self.event_settings, self.classes, settings.event_columns, settings.any_fog)

    def _tail_rows(self) -> np.ndarray:
        """Output rows of a window's last `keep` samples: per sample, per patch, or the one row of a window."""
        if self.per == "patch":
            rows = unpatchify(np.arange(self.spec.n_patches)[None, :, None], self.spec.patch)[0, :, 0]
        else:
            rows = np.arange(self.W) if self.per == "sample" else np.zeros(self.W, np.intp)
        return rows[self.W - self.keep:].astype(np.intp)

    def _allocate(self, n_classes: int) -> None:
        """The ring buffer and the scratch of the hot path, allocated once."""
        self.n_classes = n_classes
        self.cap = 4 * (self.W + self.keep + self.hop)
        self.data = np.zeros((self.cap, 3), np.float32)
        self.total = np.zeros((self.cap, self.n_classes))
        self.count = np.zeros(self.cap, np.int64)
        self.window = np.zeros((self.W, 3), np.float32)
        self.contrib = np.zeros((self.keep, self.n_classes), np.float32)
        self.probs = np.zeros((self.cap, self.n_classes), np.float32)   # decided probabilities handed downstream
        self.last_row = np.zeros(self.n_classes, np.float32)

    # ------------------------------------------------------------------ segments

    def _start_segment(self, t_first: float) -> None:
        self.t0 = t_first
        self.n = self.base = self.decided = self.newest = 0
        self.e_next = self.hop
        self.count[:] = 0
        self.total[:] = 0.0
        self.first = None
        # units, resampling and running normalization: the same code as offline `prepare`, chunk by chunk
        self.preparer = StreamingPreparer(self.spec, self.source_rate, self.source_units)
        if self.settings.normalizer is not None:
            self.preparer.normalizer = self.settings.normalizer()
        self.detector = self.detection.detector(self.rate, t0_s=t_first)
        self._segment_open = True

    def push(self, chunk) -> None:
        """One chunk from a source (already counted as received by whoever queued it)."""
        for piece in self.intake.push(chunk.t, chunk.acc):
            if piece is RESET:
                self.end_segment(GAP_REASON)
                continue
            t_first, acc = piece
            if not self._segment_open:
                self._start_segment(t_first)
            self._feed(self.preparer.process(acc), chunk.arrival)

    def end_segment(self, reason: str = "the stream ended") -> None:
        """End of stream or a long gap: the last partial hop is run and every pending sample decided; an episode
        still going is cut there (its event says `reason`)."""
        if not self._segment_open:
            return
        self._feed(self.preparer.flush(), time.monotonic())
        if self.n > 0:
            if self.e_next - self.hop < self.n:      # a partial hop is pending
                self._submit(self.e_next, time.monotonic(), _FINAL)
            if self._due:
                self.windows.flush()                 # every window of this segment run and settled
            self._decide(self.n, self.n)
        for event in self.detector.flush(reason):
            self._emit_event("event", event)
        self._segment_open = False

    # ------------------------------------------------------------------ hot path

    def _feed(self, x: np.ndarray, arrival: float) -> None:
        if len(x) == 0:
            return
        if self.first is None:
            self.first = np.asarray(x[0], np.float32).copy()
        i = 0
        while i < len(x):
            take = min(len(x) - i, self.e_next - self.n)
            self._append(x[i:i + take])
            i += take
            if self.n == self.e_next:
                if self.live and time.monotonic() - arrival > self.max_behind_s:
                    self.counters.hops_skipped_behind += 1
                    self._due.append((self.e_next, arrival, _SKIPPED))
                    self._settle()
                else:
                    self._submit(self.e_next, arrival, _HOP)
                self.e_next += self.hop

    def _append(self, x: np.ndarray) -> None:
        if self.n + len(x) - self.base > self.cap:
            if self._due:   # windows still out at the batcher hold their samples undecided: settle them first
                self.windows.flush()
            self._compact()
        lo = self.n - self.base
        self.data[lo:lo + len(x)] = x
        self.n += len(x)

    def _compact(self) -> None:
        keep_from = max(self.base, min(self.decided, self.e_next - self.W))
        shift, used = keep_from - self.base, self.n - keep_from
        if shift <= 0:
            raise FogError("stream buffer overflow (a bug: hop larger than the ring allows)")
        for buf in (self.data, self.total, self.count):
            buf[:used] = buf[shift:shift + used].copy()
            buf[used:] = 0
        self.base = keep_from

    def _submit(self, e: int, arrival: float, what: str) -> None:
        """The window ending at e to the batcher; its output comes back through `window_done`."""
        start = e - self.W
        if start >= self.base and e <= self.n:   # the common case: the window is a slice of the ring
            window = self.data[start - self.base:e - self.base]
        else:  # segment edges: before the start the first sample, past the end the last one (as offline)
            idx = np.clip(np.arange(start, e), 0, self.n - 1)
            idx = np.maximum(idx - self.base, 0)
            self.window[:] = self.data[idx]
            self.window[np.arange(start, e) < 0] = self.first
            window = self.window
        self._due.append((e, arrival, what))
        self.windows.submit(self, window)

    def window_done(self, y: np.ndarray, engine_s: float) -> None:
        """The batcher's answer for this stream's oldest submitted window (`y`: its output, batch axis first):
        its samples' sums, then the hop's decision, then any skipped hops queued behind it."""
        e, arrival, what = self._due.popleft()
        lo, hi = max(0, e - self.keep), min(self.n, e)
        rows = self.tail_rows[self.keep - (e - lo): self.keep - (e - hi) if e > hi else None]
        out = self.contrib[:hi - lo]
        np.take(y if self.per == "window" else y[0], rows, axis=0, out=out)  # (1, C) or (1, steps, C)
        np.add(self.total[lo - self.base:hi - self.base], out, out=self.total[lo - self.base:hi - self.base])
        self.count[lo - self.base:hi - self.base] += 1
        self.counters.hop(time.monotonic() - arrival, engine_s)
        if what == _HOP:
            self._decide(e - self.keep + self.hop, e)
        self._settle()

    def _settle(self) -> None:
        """Skipped hops at the head of the queue wait for no window: decide them now."""
        while self._due and self._due[0][2] == _SKIPPED:
            e = self._due.popleft()[0]
            self._decide(e - self.keep + self.hop, e)

    def _decide(self, upto: int, newest: int) -> None:
        """Decide the samples up to `upto`; `newest`: the samples the stream then held (for `decided_s`)."""
        self.newest = newest
        if upto <= self.decided:
            return
        a, b = self.decided - self.base, upto - self.base
        counts = self.count[a:b]
        probs = self.probs[:b - a]   # a view of scratch: valid during the callbacks (sinks serialize, tests copy)
        if counts.all():
            np.divide(self.total[a:b], counts[:, None], out=probs)
        else:  # windows skipped while behind real time: hold the last decided value
            np.divide(self.total[a:b], np.maximum(counts, 1)[:, None], out=probs)
            for i in np.flatnonzero(counts == 0):
                probs[i] = probs[i - 1] if i > 0 else self.last_row
        self.last_row[:] = probs[-1]
        t_first = self.t0 + self.decided / self.rate
        self.decided = upto
        if self.on_probs is not None:
            self.on_probs(t_first, probs, self.rate)
        finished = self.detector.update(self.detection.rows(probs))
        for event in self.detector.started:
            self._emit_event("onset", event)
        for event in finished:
            self._emit_event("event", event)

    def _emit_event(self, kind: str, event) -> None:
        if kind == "event":
            self.counters.events += 1
        if self.on_event is not None:
            self.on_event(kind, event, self.t0 + (max(self.newest, 1) - 1) / self.rate)
