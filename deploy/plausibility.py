"""Is the signal what the source says it is? Gravity, flat channels and impossible values, checked on blocks.

A lower-back accelerometer worn by someone standing, walking or freezing reads gravity: the median |acc| over a
couple of seconds is about 1 g. So the declared units can be checked against the data:
- median |acc| about 9.8 "g": m/s^2 data declared as g; about 0.1 g: g declared as m/s^2; about 1000 g: mg. The
  model would see a signal 9.8x (1000x) off and its output would mean nothing: **refused** (`units`), naming the
  fix, once two blocks in a row agree (with `source.signal_check = "warn"` counted and warned instead);
- any other median |acc| outside 0.5-2 g: a scale that is off (`gravity`), warned;
- every channel flat: a sensor sending zeros (`zero_signal`) or stuck (`stuck_sensor`); one flat channel
  (`stuck_channel`); warned, with the channel;
- values beyond any accelerometer's range (`out_of_range`; the intake drops those samples before the float32
  window): warned, with the largest value;
- gravity more than 60 degrees from -AccV (where the bundle's model expects it, unless its input is
  orientation-invariant: `gravity_align`) in `ORIENTATION_BLOCKS` blocks in a row of walking (std of |acc| >=
  0.1 g: lying or sitting is a posture, not a mounting): the sensor is rotated, upside down or its axes are in
  another order (`orientation`), warned, not refused (a model may be trained to tolerate it).
Each block flagged is counted by check (`implausible` in the counters, `fog_signal_implausible_blocks_total` in
Prometheus); a warning is logged when a check starts failing, not for every block. The cost per chunk is one copy
into a block buffer; the checks run once per block (`BLOCK_S` = 2 s) on whole arrays.
"""
from __future__ import annotations

import logging
from collections import Counter
from types import SimpleNamespace

import numpy as np

from deploy.errors import FogError
from deploy.intake import MAX_G
from deploy.layouts import AXES
from deploy.preprocess import STANDARD_GRAVITY

log = logging.getLogger("deploy.plausibility")

BLOCK_S = 2.0
GRAVITY_OK = (0.5, 2.0)          # median |acc| in g that is plausible for a worn sensor
UNIT_MISTAKES = ((6.5, 14.0, "m/s^2 data declared as g", 'units = "m/s^2" (--units m/s^2)'),
                 (650.0, 1500.0, "mg (milli-g) data declared as g", "send g: divide by 1000 at the sender"))
GRAVITY_IN_MS2_AS_G = (0.065, 0.15)   # g data declared as m/s^2 reads about 1 / 9.81 g
ORIENTATION_BLOCKS = 5           # walking blocks in a row (10 s of walking) before a rotated gravity is said
WALKING_G = 0.1                  # std of |acc| (g) over a block above which the wearer is walking (or moving a lot)
REFUSE_BLOCKS = 2                # blocks in a row that agree on a units mistake before refusing


class ImplausibleSignal(FogError):
    """The signal cannot be what the source declares (units off by 9.8x or 1000x); the message names the fix."""
    drop_reason = "implausible_signal"


class SignalWatch:
    """Checks blocks of a source's samples (source units) for what gravity and the channels say."""

    def __init__(self, units: str, rate_hz: float, counters, policy: str = "refuse", orientation: bool = True):
        self.units, self.counters, self.policy, self.orientation = units, counters, policy, orientation
        self.to_g = 1.0 / STANDARD_GRAVITY if units == "m/s^2" else 1.0
        self.block = np.zeros((int(min(max(BLOCK_S * float(rate_hz), 32), 8192)), 3))
        self.filled = 0
        self.failing: dict[str, int] = {}     # check -> blocks in a row it failed
        self.refused: str | None = None

    def check(self, acc: np.ndarray) -> None:
        """Take a chunk's samples; judge each block as it fills. Raises ImplausibleSignal (policy "refuse")."""
        if self.refused:
            raise ImplausibleSignal(self.refused)
        if self.policy == "off":
            return
        i = 0
        while i < len(acc):
            take = min(len(acc) - i, len(self.block) - self.filled)
            self.block[self.filled:self.filled + take] = acc[i:i + take]
            self.filled += take
            i += take
            if self.filled == len(self.block):
                self.filled = 0
                self.judge(self.block)

    def judge(self, block: np.ndarray) -> None:
        """All checks of one block (source units); also run on a replay's first block before READY."""
        finite = np.isfinite(block).all(axis=1)
        values = block[finite]
        found = self._out_of_range(values)
        if found:   # the medians below shrug off a few such values; their squares must not overflow
            values = np.clip(values, -1e9, 1e9)
        if len(values) >= len(block) // 2:
            found.update(self._channels(values) or self._gravity(values))
        for name in list(self.failing):
            if name not in found:            # passed this block (None: could not tell, the run goes on)
                del self.failing[name]
        for name, verdict in found.items():
            if verdict is not None:
                self._flag(name, *verdict)

    def _flag(self, name: str, message: str, refuse: bool) -> None:
        self.counters.implausible[name] += 1
        self.failing[name] = self.failing.get(name, 0) + 1
        run = self.failing[name]
        if refuse and self.policy == "refuse" and run >= REFUSE_BLOCKS:
            self.refused = message
            raise ImplausibleSignal(message)
        if run == (ORIENTATION_BLOCKS if name == "orientation" else 1):
            log.warning("implausible signal (%s): %s", name, message)

    def _out_of_range(self, values: np.ndarray) -> dict:
        peak = float(np.abs(values).max()) if len(values) else 0.0
        if peak * self.to_g <= MAX_G:
            return {}
        return {"out_of_range": (f"values up to {peak:g} {self.units}, beyond any accelerometer's range "
                                 f"({MAX_G:g} g): those samples are dropped; check the sender's scale and units",
                                 False)}

    def _channels(self, values: np.ndarray) -> dict:
        flat = np.ptp(values, axis=0) == 0
        if not flat.any():
            return {}
        names = ", ".join(a for a, f in zip(AXES, flat) if f)
        if flat.all():
            zero = not np.any(values)
            return {"zero_signal" if zero else "stuck_sensor": (
                f"every channel {'reads 0' if zero else 'is constant'} for {BLOCK_S:g} s: the sensor sends no "
                "motion (unplugged, not started, or a placeholder stream); check the sensor and its connection",
                False)}
        return {"stuck_channel": (f"{names} constant for {BLOCK_S:g} s: a stuck or unconnected axis; check the "
                                  "sensor and the column order of what is sent", False)}

    def _gravity(self, values: np.ndarray) -> dict:
        g_norms = np.sqrt(np.einsum("ij,ij->i", values, values)) * self.to_g
        g = float(np.median(g_norms))
        for lo, hi, what, fix in UNIT_MISTAKES:
            if self.units == "g" and lo <= g <= hi:
                return {"units": (f"gravity reads {g:.3g} g: {what}; the model would see a signal "
                                  f"{g:.3g}x too large and its events would mean nothing; set {fix}", True)}
        if self.units == "m/s^2" and GRAVITY_IN_MS2_AS_G[0] <= g <= GRAVITY_IN_MS2_AS_G[1]:
            return {"units": (f"gravity reads {g * STANDARD_GRAVITY:.3g} m/s^2: g data declared as m/s^2; the model "
                              f"would see a signal {1 / g:.3g}x too small and its events would mean nothing; set "
                              'units = "g" (--units g)', True)}
        if not GRAVITY_OK[0] <= g <= GRAVITY_OK[1]:
            return {"gravity": (f"gravity reads {g:.3g} g (a worn sensor reads about 1 g): the scale is off, or "
                                "the sensor is not worn; check the sender's units and scale", False)}
        return self._orientation(values, g_norms) if self.orientation else {}

    def _orientation(self, values: np.ndarray, g_norms: np.ndarray) -> dict:
        """Judged while walking only (|acc| varies by >= WALKING_G): lying or sitting is a posture, not a mounting."""
        if float(g_norms.std()) < WALKING_G:
            return {"orientation": None}
        mean = values.mean(axis=0) * self.to_g
        norm = float(np.linalg.norm(mean))
        if norm < 0.5 or -mean[0] / norm >= 0.5:   # turning too much to tell, or within 60 degrees of -AccV
            return {}
        axis = int(np.argmax(np.abs(mean)))
        where = "AccV points up: the sensor is upside down (or AccV's sign is flipped)" if axis == 0 else \
            f"gravity lies along {'+' if mean[axis] > 0 else '-'}{AXES[axis]}: the sensor is rotated, or the axes " \
            "are sent in another order"
        return {"orientation": (f"{where}; the model expects AccV vertical (about -1 g upright): check the mounting "
                                f"and the column order t,AccV,AccML,AccAP (mean {np.round(mean, 2).tolist()} g over "
                                f"{ORIENTATION_BLOCKS * BLOCK_S:g} s)", False)}


def preflight(watch: SignalWatch, acc: np.ndarray, where: str) -> None:
    """Before READY: the first blocks of a recording (replay) through a copy of `watch`, so a units mistake stops the
    start (FogError naming `where`) instead of the run; counts nothing."""
    probe = SignalWatch(watch.units, 1.0, SimpleNamespace(implausible=Counter()), watch.policy, watch.orientation)
    probe.block = np.zeros_like(watch.block)
    try:
        probe.check(acc[:REFUSE_BLOCKS * len(probe.block)])
    except ImplausibleSignal as exc:
        raise FogError(f"{where}: {exc}") from None
