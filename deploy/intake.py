"""Sample intake: turns whatever a source delivered into clean, evenly spaced segments, accounting for every sample.

Time is judged against the segment's **grid**, not against the previous timestamp: the intake tracks where the next
sample is due (an alpha-beta tracker of the grid's phase and period, so a real clock's jitter and a rate a little off
its nominal value are followed), and a sample's residual r = t - (due time) decides (P = 1 / nominal source rate;
each dropped sample is counted under its reason):
- a NaN/inf value or timestamp: dropped `non_finite`; a value beyond any accelerometer's range (`max_abs`, 1000 g in
  the source's units): dropped `out_of_range`, so it never overflows the float32 window (the hole either leaves is
  then a gap like any other);
- a timestamp equal to the previous one: dropped `duplicate`;
- |r| < 3P/4: the next sample, even when jitter put its timestamp before the previous one (the order of arrival is
  trusted within the jitter);
- r <= -3P/4: dropped, `out_of_order` when earlier than the previous timestamp, else `too_close` (a burst that does
  not fit the sensor's rate);
- r >= 3P/4: m = floor(r / P + 1/4) samples are missing; up to `max_gap_s` they are interpolated linearly and counted
  as `interpolated` (flagged, never as received); a longer gap ends the segment (`reset`): the window restarts;
- two samples in a row more than `max_gap_s` before the last accepted one, the second following the first, are a
  sensor clock reset (a restarted sensor counts from zero again): the first is dropped `out_of_order`, the segment
  ends and a new one starts at the second (`clock_resets`, logged), instead of every later sample being dropped as
  out of order. A single stray sample stays `out_of_order`.
Samples are then placed on the segment's grid (sample i at t_first + i P). The 3P/4 bounds (not P/2) let timestamp
jitter of up to about P/2 through as it is: +-4 ms on a 100 Hz stream loses nothing (tests/test_clock.py).
A chunk whose every sample is the next one on the grid takes a vectorized path without allocation.
"""
from __future__ import annotations

import logging
import math

import numpy as np

log = logging.getLogger("deploy.intake")

RESET = "reset"
NEXT = 0.75          # |residual| below this many periods: the next sample
ALPHA, BETA = 1 / 8, 1 / 128   # the grid tracker's phase and period gains (about critically damped)
MAX_G = 1000.0       # no accelerometer reads beyond this many g (high-g impact sensors stop at 200-400 g)


class Intake:
    def __init__(self, rate_hz: float, counters, max_gap_s: float = 0.5, max_abs: float = math.inf):
        self.period = 1.0 / float(rate_hz)
        self.counters = counters
        self.max_gap_s = float(max_gap_s)
        self.max_abs = float(max_abs)
        self.last_t: float | None = None     # the last accepted timestamp, as received
        self.grid_t = 0.0                    # where the grid says the last accepted sample was (meaningful with last_t)
        self.grid_p = self.period            # the grid's tracked period
        self.last_x = np.zeros(3)            # the last accepted sample (meaningful once last_t is set)
        self.behind: float | None = None     # a sample far behind last_t: a stray, or the first after a clock reset
        self._k = np.arange(1.0, 65.0)       # 1..n for the common case, grows to the largest chunk
        self._r = np.zeros(64)
        self.gap_warnings = 0

    def push(self, t: np.ndarray, acc: np.ndarray) -> list:
        """Returns pieces in order: (t_first, samples (k, 3)) arrays for the current segment, or RESET."""
        if len(t) == 0:
            return []
        if self.last_t is None and len(t) > 1:   # a segment's first sample starts the grid, the rest may be clean
            return self._slow(t[:1], acc[:1]) + self.push(t[1:], acc[1:])
        if self._clean(t, acc):  # the common case, vectorized and without allocation
            self.counters.accepted += len(t)
            self.last_t, self.behind = float(t[-1]), None
            np.copyto(self.last_x, acc[-1])
            return [(float(t[0]), acc)]
        return self._slow(t, acc)

    def _clean(self, t, acc) -> bool:
        """Every value finite and in range, every timestamp increasing and within 3P/4 of its place on the grid;
        then the grid is moved on by the chunk (as the per-sample tracker would, from the chunk's mean residual)."""
        lim = self.max_abs
        if self.last_t is None:
            return False   # a new segment starts in the slow path
        n = len(t)
        if n == 1:         # a datagram or a line: one sample, in plain floats (numpy's per-call cost dominates)
            return self._clean_one(float(t[0]), acc[0].tolist())
        if not (-lim <= float(acc.min()) and float(acc.max()) <= lim):
            return False   # NaN fails both comparisons
        if n > len(self._k):
            self._k, self._r = np.arange(1.0, 2 * n + 1), np.zeros(2 * n)
        r = np.multiply(self._k[:n], self.grid_p, out=self._r[:n])
        np.subtract(t, r, out=r)
        r -= self.grid_t                                   # residual of each sample against its grid time
        bound = NEXT * self.period
        if not (-bound < float(r.min()) and float(r.max()) < bound and float(t[0]) > self.last_t):
            return False   # NaN times fail here too
        residual = float(r.mean()) if n > 1 else float(r[0])
        if n > 1 and not float(np.subtract(t[1:], t[:-1], out=r[:n - 1]).min()) > 0:   # r is scratch from here
            return False
        self._track(n, residual)
        return True

    def _clean_one(self, ti: float, row: list) -> bool:
        residual = ti - self.grid_t - self.grid_p
        lim, bound = self.max_abs, NEXT * self.period
        if not (-bound < residual < bound and ti > self.last_t and all(-lim <= v <= lim for v in row)):
            return False   # NaN fails every comparison
        self._track(1, residual)
        return True

    def _track(self, slots: int, residual: float) -> None:
        """Move the grid on by `slots` samples and correct it by the residual seen (alpha-beta tracker; a chunk of
        several samples counts as one observation at its centre)."""
        gain = min(1.0, ALPHA * slots)
        self.grid_t += slots * self.grid_p + gain * residual
        self.grid_p += min(1.0, BETA * slots) * residual * 2.0 / (slots + 1)
        self.grid_p = min(max(self.grid_p, 0.5 * self.period), 1.5 * self.period)

    def _clock_reset(self, ti: float, dt: float) -> bool:
        """A sample more than max_gap_s back is a stray (out of order) unless the one before it was such a sample
        too and this one follows it: then the sensor's clock was reset, and a new segment starts here."""
        if dt >= -self.max_gap_s:
            return False
        if self.behind is not None and 0 < ti - self.behind <= self.max_gap_s:
            self.counters.clock_resets += 1
            log.warning("sensor clock went back %.3f s (from %.3f to %.3f s): a new segment starts",
                        -dt, self.last_t, ti)
            self.last_t = self.behind = None
            return True
        self.behind = ti
        return False

    def _bad_value(self, ti, xi) -> str | None:
        if not (math.isfinite(ti) and np.isfinite(xi).all()):
            return "non_finite"
        if float(np.abs(xi).max()) > self.max_abs:
            return "out_of_range"
        return None

    def _slot(self, ti: float) -> int | str:
        """Where sample `ti` goes: slots after the last one (1 = next), RESET for a long gap, or a drop reason."""
        dt = ti - self.last_t
        if dt == 0:
            return "duplicate"
        if dt < 0 and self._clock_reset(ti, dt):
            return RESET
        residual = ti - (self.grid_t + self.grid_p)
        if residual <= -NEXT * self.period:
            return "out_of_order" if dt < 0 else "too_close"
        slots = 1 if residual < NEXT * self.period else int(math.floor(residual / self.period + 1.25))
        if (slots - 1) * self.period > self.max_gap_s:
            return RESET
        return slots

    def _gap_warning(self, dt: float) -> None:
        self.counters.resets += 1
        self.gap_warnings += 1
        if self.gap_warnings in (1, 10, 100) or self.gap_warnings % 1000 == 0:
            log.warning("gap of %.3f s in the sensor stream (limit %.3f s): window restarted (%d gap(s) so far)",
                        dt, self.max_gap_s, self.gap_warnings)

    def _slow(self, t, acc) -> list:
        pieces, run_t, run = [], None, []

        def close_run():
            nonlocal run_t, run
            if run:
                pieces.append((run_t, np.array(run)))
            run_t, run = None, []

        for ti, xi in zip(t, acc):
            bad = self._bad_value(ti, xi)
            if bad:
                self.counters.drop(bad)
                continue
            slots = 1 if self.last_t is None else self._slot(float(ti))
            if isinstance(slots, str) and slots != RESET:
                self.counters.drop(slots)
                continue
            if slots == RESET:
                if self.last_t is not None:   # a long gap (a clock reset has counted itself)
                    self._gap_warning(float(ti) - self.last_t)
                close_run()
                pieces.append(RESET)
                self.last_t = None
            if self.last_t is None:           # a new segment: the grid starts at this sample
                self.grid_t, self.grid_p, slots = float(ti), self.period, 0
            elif slots > 1:
                missing = slots - 1
                frac = np.arange(1, missing + 1)[:, None] / (missing + 1)
                if run_t is None:
                    run_t = self.last_t + self.period
                run.extend(self.last_x + frac * (xi - self.last_x))
                self.counters.interpolated += missing
                self.counters.gaps_filled += 1
            if slots:
                self._track(slots, float(ti) - (self.grid_t + slots * self.grid_p))
            self.behind = None
            if run_t is None:
                run_t = float(ti)
            run.append(np.array(xi, dtype=np.float64))
            self.counters.accepted += 1
            self.last_t = float(ti)
            np.copyto(self.last_x, xi)
        close_run()
        return pieces
