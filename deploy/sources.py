"""Sensor sources: each yields chunks of timestamped samples (seconds, AccV/AccML/AccAP in the source's units).

Line format (stdin, UDP, serial), one sample per line, comma or whitespace separated:

    t,AccV,AccML,AccAP          e.g.  12.015625,-0.98,0.05,0.11

`t` is the sensor's timestamp in seconds (any origin, increasing). Blank lines and lines starting with `#` are
ignored. A UDP datagram carries one or more such lines (UTF-8, newline separated, up to 64 KiB).
Anything else is counted as dropped with a reason (`parse`, `columns`, `encoding`) and never stops the source.
Checks that need the stream's history (order, duplicates, gaps, NaN) happen in `deploy.intake`.

A source runs in its own thread: `run(emit, stop)` calls `emit(chunk)` until the data ends or `stop` is set, and
never blocks longer than `POLL_S` without looking at `stop`.
"""
from __future__ import annotations

import logging
import os
import socket
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from deploy.blocks import BLOCK_ROWS, open_replay
from deploy.errors import FogError
from deploy.lazy import lazy_import, require

serial = lazy_import("serial", "serial", "the serial source", package="pyserial")
pylsl = lazy_import("pylsl", "lsl", "the Lab Streaming Layer source")

log = logging.getLogger("deploy.sources")

POLL_S = 0.2
MAX_DATAGRAM = 65535


@dataclass
class Chunk:
    t: np.ndarray                 # (k,) float64 seconds
    acc: np.ndarray               # (k, 3) float64, source units
    arrival: float = 0.0          # time.monotonic() when it arrived
    rejected: dict = field(default_factory=dict)  # reason -> samples that could not be parsed
    lost_datagrams: int = 0       # UDP: datagrams the kernel dropped (receive buffer full) before this one
    example: str | None = None    # the first rejected line, as received (for the warning that names the fix)
    device: str | None = None     # the wearer it belongs to (the gateway's sources, deploy.sources_multi)

    @property
    def received(self) -> int:
        return len(self.t) + sum(self.rejected.values())


# What each rejected line's reason means, and the fix (logged with the first such line, deploy.daemon)
REJECT_FIX = {
    "columns": "a line holds 4 fields, t,AccV,AccML,AccAP (seconds, then the three axes; comma or whitespace "
               "separated): send exactly those",
    "parse": "every field must be a number (seconds, then the three axes in the source's units)",
    "encoding": "lines must be UTF-8 text",
}


def parse_lines(lines) -> Chunk:
    """Parse text lines into a chunk; bad lines are counted, never raised (the first is kept as `example`)."""
    rows, rejected, example = [], {}, None
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.replace(",", " ").split()
        reason = "columns" if len(parts) != 4 else None
        if reason is None:
            try:
                rows.append([float(p) for p in parts])
            except ValueError:
                reason = "parse"
        if reason is not None:
            rejected[reason] = rejected.get(reason, 0) + 1
            example = example or line[:120]
    data = np.array(rows, dtype=np.float64).reshape(-1, 4)
    return Chunk(data[:, 0].copy(), data[:, 1:].copy(), time.monotonic(), rejected, example=example)


def parse_bytes(data: bytes, split: bool = True) -> Chunk:
    """Parse received bytes (a datagram of lines, or with `split=False` one serial line); bytes that are not UTF-8
    are one rejected sample (`encoding`)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return Chunk(np.empty(0), np.empty((0, 3)), time.monotonic(), {"encoding": 1})
    return parse_lines(text.splitlines() if split else [text])


def pump_bytes(read, emit, stop, close, split: bool = True) -> None:
    """Emit what `read()` returns (bytes; empty or None when nothing came within a poll), parsed, until `stop` is
    set; `close()` at the end, whatever happens."""
    try:
        while not stop.is_set():
            data = read()
            if data:
                chunk = parse_bytes(data, split)
                if chunk.received:
                    emit(chunk)
    finally:
        close()


class SensorSource:
    name = "source"
    live = True             # live sources drop when the pipeline is behind; replay waits instead

    def __init__(self, units: str = "g", rate_hz: float | None = None):
        self.units = units
        self.rate_hz = rate_hz  # nominal sensor rate; None = the model rate

    def run(self, emit, stop) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


class ReplaySource(SensorSource):
    """Replay a recording file (any layout `deploy.recording.read_recording` reads: CSV or npz).

    `realtime=True` paces chunks by the wall clock (`speed` x real time); otherwise as fast as the pipeline takes them.
    Timestamps honour the file's time column (`replay_times`: in samples for the Kaggle layouts, in the mapping's
    unit otherwise), so a gap in it is a gap for the intake (interpolated or a reset, as live); without one they are
    `start_s + i / rate_hz`.
    """
    name = "replay"
    live = False

    def __init__(self, path, layout=None, realtime=False, speed=1.0, chunk_s=None, start_s=0.0, recording=None,
                 **kw):
        # a long CSV is read a block at a time (deploy.blocks): memory does not grow with the file
        self.recording, self.blocks = (recording, iter([recording])) if recording is not None \
            else open_replay(path, layout=layout)
        super().__init__(units=self.recording.units, rate_hz=self.recording.rate_hz)
        self.path, self.realtime, self.speed, self.start_s = path, realtime, float(speed), float(start_s)
        # a sensor's packet in real time; bigger chunks when as fast as possible (fewer queue hand-overs)
        chunk_s = chunk_s or (0.25 if realtime else 0.5)
        self.chunk = max(1, int(round(chunk_s * self.recording.rate_hz)))

    def describe(self) -> str:
        rec = self.recording
        size = "in blocks" if rec.n_samples >= BLOCK_ROWS else f"{rec.n_samples} samples"
        return (f"replay {self.path or 'recording'} ({size} at {rec.rate_hz:g} Hz, {rec.units}, "
                f"{'x%g real time' % self.speed if self.realtime else 'as fast as possible'})")

    def run(self, emit, stop) -> None:
        wall0, origin, done = time.monotonic(), None, 0
        for rec in self.blocks:
            t_all, origin = replay_times(rec, origin, done)
            t_all += self.start_s
            done += rec.n_samples
            for i in range(0, rec.n_samples, self.chunk):
                if stop.is_set():
                    return
                j = min(i + self.chunk, rec.n_samples)
                if self.realtime:
                    due = wall0 + (t_all[j - 1] - self.start_s) / self.speed
                    while (wait := due - time.monotonic()) > 0 and not stop.is_set():
                        time.sleep(min(wait, POLL_S))
                emit(Chunk(t_all[i:j], rec.acc[i:j], time.monotonic()))


def replay_times(rec, origin: float | None = None, done: int = 0) -> tuple[np.ndarray, float | None]:
    """(seconds of each sample, origin) for a recording or a block of one: from its time column when it has one
    (in samples for the Kaggle layouts, else in the mapping's unit; `origin` is the first block's first value),
    else from the sample index (`done` samples came in earlier blocks)."""
    if rec.time is None or len(rec.time) != rec.n_samples:
        return (done + np.arange(rec.n_samples)) / rec.rate_hz, origin
    time_col = np.asarray(rec.time, dtype=np.float64)
    origin = float(time_col[0]) if origin is None else origin
    unit = str(rec.meta.get("time_unit", "samples")) if isinstance(rec.meta, dict) else "samples"
    scale = {"s": 1.0, "ms": 1e-3}.get(unit, 1.0 / rec.rate_hz)
    return (time_col - origin) * scale, origin


class StdinSource(SensorSource):
    """Lines on stdin. A pipe has its own back-pressure (the writer blocks while the daemon is busy), so by default
    nothing is dropped; `live=True` drops and counts instead, for writers that must never block."""
    name = "stdin"
    live = False

    def __init__(self, stream=None, live=False, **kw):
        super().__init__(**kw)
        self.stream = stream or sys.stdin
        self.live = bool(live)

    def run(self, emit, stop) -> None:
        # readline blocks; the daemon runs sources in daemon threads, so a silent stdin never blocks shutdown.
        for line in self.stream:
            if stop.is_set():
                return
            chunk = parse_lines([line])
            if chunk.received:
                emit(chunk)


class UdpSource(SensorSource):
    name = "udp"

    def __init__(self, host="127.0.0.1", port=5005, rcvbuf=1 << 20, **kw):
        super().__init__(**kw)
        self.host, self.port = host, int(port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, int(rcvbuf))
        # Linux counts the datagrams it dropped for a full receive buffer and hands the count over with each one;
        # the count of drops after the last datagram is read from /proc/net/udp (kernel_drops)
        self.overflow = hasattr(socket, "SO_RXQ_OVFL") or sys.platform.startswith("linux")
        if self.overflow:
            self.sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RXQ_OVFL", 40), 1)
        self.dropped_so_far = 0
        try:
            self.sock.bind((self.host, self.port))
        except OSError as exc:
            raise FogError(f"cannot listen on udp {self.host}:{self.port} ({exc.strerror}); "
                           "pick a free port with --udp-port") from None
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(POLL_S)
        self.inode = os.fstat(self.sock.fileno()).st_ino   # its line in /proc/net/udp

    def describe(self) -> str:
        return f"udp {self.host}:{self.port}"

    def _dropped_total(self, total: int) -> int:
        """Datagrams dropped since the last count, given the kernel's running total for this socket."""
        lost = (total - self.dropped_so_far) % (1 << 32) if total != self.dropped_so_far else 0
        self.dropped_so_far = total
        return lost

    def _receive(self) -> tuple[bytes | None, int]:
        """(datagram or None, datagrams the kernel dropped since the last count): with a datagram, the count comes
        with it (SO_RXQ_OVFL); without one (a quiet moment), from /proc/net/udp."""
        try:
            data, ancillary, _, _ = self.sock.recvmsg(MAX_DATAGRAM, socket.CMSG_SPACE(4))
        except socket.timeout:
            total = kernel_drops(self.inode)
            return None, (0 if total is None else self._dropped_total(total))
        lost = 0
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == getattr(socket, "SO_RXQ_OVFL", 40) and len(value) >= 4:
                lost = self._dropped_total(int.from_bytes(value[:4], sys.byteorder))
        return data, lost

    def run(self, emit, stop) -> None:
        lost = 0
        try:
            while not stop.is_set():
                data, dropped = self._receive()
                lost += dropped
                chunks = (self._parse(data) if data else []) or [Chunk(np.empty(0), np.empty((0, 3)),
                                                                       time.monotonic())]
                chunks[0].lost_datagrams, lost = lost, 0
                for chunk in chunks:
                    if chunk.received or chunk.lost_datagrams:
                        emit(chunk)
        finally:   # drops after the last datagram have no datagram to bring their count: read it now
            total = kernel_drops(self.inode)
            if total is not None and (lost := lost + self._dropped_total(total)):
                emit(Chunk(np.empty(0), np.empty((0, 3)), time.monotonic(), lost_datagrams=lost))
            self.sock.close()


    def _parse(self, data: bytes) -> list:
        """The chunks a datagram holds (one here; the gateway's UDP source: one per wearer it names)."""
        return [parse_bytes(data)]


def kernel_drops(inode: int) -> int | None:
    """The kernel's count of datagrams dropped for the UDP socket with this inode (Linux /proc/net/udp, `drops`, the
    same counter SO_RXQ_OVFL reports); None where there is no such file."""
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as fh:
                next(fh)
                for line in fh:
                    fields = line.split()
                    if len(fields) > 12 and fields[9] == str(inode):
                        return int(fields[12])
        except (OSError, StopIteration, ValueError):
            continue
    return None


class SerialSource(SensorSource):
    """A serial device (USB CDC or UART) sending the line format; needs pyserial."""
    name = "serial"

    def __init__(self, device="/dev/ttyUSB0", baud=115200, **kw):
        super().__init__(**kw)
        require(serial)
        try:
            self.port = serial.Serial(device, int(baud), timeout=POLL_S)
        except (serial.SerialException, OSError) as exc:
            raise FogError(f"cannot open serial device {device} ({exc}); check the path and that this user is in "
                           "the 'dialout' group") from None
        self.device = device

    def describe(self) -> str:
        return f"serial {self.device}"

    def run(self, emit, stop) -> None:
        pump_bytes(self.port.readline, emit, stop, self.port.close, split=False)


class LslSource(SensorSource):
    """A Lab Streaming Layer stream (pylsl): the first three channels are AccV, AccML, AccAP (or `channels`)."""
    name = "lsl"

    def __init__(self, stream_name=None, stream_type="Accelerometer", channels=(0, 1, 2), resolve_s=10.0, **kw):
        super().__init__(**kw)
        require(pylsl)
        prop, value = ("name", stream_name) if stream_name else ("type", stream_type)
        found = pylsl.resolve_byprop(prop, value, timeout=resolve_s)
        if not found:
            raise FogError(f"no LSL stream with {prop}={value!r} found within {resolve_s:g} s; is the sender running "
                           "on this network?")
        info = found[0]
        if info.channel_count() < max(channels) + 1:
            raise FogError(f"LSL stream {info.name()!r} has {info.channel_count()} channels; need channels "
                           f"{list(channels)}")
        self.inlet = pylsl.StreamInlet(info, max_buflen=30)
        self.channels = list(channels)
        self.rate_hz = self.rate_hz or (info.nominal_srate() or None)
        self.stream_name = info.name()

    def describe(self) -> str:
        return f"lsl {self.stream_name}"

    def run(self, emit, stop) -> None:
        while not stop.is_set():
            samples, stamps = self.inlet.pull_chunk(timeout=POLL_S, max_samples=1024)
            if stamps:
                data = np.asarray(samples, dtype=np.float64)
                emit(Chunk(np.asarray(stamps, dtype=np.float64), data[:, self.channels], time.monotonic()))


SOURCES = {"replay": ReplaySource, "stdin": StdinSource, "udp": UdpSource, "serial": SerialSource,
           "lsl": LslSource}


def open_source(kind: str, **options) -> SensorSource:
    if kind not in SOURCES:
        raise FogError(f"unknown source {kind!r}; choose one of {sorted(SOURCES)}")
    return SOURCES[kind](**options)
