"""Not-worn detection: long stretches where the sensor lies still (on a table, a charger, a shelf).

A week of 24/7 recording contains nights and hours when the belt is off. A still sensor gives a flat signal; a
model that z-scores its window ("window" normalization) then sees amplified sensor noise and may call it anything.
So those stretches are found first and excluded: no episode is scored there, and the hours are reported per day.

The rule is van Hees et al. (2011, 2013)'s, used for wrist and hip accelerometers in large cohorts (UK Biobank):
the signal is cut into blocks (`block_s`, 60 s); an axis is still in a block when its standard deviation is below
`std_g` (13 mg) and its range below `range_g` (50 mg); a block is still when at least two axes are; a run of still
blocks lasting at least `min_s` (default 60 min) is "not worn". A person asleep moves within an hour; a sensor on a
table does not. Quiet sitting for an hour with the sensor worn can be taken for not worn: the report says how many
hours were excluded, per day, so that is visible.
"""
from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass

import numpy as np

from deploy.preprocess import convert_units


@dataclass(frozen=True)
class WornSettings:
    min_s: float = 3600.0     # shortest stretch called not worn; 0 turns detection off
    block_s: float = 60.0
    std_g: float = 0.013
    range_g: float = 0.05

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def enabled(self) -> bool:
        return self.min_s > 0


class BlockStats:
    """Per-block still/not-still flags from chunks of raw samples (any chunking gives the same flags)."""

    def __init__(self, rate_hz: float, units: str, settings: WornSettings):
        self.rate_hz, self.units, self.settings = float(rate_hz), units, settings
        self.block = max(1, int(round(settings.block_s * rate_hz)))
        self.carry = np.zeros((0, 3))
        self.still: list[bool] = []
        self.n = 0

    def _flags(self, blocks: np.ndarray) -> np.ndarray:
        """blocks: (nb, k, 3) in g -> (nb,) still."""
        axis_still = (blocks.std(axis=1) < self.settings.std_g) & (np.ptp(blocks, axis=1) < self.settings.range_g)
        return axis_still.sum(axis=1) >= 2

    def push(self, chunk: np.ndarray) -> None:
        x = convert_units(chunk, self.units, "g")
        self.n += len(x)
        if len(self.carry):
            x = np.concatenate([self.carry, x])
        whole = len(x) // self.block * self.block
        if whole:
            self.still += self._flags(x[:whole].reshape(-1, self.block, 3)).tolist()
        self.carry = x[whole:]

    def intervals(self) -> list[tuple[float, float]]:
        """Not-worn stretches as [start_s, end_s) in seconds from the recording's start."""
        still = list(self.still)
        if len(self.carry) >= 2:                  # the last, partial block counts as what it shows
            still += self._flags(self.carry[None]).tolist()
        elif len(self.carry):
            still.append(bool(still[-1]) if still else False)
        out, start = [], None
        block_s = self.block / self.rate_hz
        end_s = self.n / self.rate_hz
        for i, s in enumerate(still + [False]):
            if s and start is None:
                start = i
            elif not s and start is not None:
                a, b = start * block_s, min(end_s, i * block_s)
                if b - a >= self.settings.min_s:
                    out.append((a, b))
                start = None
        return out


class NotWorn:
    """Membership of model-rate sample indices in the not-worn stretches."""

    def __init__(self, intervals, rate_hz: float):
        self.intervals = [(float(a), float(b)) for a, b in intervals]
        self.rate_hz = float(rate_hz)
        # sample j (time j / rate) is not worn when a <= j / rate < b: index bounds [ceil(a*rate), ceil(b*rate))
        self.bounds = [(int(np.ceil(a * rate_hz - 1e-9)), int(np.ceil(b * rate_hz - 1e-9))) for a, b in self.intervals]
        self.starts = [lo for lo, _ in self.bounds]

    def covers(self, first: int, stop: int) -> bool:
        """True when every sample in [first, stop) is not worn."""
        k = bisect.bisect_right(self.starts, first) - 1
        return k >= 0 and self.bounds[k][1] >= stop

    def clear(self, first: int, probs: np.ndarray) -> np.ndarray:
        """probs (rows first, first+1, ...) with the not-worn rows set to 0 (in place)."""
        last = first + len(probs)
        for lo, hi in self.bounds:
            if hi > first and lo < last:
                probs[max(lo, first) - first:min(hi, last) - first] = 0.0
        return probs
