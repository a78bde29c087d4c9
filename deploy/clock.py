"""The sensor's clock: its rate estimated from its own timestamps, robust to real clocks' jitter, and timestamps in
the wrong unit recognised by their step size.

**The estimate** (`estimate_period`): over a window of `WINDOW` = 256 steps, the steps of contiguous runs are
averaged and gaps left out. A mean of consecutive steps telescopes: (t_last - t_first) / n of each run, so a
timestamp's jitter enters only at the ends of a run and is divided by its length (jitter of +-4 ms on a 100 Hz stream
moves a 256-step estimate by at most 8 / 2560 = 0.3 %), where a median of single steps (the estimate before issue 28)
moves by a good part of the jitter (96.6 and 102.0 Hz measured for a true 100 Hz stream with 2-4 ms jitter). A step
is left out when it is further from the median step than half the median plus three times the steps' robust spread
(1.4826 x MAD): a gap, a duplicate, a clock reset, never a step that jitter made long or short (the bounds are
symmetric, so leaving out does not bias the mean), and a lost sample, where the jitter is small enough to tell it,
does not lengthen the period.

**The tolerance** (`TOLERANCE` = 2 %): a declared rate that far from the estimate time-stretches the stream (a wrong
declared rate is 20 % off or more: 50, 64, 100, 128 Hz); with `source.rate_check = "refuse"` the daemon stops and
says which rate to set. Residual bias: samples lost singly inside jitter larger than half a period are not seen as
gaps and lower the estimate by their share of the window (2 % loss of that kind reads 2 % low).

**Units**: timestamps whose median step is about 1000 (milliseconds) or 1,000,000 (microseconds) times the nominal
period are refused after the first `UNIT_STEPS` steps, naming `source.time_unit`: taken as seconds, every step would
be a long gap and nothing would ever be scored.
"""
from __future__ import annotations

import logging

import numpy as np

from deploy.errors import FogError

log = logging.getLogger("deploy.clock")

WINDOW = 256          # steps per rate estimate
TOLERANCE = 0.02      # |estimate / nominal - 1| beyond this is a mismatch
UNIT_STEPS = 16       # steps enough to recognise timestamps in the wrong unit
TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


class RateMismatch(FogError):
    """The sensor's timestamps disagree with the rate the source is set to, and the policy is to refuse."""
    drop_reason = "rate_mismatch"


def estimate_period(steps: np.ndarray) -> float | None:
    """The sensor's period from timestamp steps (seconds): the mean step of contiguous runs, gaps and steps <= 0 left
    out; None when fewer than half the steps are usable."""
    steps = steps[np.isfinite(steps)]
    if len(steps) < 8:
        return None
    median = float(np.median(steps))
    if median <= 0:
        return None
    spread = 1.4826 * float(np.median(np.abs(steps - median)))
    kept = steps[np.abs(steps - median) <= 0.5 * median + 3.0 * spread]   # symmetric: jitter kept both ways
    return float(kept.mean()) if len(kept) >= len(steps) // 2 else None


def unit_mistake(steps: np.ndarray, nominal_hz: float) -> str | None:
    """"ms" or "us" when the steps are about 1000 or 1,000,000 nominal periods: timestamps in that unit."""
    steps = steps[np.isfinite(steps) & (steps > 0)]
    if len(steps) < UNIT_STEPS // 2:
        return None
    ratio = float(np.median(steps)) * nominal_hz
    return next((unit for unit, scale in TIME_UNITS.items() if unit != "s" and 0.75 < ratio * scale < 1.33), None)


class RateWatch:
    """Estimates a live source's rate from its own timestamps (`estimate_period` over every `window` steps) and
    compares it with the nominal rate the pipeline assumes. A disagreement beyond `tolerance` is counted
    (`rate_mismatches`) and logged; with `policy="refuse"` it raises RateMismatch, now and for every later chunk, so
    the daemon stops instead of time-stretching the stream. Timestamps in milliseconds or microseconds are refused
    after the first few steps whatever the policy (not "off")."""

    def __init__(self, nominal_hz: float, counters, policy: str = "refuse", tolerance: float = TOLERANCE,
                 window: int = WINDOW, given: bool = True):
        self.nominal, self.counters, self.policy = float(nominal_hz), counters, policy
        self.tolerance, self.window, self.given = tolerance, window, given
        self.pending: list = []
        self.n_pending = 0
        self.last_t: float | None = None
        self.refused: str | None = None
        self.units_checked = False

    def check(self, t: np.ndarray) -> None:
        if self.refused:
            raise RateMismatch(self.refused)
        if self.policy == "off" or len(t) == 0:
            return
        self.pending.append(t)
        self.n_pending += len(t)
        if not self.units_checked and self.n_pending > UNIT_STEPS:
            self._check_units()
        if self.n_pending > self.window:
            t = np.concatenate(([np.array([self.last_t])] if self.last_t is not None else []) + self.pending)
            self.last_t, self.pending, self.n_pending = float(t[-1]), [], 0
            self._judge(estimate_period(np.diff(t)))

    def _refuse(self, message: str) -> None:
        self.refused = message
        raise RateMismatch(message)

    def _check_units(self) -> None:
        self.units_checked = True
        steps = np.diff(np.concatenate(self.pending))
        unit = unit_mistake(steps, self.nominal)
        if unit:
            self.counters.implausible["timestamp_unit"] += 1
            self._refuse(f"the sensor's timestamps step by {float(np.median(steps)):g} per sample at a nominal "
                         f"{self.nominal:g} Hz: they are in {unit}, not seconds (each step would be a gap and nothing "
                         f"would be scored); send seconds, or set source.time_unit = \"{unit}\"")

    def _judge(self, period: float | None) -> None:
        if period is None:
            return
        estimate = 1.0 / period
        self.counters.rate_estimate_hz = round(estimate, 3)
        if abs(estimate / self.nominal - 1.0) <= self.tolerance:
            return
        self.counters.rate_mismatches += 1
        how = "set to" if self.given else "assumed to run at the model rate,"
        message = (f"the sensor's timestamps say {estimate:.2f} Hz but the source is {how} {self.nominal:g} Hz: "
                   f"the stream would be time-stretched; set source.rate_hz (--rate-hz) to the sensor's rate, or "
                   f"source.rate_check = \"warn\" to run anyway")
        if self.policy == "refuse":
            self._refuse(message)
        if self.counters.rate_mismatches in (1, 10, 100) or self.counters.rate_mismatches % 1000 == 0:
            log.warning("%s (%d time(s))", message, self.counters.rate_mismatches)
