"""Anti-aliased resampling, one-shot and streaming (numpy only; `deploy.preprocess` applies it)."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from deploy.errors import SpecError


def _ratio(from_hz: float, to_hz: float) -> tuple[int, int]:
    r = Fraction(to_hz / from_hz).limit_denominator(1000)
    if abs(float(r) - to_hz / from_hz) > 1e-9 * to_hz / from_hz:
        raise SpecError(f"cannot resample {from_hz} Hz to {to_hz} Hz with a small rational ratio")
    return r.numerator, r.denominator


class Resampler:
    """Streaming polyphase resampler: windowed-sinc FIR (Kaiser, `zero_crossings` per side), cutoff at `cutoff`
    times the lower Nyquist, each phase normalized to unit DC gain (gravity passes unchanged).

    Output m is the value at time m / to_hz. The filter is centred (zero phase), so output m needs inputs up to
    m*down/up + half-width: `process` returns the outputs that are complete, `flush` the rest, extending the signal
    by its last sample; before the start the first sample is repeated. `process` chunks then `flush` give exactly
    `resample(x)` for the whole signal, which returns ceil(n * to / from) samples.
    """

    def __init__(self, from_hz: float, to_hz: float, zero_crossings: int = 24, cutoff: float = 0.92,
                 beta: float = 8.0):
        self.up, self.down = _ratio(from_hz, to_hz)
        self._from_hz = float(from_hz)
        big = max(self.up, self.down)
        half = zero_crossings * big / cutoff  # half width, in upsampled samples
        self.j_lo, self.j_hi = -math.ceil(half / self.up), math.ceil(half / self.up)
        j = np.arange(self.j_lo, self.j_hi + 1)
        phase = np.arange(self.up)[:, None]
        d = phase - j[None, :] * self.up  # distance (upsampled samples) from output to input tap
        fc = cutoff * 0.5 / big
        window = np.where(np.abs(d) <= half, np.i0(beta * np.sqrt(np.clip(1 - (d / half) ** 2, 0, None))), 0.0)
        taps = 2 * fc * np.sinc(2 * fc * d) * window / np.i0(beta)
        self.taps = taps / taps.sum(axis=1, keepdims=True)  # (up, n_taps)
        self._buf = None        # inputs not yet fully used, starting at absolute index self._buf_start
        self._buf_start = 0
        self._n_in = 0
        self._m = 0             # next output index

    @property
    def delay_s(self) -> float:
        """How long after an input sample arrives the outputs around it are complete (the filter's half width)."""
        return (self.j_hi + 1) / self._from_hz

    def _compute(self, m_end: int, final: bool, piece: int = 4096) -> np.ndarray:
        # in pieces, so memory stays small; each output is the same sum whatever the piece boundaries
        parts = [self._compute_piece(min(m_end, m + piece), final) for m in range(self._m, m_end, piece)]
        return np.concatenate(parts) if parts else np.zeros((0,) + self._buf.shape[1:])

    def _compute_piece(self, m_end: int, final: bool) -> np.ndarray:
        m = np.arange(self._m, m_end)
        pos = m * self.down
        base, phase = pos // self.up, pos % self.up
        idx = base[:, None] + np.arange(self.j_lo, self.j_hi + 1)[None, :]
        idx = np.clip(idx, 0, self._n_in - 1 if final else None) - self._buf_start
        idx = np.clip(idx, 0, None)  # before the start: the first sample (kept in the buffer while needed)
        w = self.taps[phase]
        out = (w[:, :, None] * self._buf[idx]).sum(axis=1)
        self._m = m_end
        return out

    def process(self, chunk: np.ndarray) -> np.ndarray:
        chunk = np.asarray(chunk, dtype=np.float64)
        squeeze = self._squeeze = chunk.ndim == 1
        if len(chunk) == 0:
            return chunk
        chunk = chunk.reshape(len(chunk), -1)
        self._buf = chunk if self._buf is None else np.concatenate([self._buf, chunk])
        self._n_in += len(chunk)
        # output m is complete when its last tap base + j_hi < n_in
        last_base = self._n_in - 1 - self.j_hi  # outputs whose taps all lie inside the received input
        m_end = max(self._m, -(-(last_base + 1) * self.up // self.down) if last_base >= 0 else 0)
        m_end = min(m_end, -(-self._n_in * self.up // self.down))
        out = self._compute(m_end, final=False)
        self._trim()
        return out[:, 0] if squeeze else out

    def flush(self) -> np.ndarray:
        if self._buf is None:
            return np.zeros((0,))
        out = self._compute(-(-self._n_in * self.up // self.down), final=True)
        return out[:, 0] if self._squeeze else out

    def _trim(self):
        # keep from the first input the next output can touch (never drop sample 0 while it pads the start)
        first = (self._m * self.down) // self.up + self.j_lo
        first = max(0, min(first, self._n_in - 1))
        if first > self._buf_start:
            self._buf = self._buf[first - self._buf_start:]
            self._buf_start = first


def resample(x: np.ndarray, from_hz: float, to_hz: float) -> np.ndarray:
    """Anti-aliased resampling of (n,) or (n, k) along axis 0; returns ceil(n * to_hz / from_hz) samples."""
    if from_hz == to_hz:
        return np.asarray(x, dtype=np.float64)
    rs = Resampler(from_hz, to_hz)
    squeeze = np.ndim(x) == 1
    out = np.concatenate([rs.process(np.asarray(x).reshape(len(x), -1)), rs.flush()])
    return out[:, 0] if squeeze else out
