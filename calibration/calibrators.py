"""Range calibrators: choose the INT8 clipping range `amax` of one tensor from the values it took.

Each calibrator is a small numpy class with `collect(values)` (called once per calibration batch),
`compute_amax() -> float | ndarray` and `describe() -> dict` (for the calibration cache). They know nothing
about models or quantizers, so they are tested on plain arrays; `calibration.ptq` wires them to quantizers.

- `max`:        the largest |x| seen (per channel when `axis` is given; what weights use).
- `percentile`: the |x| below which `percentile` % of the values fall.
- `entropy`:    the clipping that minimises the KL divergence between the value distribution and its
                128-level quantized copy (the method TensorRT's entropy calibrator describes).
- `mse`:        the clipping that minimises the expected squared error of quantize-dequantize.

The histogram ones share `AbsHistogram`, filled in a single pass over the data: its bins keep one width,
and when a value beyond the covered range arrives the width doubles by merging neighbouring bins (exact,
because the old edges are a subset of the new ones), so no first pass to find the range is needed.
"""
from __future__ import annotations

import numpy as np

INT8_LEVELS = 127          # symmetric INT8: scale = amax / 127
DEFAULT_BINS = 2048


class AbsHistogram:
    """Histogram of |x| over [0, width * num_bins), bins of equal width that grows by doubling."""

    def __init__(self, num_bins: int = DEFAULT_BINS):
        if num_bins < 2 * 128 or num_bins % 2:
            raise ValueError("num_bins must be even and at least 256 (the entropy search needs 128 levels)")
        self.num_bins = num_bins
        self.width: float | None = None
        self.counts = np.zeros(num_bins, dtype=np.int64)
        self.max = 0.0
        self._zeros_before_range = 0      # values seen while everything so far was exactly zero

    def add(self, values) -> None:
        a = np.abs(np.asarray(values, dtype=np.float64)).ravel()
        if a.size == 0:
            return
        if not np.all(np.isfinite(a)):
            raise ValueError("calibration data contains NaN or infinity")
        top = float(a.max())
        self.max = max(self.max, top)
        if self.width is None:
            if top == 0.0:
                self._zeros_before_range += a.size
                return
            self.width = top / self.num_bins
            self.counts[0] += self._zeros_before_range
        while top > self.width * self.num_bins:
            merged = self.counts.reshape(-1, 2).sum(axis=1)
            self.counts = np.concatenate([merged, np.zeros(self.num_bins - merged.size, dtype=np.int64)])
            self.width *= 2.0
        index = np.minimum((a / self.width).astype(np.int64), self.num_bins - 1)
        self.counts += np.bincount(index, minlength=self.num_bins)

    @property
    def total(self) -> int:
        return int(self.counts.sum()) + (self._zeros_before_range if self.width is None else 0)

    @property
    def edges(self) -> np.ndarray:
        return np.arange(self.num_bins + 1) * (self.width or 0.0)

    def used_bins(self) -> int:
        """Bins up to and including the last non-empty one."""
        nonzero = np.flatnonzero(self.counts)
        return int(nonzero[-1]) + 1 if nonzero.size else 0


class Calibrator:
    """Base: collects values and returns amax. Subclasses set `method` and implement `_amax_from_histogram`."""

    method = "base"

    def __init__(self, num_bins: int = DEFAULT_BINS):
        self.num_bins = num_bins
        self.reset()

    def reset(self) -> None:
        self.histogram = AbsHistogram(self.num_bins)

    def collect(self, values) -> None:
        self.histogram.add(values)

    def compute_amax(self) -> float:
        h = self.histogram
        if h.total == 0:
            raise ValueError(f"{self.method} calibrator saw no data: run calibration batches first")
        if h.max == 0.0:
            return 0.0
        return float(min(self._amax_from_histogram(h), h.max))

    def _amax_from_histogram(self, h: AbsHistogram) -> float:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"method": self.method, "num_bins": self.num_bins}


class MaxCalibrator(Calibrator):
    """The largest |x| seen; per channel along `axis` when given (weights are per output channel)."""

    method = "max"

    def __init__(self, axis: int | None = None):
        self.axis = axis
        self.reset()

    def reset(self) -> None:
        self.amax = None

    def collect(self, values) -> None:
        a = np.abs(np.asarray(values, dtype=np.float64))
        if self.axis is None:
            current = np.asarray(a.max() if a.size else 0.0)
        else:
            current = np.moveaxis(a, self.axis, 0).reshape(a.shape[self.axis], -1).max(axis=1)
        self.amax = current if self.amax is None else np.maximum(self.amax, current)

    def compute_amax(self):
        if self.amax is None:
            raise ValueError("max calibrator saw no data: run calibration batches first")
        return float(self.amax) if self.axis is None else self.amax.copy()

    def describe(self) -> dict:
        return {"method": self.method, "axis": self.axis}


class PercentileCalibrator(Calibrator):
    """The upper edge of the bin where the cumulative share of |x| reaches `percentile` %."""

    method = "percentile"

    def __init__(self, percentile: float = 99.99, num_bins: int = DEFAULT_BINS):
        if not 0.0 < percentile <= 100.0:
            raise ValueError("percentile must be in (0, 100]")
        self.percentile = percentile
        super().__init__(num_bins)

    def _amax_from_histogram(self, h: AbsHistogram) -> float:
        cdf = np.cumsum(h.counts) / h.counts.sum()
        index = int(np.searchsorted(cdf, self.percentile / 100.0 - 1e-12))
        return float(h.edges[min(index, h.num_bins - 1) + 1])

    def describe(self) -> dict:
        return {**super().describe(), "percentile": self.percentile}


class EntropyCalibrator(Calibrator):
    """Minimum KL divergence between the clipped distribution P and its `levels`-bin quantized copy Q.

    For each candidate number of bins i (from `levels` up to the last used bin): P is the first i bins with
    everything beyond folded into bin i-1 (clipping), Q merges those i bins into `levels` groups and spreads
    each group's count evenly over the group's non-empty bins. amax is the upper edge of the best i.
    """

    method = "entropy"

    def __init__(self, num_bins: int = DEFAULT_BINS, levels: int = 128, stride: int = 1):
        self.levels, self.stride = levels, stride
        super().__init__(num_bins)

    def _amax_from_histogram(self, h: AbsHistogram) -> float:
        counts = h.counts.astype(np.float64)
        used = h.used_bins()
        if used <= self.levels:
            return float(h.edges[used])
        best_i, best_kl = used, np.inf
        suffix = np.concatenate([np.cumsum(counts[::-1])[::-1], [0.0]])   # suffix[i] = counts[i:].sum()
        for i in range(self.levels, used + 1, self.stride):
            kl = self._divergence(counts[:i], suffix[i])
            if kl < best_kl:
                best_i, best_kl = i, kl
        return float(h.edges[best_i])

    def _divergence(self, kept: np.ndarray, outliers: float) -> float:
        i = kept.size
        p = kept.copy()
        p[-1] += outliers
        group = (np.arange(i) * self.levels) // i               # which of the `levels` groups each bin joins
        group_sum = np.bincount(group, weights=kept, minlength=self.levels)
        group_nonzero = np.bincount(group, weights=(kept > 0), minlength=self.levels)
        spread = np.divide(group_sum, group_nonzero, out=np.zeros_like(group_sum), where=group_nonzero > 0)
        q = np.where(kept > 0, spread[group], 0.0)
        p_sum, q_sum = p.sum(), q.sum()
        if q_sum == 0.0:
            return np.inf
        p, q = p / p_sum, q / q_sum
        # Where P has mass but Q has none (the folded outlier bin), smooth Q slightly instead of infinity.
        q = np.where((p > 0) & (q == 0), 1e-4 / i, q)
        mask = p > 0
        return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))

    def describe(self) -> dict:
        return {**super().describe(), "levels": self.levels, "stride": self.stride}


class MSECalibrator(Calibrator):
    """amax minimising expected squared quantize-dequantize error over the histogram.

    Values within amax get rounding noise step^2/12 (step = amax/127); values beyond are clipped to amax.
    Candidates are the upper bin edges, every `stride` bins.
    """

    method = "mse"

    def __init__(self, num_bins: int = DEFAULT_BINS, stride: int = 1):
        self.stride = stride
        super().__init__(num_bins)

    def _amax_from_histogram(self, h: AbsHistogram) -> float:
        counts = h.counts.astype(np.float64)
        used = h.used_bins()
        centers = (np.arange(used) + 0.5) * h.width
        counts = counts[:used]
        candidates = np.arange(1, used + 1, self.stride)
        if candidates[-1] != used:
            candidates = np.append(candidates, used)
        errors = []
        for k in candidates:
            amax = k * h.width
            step = amax / INT8_LEVELS
            inside = counts[:k].sum() * step * step / 12.0
            clipped = np.sum(counts[k:] * (centers[k:] - amax) ** 2)
            errors.append(inside + clipped)
        return float(candidates[int(np.argmin(errors))] * h.width)

    def describe(self) -> dict:
        return {**super().describe(), "stride": self.stride}


# The one default activation calibrator of `toolkit export`, `calibrate` and `train --qat`, chosen by measurement on the
# shipped fog-small with real (Daphnet) and synthetic recordings: docs/calibration.md.
DEFAULT_METHOD = "mse"

CALIBRATORS = {c.method: c for c in (MaxCalibrator, PercentileCalibrator, EntropyCalibrator, MSECalibrator)}


def make_calibrator(method: str, **options) -> Calibrator:
    """A fresh calibrator by name (`max`, `percentile`, `entropy`, `mse`), with its options."""
    try:
        cls = CALIBRATORS[method]
    except KeyError:
        raise ValueError(f"unknown calibrator {method!r}; choose one of {sorted(CALIBRATORS)}") from None
    return cls(**options)
