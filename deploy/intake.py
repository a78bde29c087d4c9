"""Sample intake: turns whatever a source delivered into clean, evenly spaced segments, accounting for every sample.

Rules (P = 1 / nominal source rate; each dropped sample is counted under its reason):
- a NaN/inf value or timestamp: dropped `non_finite` (the hole it leaves is then a gap like any other);
- a timestamp equal to the previous one: dropped `duplicate`; earlier than it: dropped `out_of_order`;
  closer than P/2 to it: dropped `too_close` (a burst that does not fit the sensor's rate);
- a gap (dt > 1.5 P) up to `max_gap_s`: the missing samples are interpolated linearly and counted as
  `interpolated` (flagged, never as received); a longer gap ends the segment (`reset`): the window restarts;
- two samples in a row more than `max_gap_s` before the last accepted one, the second following the first, are a
  sensor clock reset (a restarted sensor counts from zero again): the first is dropped `out_of_order`, the segment
  ends and a new one starts at the second (`clock_resets`, logged), instead of every later sample being dropped as
  out of order. A single stray sample stays `out_of_order`.
Samples are then placed on the segment's grid (sample i at t_first + i P): jitter below P/2 is absorbed.
"""
from __future__ import annotations

import logging
import math

import numpy as np

from deploy.errors import FogError

log = logging.getLogger("deploy.intake")

RESET = "reset"


class Intake:
    def __init__(self, rate_hz: float, counters, max_gap_s: float = 0.5):
        self.period = 1.0 / float(rate_hz)
        self.counters = counters
        self.max_gap_s = float(max_gap_s)
        self.last_t: float | None = None
        self.last_x = np.zeros(3)            # the last accepted sample (meaningful once last_t is set)
        self.behind: float | None = None     # a sample far behind last_t: a stray, or the first after a clock reset
        self._dt = np.zeros(64)              # scratch for the common case, grows to the largest chunk

    def push(self, t: np.ndarray, acc: np.ndarray) -> list:
        """Returns pieces in order: (t_first, samples (k, 3)) arrays for the current segment, or RESET."""
        if len(t) == 0:
            return []
        if self._clean(t, acc):  # the common case, vectorized and without allocation
            self.counters.accepted += len(t)
            self.last_t, self.behind = float(t[-1]), None
            np.copyto(self.last_x, acc[-1])
            return [(float(t[0]), acc)]
        return self._slow(t, acc)

    def _clean(self, t, acc) -> bool:
        """Every value finite and every step within (P/2, 3P/2]. NaN fails every comparison and an infinite time
        makes a step infinite or NaN, so finite t[0] plus good steps means finite times; a NaN or inf in acc makes
        its sum non-finite."""
        lo, hi = 0.5 * self.period, 1.5 * self.period
        t0 = float(t[0])
        if not math.isfinite(t0) or not math.isfinite(float(np.add.reduce(acc, axis=None))):
            return False
        if self.last_t is not None and not lo < t0 - self.last_t <= hi:
            return False
        if len(t) > 1:
            if len(t) > len(self._dt):
                self._dt = np.zeros(2 * len(t))
            dt = np.subtract(t[1:], t[:-1], out=self._dt[:len(t) - 1])
            if not (lo < dt.min() and dt.max() <= hi):
                return False
        return True

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

    def _slow(self, t, acc) -> list:
        pieces, run_t, run = [], None, []

        def close_run():
            nonlocal run_t, run
            if run:
                pieces.append((run_t, np.array(run)))
            run_t, run = None, []

        for ti, xi in zip(t, acc):
            if not (np.isfinite(ti) and np.isfinite(xi).all()):
                self.counters.drop("non_finite")
                continue
            if self.last_t is not None:
                dt = ti - self.last_t
                if dt == 0:
                    self.counters.drop("duplicate")
                    continue
                if dt < 0 and not self._clock_reset(ti, dt):
                    self.counters.drop("out_of_order")
                    continue
                if dt < 0:
                    close_run()
                    pieces.append(RESET)
                if self.last_t is not None and dt < 0.5 * self.period:
                    self.counters.drop("too_close")
                    continue
                if self.last_t is not None and dt > 1.5 * self.period:
                    missing = int(round(dt / self.period)) - 1
                    if dt <= self.max_gap_s and missing > 0:
                        frac = np.arange(1, missing + 1)[:, None] / (missing + 1)
                        filled = self.last_x + frac * (xi - self.last_x)
                        if run_t is None:
                            run_t = self.last_t + self.period
                        run.extend(filled)
                        self.counters.interpolated += missing
                        self.counters.gaps_filled += 1
                    elif dt > self.max_gap_s:
                        close_run()
                        pieces.append(RESET)
                        self.counters.resets += 1
                        log.warning("gap of %.3f s in the sensor stream (limit %.3f s): window restarted",
                                    dt, self.max_gap_s)
            self.behind = None
            if run_t is None:
                run_t = float(ti)
            run.append(np.array(xi, dtype=np.float64))
            self.counters.accepted += 1
            self.last_t = float(ti)
            np.copyto(self.last_x, xi)
        close_run()
        return pieces


class RateMismatch(FogError):
    """The sensor's timestamps disagree with the rate the source is set to, and the policy is to refuse."""


class RateWatch:
    """Estimates a live source's rate from its own timestamps (median step over every `window` samples) and compares
    it with the nominal rate the pipeline assumes. A disagreement beyond `tolerance` is counted
    (`rate_mismatches`) and logged; with `policy="refuse"` it raises RateMismatch, now and for every later chunk, so
    the daemon stops instead of time-stretching the stream. Steps <= 0 or beyond 10 nominal periods (gaps, clock
    resets) are left out."""

    def __init__(self, nominal_hz: float, counters, policy: str = "refuse", tolerance: float = 0.02,
                 window: int = 128, given: bool = True):
        self.nominal, self.counters, self.policy = float(nominal_hz), counters, policy
        self.tolerance, self.window, self.given = tolerance, window, given
        self.pending: list = []
        self.n_pending = 0
        self.last_t: float | None = None
        self.refused: str | None = None

    def check(self, t: np.ndarray) -> None:
        if self.refused:
            raise RateMismatch(self.refused)
        if self.policy == "off" or len(t) == 0:
            return
        self.pending.append(t)
        self.n_pending += len(t)
        if self.n_pending >= self.window:
            self._estimate()

    def _estimate(self) -> None:
        t = np.concatenate(([np.array([self.last_t])] if self.last_t is not None else []) + self.pending)
        self.last_t, self.pending, self.n_pending = float(t[-1]), [], 0
        steps = np.diff(t)
        steps = steps[(steps > 0) & (steps < 10.0 / self.nominal) & np.isfinite(steps)]
        if len(steps) < self.window // 2:
            return
        estimate = 1.0 / float(np.median(steps))
        self.counters.rate_estimate_hz = round(estimate, 3)
        if abs(estimate / self.nominal - 1.0) <= self.tolerance:
            return
        self.counters.rate_mismatches += 1
        how = "set to" if self.given else "assumed to run at the model rate,"
        message = (f"the sensor's timestamps say {estimate:.2f} Hz but the source is {how} {self.nominal:g} Hz: "
                   f"the stream would be time-stretched; set source.rate_hz (--rate-hz) to the sensor's rate, or "
                   f"source.rate_check = \"warn\" to run anyway")
        if self.policy == "refuse":
            self.refused = message
            raise RateMismatch(message)
        if self.counters.rate_mismatches in (1, 10, 100) or self.counters.rate_mismatches % 1000 == 0:
            log.warning("%s (%d time(s))", message, self.counters.rate_mismatches)
