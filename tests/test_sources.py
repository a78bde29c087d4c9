"""Sources: line parsing accounts for garbage, replay paces by the clock, UDP carries several samples per datagram."""
from __future__ import annotations

import importlib.util
import socket
import threading
import time

import numpy as np
import pytest

from deploy.errors import FogError
from deploy.recording import write_recording
from deploy.sources import ReplaySource, UdpSource, open_source, parse_lines
from tests.test_stream import walking_recording


def test_parse_lines_counts_every_bad_line():
    chunk = parse_lines(["0.0,1,2,3", "0.015625 1 2 3", "", "# header", "t,AccV,AccML,AccAP", "1,2", "1,2,3,4,5",
                         "0.03125,nan,0,0"])
    assert len(chunk.t) == 3 and chunk.rejected == {"parse": 1, "columns": 2}
    assert chunk.received == 6
    assert np.isnan(chunk.acc[2, 0])  # NaN is the intake's to judge, with the stream's history


class VirtualClock:
    """Stands in for the `time` module of deploy.sources: sleeping advances the clock, and nothing else does, so
    pacing is counted in the seconds the source asked to wait, not measured on a busy machine."""

    def __init__(self):
        self.now, self.slept = 1000.0, 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


def test_replay_realtime_paces_and_fast_does_not(tmp_path, monkeypatch):
    import deploy.sources

    path = tmp_path / "r.npz"
    write_recording(walking_recording(2.0), path, "npz")
    stop = threading.Event()
    clock = VirtualClock()
    monkeypatch.setattr(deploy.sources, "time", clock)
    chunks = []
    ReplaySource(path, realtime=True, speed=4.0).run(chunks.append, stop)
    assert sum(len(c.t) for c in chunks) == 128 and np.allclose(np.diff(np.concatenate([c.t for c in chunks])),
                                                                1 / 64)
    for chunk in chunks:   # each chunk handed over once its last sample is due at 4x real time, not before
        due = 1000.0 + chunk.t[-1] / 4.0
        assert due <= chunk.arrival < due + 0.1
    assert clock.slept == pytest.approx(chunks[-1].t[-1] / 4.0, abs=0.1)   # 2 s of signal: ~0.5 s of waiting
    chunks.clear()
    clock.slept = 0.0
    ReplaySource(path).run(chunks.append, stop)
    assert clock.slept == 0.0 and sum(len(c.t) for c in chunks) == 128   # as fast as possible: never waits


def test_udp_source_reads_multi_sample_datagrams():
    source = UdpSource(port=0)
    got, stop = [], threading.Event()
    thread = threading.Thread(target=source.run, args=(got.append, stop), daemon=True)
    thread.start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"0.0,1,0,0\n0.015625,1,0,0\n0.03125,1,0,0", ("127.0.0.1", source.port))
        s.sendto(b"\xc3\x28", ("127.0.0.1", source.port))
    deadline = time.monotonic() + 5
    while len(got) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    thread.join(timeout=2)
    assert not thread.is_alive()
    assert len(got[0].t) == 3 and got[1].rejected == {"encoding": 1}


def test_unknown_source_and_busy_port_are_user_errors():
    with pytest.raises(FogError, match="unknown source"):
        open_source("carrier-pigeon")
    first = UdpSource(port=0)
    with pytest.raises(FogError, match="cannot listen"):
        UdpSource(port=first.port)
    first.sock.close()


def test_serial_source_reports_a_missing_device():
    pytest.importorskip("serial", reason="pyserial is not installed")
    with pytest.raises(FogError, match="cannot open serial device"):
        open_source("serial", device="/dev/does-not-exist")


def test_lsl_source_reads_an_outlet():
    if importlib.util.find_spec("pylsl") is None:
        pytest.skip("pylsl is not installed here (pip install 'fog-edge-toolkit[lsl]')")
    import pylsl
    info = pylsl.StreamInfo("fog-test-imu", "Accelerometer", 3, 64, "float32", "fog-test")
    outlet = pylsl.StreamOutlet(info)
    source = open_source("lsl", stream_name="fog-test-imu", resolve_s=5.0)
    got, stop = [], threading.Event()
    thread = threading.Thread(target=source.run, args=(got.append, stop), daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while sum(len(c.t) for c in got) < 10 and time.monotonic() < deadline:
        outlet.push_sample([-1.0, 0.0, 0.1])
        time.sleep(1 / 64)
    stop.set()
    thread.join(timeout=2)
    assert sum(len(c.t) for c in got) >= 10 and got[0].acc.shape[1] == 3
