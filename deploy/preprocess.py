"""Signal preprocessing shared by training, calibration, verification and the device (numpy only).

The order is fixed: units -> resampling -> normalization ("recording" or "running", in `prepare`) -> model input
(`patchify`: "window" normalization, then / scale, then the spec's layout). `PreprocessSpec` is the serializable
description that goes into a bundle's manifest.

Normalization modes (per axis, population std, a std of 0 gives 0 as in the Kaggle 1st place):
- "recording": z-score over the whole recording (how the Kaggle models trained; offline only).
- "window": z-score of each model window, computed inside `patchify` so offline and streaming are identical.
  `min_std` (spec units) floors the divisor, so a still sensor's noise is not blown up to unit variance (real
  standing then looks like standing, not like trembling); 0 is the plain z-score.

Gravity alignment (`gravity_align`, "window" normalization only): before the z-score, each window is rotated so
its mean acceleration (gravity, for any window longer than a few steps) points along -AccV, the Kaggle
convention. Belts and sensors sit tens of degrees differently between recordings and wearers; after the rotation
AccV is the true vertical whatever the tilt, upside down included. `horizontal` says what happens to the heading about
the vertical: "sensor" leaves it as the rotation leaves it (it then depends on how the sensor sits); "principal"
turns the horizontal plane onto the principal axes of the window's horizontal acceleration (the larger variance on
AccML's slot, the smaller on AccAP's), each axis's sign chosen so the third moment of the signal along it is >= 0.
Every step is a function of the window's own samples, so a recording turned by any fixed rotation or mirror (tilted,
upside down, turned about the vertical, AP and ML swapped or negated) gives the model the same input, up to rounding
(`window_frame`). Per window, inside `patchify` and the streaming encoder (the same function), so offline and
streaming stay identical.
- "running": causal exponential statistics, `RunningNormalizer` (time constant `running_tau_s`, default 30 s),
  so a device that never sees the whole recording approximates "recording". Chunked calls equal one call exactly.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields

import numpy as np

from deploy.errors import SpecError
from deploy.resample import Resampler, resample

__all__ = ["PreprocessSpec", "SpecError", "Resampler", "resample", "convert_units", "zscore_", "RunningNormalizer",
           "normalize", "gravity_rotation", "window_frame", "patchify", "unpatchify", "cut_blocks", "overlap_average", "prepare",
           "StreamingPreparer"]

NORMALIZATIONS = ("recording", "window", "running")
LAYOUTS = ("BCT", "BTC")
HORIZONTALS = ("sensor", "principal")
STANDARD_GRAVITY = 9.80665


MAX_WINDOW = 1 << 20   # samples in one model window (2.3 h at 128 Hz): a bigger one is a broken manifest, not a model
# field -> (lowest, highest, integer, lowest excluded): checked before anything derives a window or a rate from them
RANGES = {"rate_hz": (0, 100_000, False, True), "patch": (1, 1 << 14, True, False),
          "n_patches": (1, MAX_WINDOW, True, False), "scale": (-1e9, 1e9, False, False),
          "running_tau_s": (0, 1e6, False, True), "running_block_s": (0, 1e6, False, True),
          "min_std": (0, 1e6, False, False)}


def _check_ranges(spec) -> None:
    """Every number of `spec` of its type (a rate of "64" is refused here, not deep in numpy) and in range (1e8
    patches would allocate for minutes before the daemon is READY); SpecError naming the key and the range."""
    for name, (lo, hi, integer, above) in RANGES.items():
        value = getattr(spec, name)
        kind = numbers.Integral if integer else numbers.Real
        if isinstance(value, bool) or not isinstance(value, kind):
            raise SpecError(f"preprocess.{name} = {value!r}: expected {'an integer' if integer else 'a number'}, "
                            f"not {type(value).__name__}")
        if not (math.isfinite(value) and (value > lo if above else value >= lo) and value <= hi):
            raise SpecError(f"preprocess.{name} = {value!r}: must be {'>' if above else '>='} {lo:g} and "
                            f"<= {hi:,}")
    if spec.scale == 0:
        raise SpecError("preprocess.scale = 0: the input is divided by it; give a non-zero scale")
    if spec.patch * spec.n_patches > MAX_WINDOW:
        raise SpecError(f"preprocess: a window of patch x n_patches = {spec.patch * spec.n_patches:,} samples is "
                        f"over {MAX_WINDOW:,}")
    if not isinstance(spec.gravity_align, bool):
        raise SpecError(f"preprocess.gravity_align = {spec.gravity_align!r}: expected true or false")


@dataclass(frozen=True)
class PreprocessSpec:
    rate_hz: float
    units: str = "g"
    patch: int = 1
    n_patches: int = 128
    normalization: str = "window"
    scale: float = 1.0
    layout: str = "BCT"
    running_tau_s: float = 30.0     # only for normalization="running"
    running_block_s: float = 1.0    # statistics update once per block of this length (see RunningNormalizer)
    min_std: float = 0.0            # "window" only: floor of the z-score's std, in spec units
    gravity_align: bool = False     # "window" only: rotate each window so its mean points along -AccV
    horizontal: str = "sensor"      # with gravity_align: "sensor" (heading as worn) or "principal" (see above)

    def __post_init__(self):
        _check_ranges(self)
        if self.normalization not in NORMALIZATIONS:
            raise SpecError(f"normalization {self.normalization!r} is not one of {NORMALIZATIONS}")
        if self.layout not in LAYOUTS:
            raise SpecError(f"layout {self.layout!r} is not one of {LAYOUTS}")
        if self.units not in ("g", "m/s^2"):
            raise SpecError(f"units {self.units!r} is not one of ('g', 'm/s^2')")
        if self.horizontal not in HORIZONTALS:
            raise SpecError(f"horizontal {self.horizontal!r} is not one of {HORIZONTALS}")
        if self.horizontal != "sensor" and not self.gravity_align:
            raise SpecError(f"horizontal {self.horizontal!r} turns the plane perpendicular to gravity: it needs "
                            "gravity_align=True")
        if (self.gravity_align or self.min_std) and self.normalization != "window":
            raise SpecError("gravity_align and min_std act on each window before its z-score: they need "
                            f"normalization 'window', not {self.normalization!r}")

    @property
    def window(self) -> int:
        """Model window in samples at the model rate."""
        return self.patch * self.n_patches

    @property
    def window_s(self) -> float:
        return self.window / self.rate_hz

    @property
    def input_shape(self) -> tuple[int, int, int]:  # one window, in the layout `patchify` makes
        return (1, self.n_patches, 3 * self.patch) if self.layout == "BTC" else (1, 3 * self.patch, self.n_patches)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessSpec":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise SpecError(f"unknown preprocess keys {sorted(unknown)} (known: {sorted(known)}); "
                            "the bundle may come from a newer toolkit")
        if "rate_hz" not in d:
            raise SpecError("preprocess spec lacks rate_hz")
        return cls(**d)


# ---------------------------------------------------------------- units

def convert_units(x: np.ndarray, from_units: str, to_units: str) -> np.ndarray:
    factors = {("g", "m/s^2"): STANDARD_GRAVITY, ("m/s^2", "g"): 1.0 / STANDARD_GRAVITY}
    if from_units == to_units:
        return np.asarray(x, dtype=np.float64)
    if (from_units, to_units) not in factors:
        raise SpecError(f"cannot convert {from_units!r} to {to_units!r}; units are 'g' or 'm/s^2'")
    return np.asarray(x, dtype=np.float64) * factors[(from_units, to_units)]


# ---------------------------------------------------------------- normalization

def zscore_(x: np.ndarray, axis: int, mean: np.ndarray | None = None, scale: np.ndarray | None = None,
            min_std: float = 0.0) -> np.ndarray:
    """In place: x <- (x - mean) / max(std, min_std) along `axis` (population std); a constant axis gives 0 (as
    the Kaggle 1st place; "constant" up to rounding: std <= 1e-12 max(1, |mean|)). The one z-score of the project: `normalize`,
    `prepare`, `patchify` and the streaming encoder (`deploy.batching.WindowEncoder`) all call it. `x` is a float64
    array; `mean` and `scale` are optional scratch shaped like x reduced over `axis` with keepdims (the daemon
    passes them, so a hop allocates nothing here)."""
    axis = axis % x.ndim
    n = x.shape[axis]
    mean = np.add.reduce(x, axis=axis, keepdims=True, out=mean)
    np.divide(mean, n, out=mean)
    np.subtract(x, mean, out=x)
    letters = "abcdefghij"[:x.ndim]  # sum of squares along axis without a squared copy of x
    spec = f"{letters},{letters}->{letters.replace(letters[axis], '')}"
    if scale is None:
        scale = np.empty_like(mean)
    np.einsum(spec, x, x, out=np.squeeze(scale, axis))
    np.divide(scale, n, out=scale)
    np.sqrt(scale, out=scale)
    if min_std:
        np.maximum(scale, min_std, out=scale)
    # 1 / std where the axis varies; elsewhere it becomes 0. "Varies" allows for rounding: the mean of a constant
    # that is not exact in binary (0.1) leaves |x - mean| ~ 1e-17, which must not be blown up to +-1.
    positive = scale > 1e-12 * np.maximum(1.0, np.abs(mean))
    np.divide(1.0, scale, out=scale, where=positive)
    np.multiply(x, scale, out=x)
    if not positive.all():
        x[np.broadcast_to(~positive, x.shape)] = 0.0
    return x


def _zscore(x: np.ndarray, axis) -> np.ndarray:
    return zscore_(np.array(x, dtype=np.float64), axis)


class RunningNormalizer:
    """Causal per-axis z-score with exponentially forgetting statistics.

    Statistics (mean and mean square per axis) are updated once per completed block of `block_s` seconds, with
    weight alpha_k = max(1 - exp(-block_s / tau_s), 1 / k) for the k-th block (a plain average until the
    exponential takes over, so early estimates are not biased). Every sample is normalized with the statistics
    of the blocks completed *before* it; samples of the first block, before any statistics exist, give 0.
    Because a block's statistics depend only on its own samples, chunked calls give exactly one call's output.
    """

    def __init__(self, rate_hz: float, tau_s: float = 30.0, block_s: float = 1.0):
        self.block = max(1, int(round(block_s * rate_hz)))
        self.alpha = 1.0 - math.exp(-block_s / tau_s)
        self.mean = self.meansq = None
        self._blocks = 0
        self._pending = None  # samples of the current, incomplete block

    def _scale(self, x):
        if self.mean is None:
            return np.zeros_like(x)
        var = np.maximum(self.meansq - self.mean ** 2, 0.0)
        std = np.sqrt(var)
        ok = std > 1e-9 * np.maximum(1.0, np.abs(self.mean))
        return np.where(ok, (x - self.mean) / np.where(ok, std, 1.0), 0.0)

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        chunk = np.asarray(chunk, dtype=np.float64)
        out = np.empty_like(chunk)
        i = 0
        while i < len(chunk):
            have = 0 if self._pending is None else len(self._pending)
            take = min(self.block - have, len(chunk) - i)
            part = chunk[i:i + take]
            out[i:i + take] = self._scale(part)
            self._pending = part if self._pending is None else np.concatenate([self._pending, part])
            if len(self._pending) == self.block:
                self._blocks += 1
                a = max(self.alpha, 1.0 / self._blocks)
                m, msq = self._pending.mean(axis=0), (self._pending ** 2).mean(axis=0)
                self.mean = m if self.mean is None else (1 - a) * self.mean + a * m
                self.meansq = msq if self.meansq is None else (1 - a) * self.meansq + a * msq
                self._pending = None
            i += take
        return out


def normalize(x: np.ndarray, mode: str, rate_hz: float | None = None, tau_s: float = 30.0,
              block_s: float = 1.0) -> np.ndarray:
    """One-shot normalization of (n, 3) along time. "window" here treats `x` as one window."""
    x = np.asarray(x, dtype=np.float64)
    if mode in ("recording", "window"):
        return _zscore(x, axis=0)
    if mode == "running":
        if rate_hz is None:
            raise SpecError("running normalization needs rate_hz")
        return RunningNormalizer(rate_hz, tau_s, block_s)(x)
    raise SpecError(f"normalization {mode!r} is not one of {NORMALIZATIONS}")


# ---------------------------------------------------------------- gravity alignment

def gravity_rotation(mean: np.ndarray, units: str = "g") -> np.ndarray:
    """The smallest rotation R (3x3) with R @ mean along -AccV: Rodrigues' I + K + K^2 / (1 + c), axis
    a x (-1, 0, 0) = (0, -z, y), c = -x, written out (np.cross and matrix products cost more than the rest of a
    window's frame). Identity when |mean| is below 0.1 g (no gravity: a sensor reading zeros, a centred signal)."""
    x, y, z = (float(v) for v in mean)
    norm = math.sqrt(x * x + y * y + z * z)
    if norm < 0.1 * (STANDARD_GRAVITY if units == "m/s^2" else 1.0):
        return np.eye(3)
    x, y, z = x / norm, y / norm, z / norm
    if x > 1.0 - 1e-9:                       # pointing straight up: turn half a circle about AccAP
        return np.diag([-1.0, -1.0, 1.0])
    f = 1.0 / (1.0 - x)
    return np.array([[1.0 - (y * y + z * z) * f, -y, -z],
                     [y, 1.0 - y * y * f, -y * z * f],
                     [z, -y * z * f, 1.0 - z * z * f]])


def window_frame(window: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The rotation (or rotation and mirror) R, 3x3, that `spec` applies to one window given axis-first, (3, W):
    R @ window is what the model sees. Gravity (the window's mean) onto -AccV; with horizontal "principal", the
    horizontal plane onto the principal axes of the window's horizontal acceleration, larger variance first, each
    axis's sign making the third moment along it >= 0. R depends only on the window's samples: for any orthogonal
    Q, window_frame(Q @ w) @ Q equals window_frame(w) (up to rounding and ties), the invariance the model relies on.
    `patchify` and the streaming encoder both call this, on a C-contiguous (3, W) float64 array."""
    rotation = gravity_rotation(window.mean(axis=1), spec.units)
    if spec.horizontal == "sensor":
        return rotation
    plane = rotation[1:] @ window                      # (2, W) horizontal components
    plane -= plane.mean(axis=1, keepdims=True)
    (sxx, sxy), (_, syy) = plane @ plane.T
    angle = 0.5 * math.atan2(2.0 * sxy, sxx - syy)     # the larger principal axis of the 2x2 covariance
    axes = np.array([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]])   # larger, smaller
    axes *= np.where(((a := axes @ plane) * a * a).sum(axis=1) < 0, -1.0, 1.0)[:, None]   # third moment >= 0
    return np.vstack([rotation[:1], axes @ rotation[1:]])


# ---------------------------------------------------------------- model input / output

def patchify(windows: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """(B, window, 3) prepared samples -> model input: "window" z-score (if the spec says so), / scale, then
    (B, patch*3, n_patches) for "BCT" or (B, n_patches, patch*3) for "BTC", features [v0, ml0, ap0, v1, ...]."""
    windows = np.array(windows, dtype=np.float64)
    if windows.ndim == 2:
        windows = windows[None]
    if windows.shape[1:] != (spec.window, 3):
        raise SpecError(f"windows must be (B, {spec.window}, 3), got {windows.shape}")
    if spec.gravity_align:
        for w in windows:
            w[:] = w @ window_frame(np.ascontiguousarray(w.T), spec).T
    if spec.normalization == "window":
        zscore_(windows, axis=1, min_std=spec.min_std)
    tokens = (windows / spec.scale).reshape(len(windows), spec.n_patches, spec.patch * 3)
    if spec.layout == "BCT":
        tokens = tokens.transpose(0, 2, 1)
    return np.ascontiguousarray(tokens, dtype=np.float32)


def unpatchify(probs: np.ndarray, patch: int) -> np.ndarray:
    """(B, n_patches, C) per-patch outputs -> (B, n_patches*patch, C), each value tiled over its patch."""
    return np.repeat(np.asarray(probs), patch, axis=1)


def cut_blocks(x: np.ndarray, window: int, stride: int, pad: str = "zeros") -> tuple[np.ndarray, np.ndarray]:
    """Blocks of `window` samples starting every `stride` samples until the signal is covered; the last block is
    padded past the end (zeros, as the 1st place, or "edge"). Returns (blocks (nb, window, ...), starts)."""
    x = np.asarray(x)
    n = len(x)
    if stride < 1 or window < 1:
        raise SpecError("window and stride must be positive")
    if stride > window:
        raise SpecError(f"stride {stride} > window {window} would leave samples uncovered")
    last = max(0, -(-(n - window) // stride) * stride)
    starts = np.arange(0, last + 1, stride)
    need = starts[-1] + window - n
    if need > 0:
        if pad == "edge" and n:
            x = np.concatenate([x, np.repeat(x[-1:], need, axis=0)])
        else:
            x = np.concatenate([x, np.zeros((need,) + x.shape[1:], dtype=x.dtype)])
    blocks = np.stack([x[s:s + window] for s in starts])
    return blocks, starts


def overlap_average(preds: np.ndarray, starts: np.ndarray, n: int) -> np.ndarray:
    """Average block predictions (nb, window, C) placed at `starts` into one (n, C) timeline (parts past n dropped)."""
    preds = np.asarray(preds, dtype=np.float64)
    total = np.zeros((n,) + preds.shape[2:])
    count = np.zeros(n)
    for p, s in zip(preds, starts):
        e = min(n, s + len(p))
        if e > s:
            total[s:e] += p[:e - s]
            count[s:e] += 1
    if n and count.min() == 0:
        raise SpecError("some samples are covered by no block")
    return total / count.reshape((n,) + (1,) * (total.ndim - 1))


def prepare(recording, spec: PreprocessSpec) -> np.ndarray:
    """Recording -> (n', 3) float32 at the model rate and units, normalized per spec ("window" is left to
    patchify; "running" runs causally from the first sample)."""
    x = convert_units(recording.acc, recording.units, spec.units)
    if recording.rate_hz != spec.rate_hz:
        x = resample(x, recording.rate_hz, spec.rate_hz)
    if spec.normalization == "recording":
        x = _zscore(x, axis=0)
    elif spec.normalization == "running":
        x = RunningNormalizer(spec.rate_hz, spec.running_tau_s, spec.running_block_s)(x)
    return x.astype(np.float32)


class StreamingPreparer:
    """`prepare` for a stream: units -> Resampler -> RunningNormalizer (if the spec says "running") -> float32.

    `process(chunk)` returns the prepared samples that are complete (the resampler holds back about `delay_s`),
    `flush()` the rest at the end of the stream; together they equal `prepare` of the whole recording exactly.
    "recording" normalization needs the whole recording: it raises unless `approximate_recording=True`, which
    substitutes "running" (with the spec's time constant) and sets `approximated`.
    """

    def __init__(self, spec: PreprocessSpec, input_rate_hz: float, input_units: str,
                 approximate_recording: bool = False):
        self.spec, self.input_units = spec, input_units
        self.approximated = False
        mode = spec.normalization
        if mode == "recording":
            if not approximate_recording:
                raise SpecError("normalization 'recording' needs the whole recording, which a stream never has: "
                                "use a bundle made with 'running' or 'window' normalization, or allow the "
                                "running approximation (approximate_recording=True)")
            mode, self.approximated = "running", True
        self.resampler = Resampler(input_rate_hz, spec.rate_hz) if input_rate_hz != spec.rate_hz else None
        self.normalizer = (RunningNormalizer(spec.rate_hz, spec.running_tau_s, spec.running_block_s)
                           if mode == "running" else None)

    @property
    def delay_s(self) -> float:
        return self.resampler.delay_s if self.resampler else 0.0

    def _finish(self, x: np.ndarray) -> np.ndarray:
        if self.normalizer is not None and len(x):
            x = self.normalizer(x)
        return np.asarray(x, dtype=np.float64).reshape(-1, 3).astype(np.float32)

    def process(self, chunk: np.ndarray) -> np.ndarray:
        x = convert_units(np.asarray(chunk, dtype=np.float64).reshape(-1, 3), self.input_units, self.spec.units)
        if self.resampler is not None:
            x = self.resampler.process(x)
        return self._finish(x)

    def flush(self) -> np.ndarray:
        if self.resampler is None:
            return np.zeros((0, 3), np.float32)
        out = self.resampler.flush()
        return self._finish(out) if len(out) else np.zeros((0, 3), np.float32)
