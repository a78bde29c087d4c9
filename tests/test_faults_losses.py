"""Every loss counted (issue 28): the kernel's UDP drops after the last datagram, a UDP sink's refused messages, and
Prometheus counters read as one consistent snapshot."""
from __future__ import annotations

import queue
import socket
import threading
import time

from deploy.counters import Counters
from deploy.feed import Feed
from deploy.sinks import UdpSink
from deploy.sources import UdpSource
from tests.daemon_harness import Taken, wait_until


def test_udp_drops_after_the_last_datagram_are_counted_without_another_one():
    source = UdpSource(port=0, rcvbuf=4096, rate_hz=64.0)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent = 3000
    for i in range(sent):                                      # a burst the small buffer cannot hold, then silence
        sender.sendto(f"{i / 64:.6f},-1,0,0".encode(), ("127.0.0.1", source.port))
    sender.close()
    counters, inbox, stop = Counters(), queue.Queue(maxsize=100_000), threading.Event()
    feed = Feed(source, inbox, counters, stop)
    feed.start()
    take = Taken(inbox)
    # what was queued is read, then a quiet poll finds the drops: wait for that, not for a guessed time
    wait_until(lambda: counters.kernel_dropped_datagrams > 0 and take() + counters.kernel_dropped_datagrams >= sent,
               what="every datagram received or counted as dropped")
    stop.set()
    feed.finish()
    assert counters.kernel_dropped_datagrams > 0
    assert take() + counters.kernel_dropped_datagrams == sent


def test_udp_drops_are_read_at_the_end_even_without_a_quiet_poll():
    source = UdpSource(port=0, rcvbuf=4096, rate_hz=64.0)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(2000):
        sender.sendto(b"0,-1,0,0", ("127.0.0.1", source.port))
    counters, inbox, stop = Counters(), queue.Queue(maxsize=100_000), threading.Event()
    stop.set()                                                 # stopped before it reads anything: all is in the end
    feed = Feed(source, inbox, counters, stop)
    feed.start()
    feed.finish()
    assert counters.kernel_dropped_datagrams > 0                # the drops, read from /proc/net/udp at the end


def _closed_port() -> int:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


def test_udp_sink_to_a_closed_port_counts_every_message():
    sink = UdpSink(host="127.0.0.1", port=_closed_port())
    for i in range(24):
        sink.send({"type": "onset", "class": "Turn", "i": i})
        time.sleep(0.002)
    sink.close()
    assert sink.failures == 24


def test_udp_sink_that_delivers_counts_nothing():
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    sink = UdpSink(host="127.0.0.1", port=peer.getsockname()[1])
    for i in range(24):
        sink.send({"type": "onset", "class": "Turn", "i": i})
    sink.close()
    peer.settimeout(1)
    assert sink.failures == 0 and sum(1 for _ in range(24) if peer.recv(4096)) == 24
    peer.close()


class _SwitchingLock:
    """A lock that lets the pipeline thread run as it is released (what the interpreter may do at any moment): the
    pipeline receives a sample and accepts it, as `_process` does."""

    def __init__(self, counters):
        self.inner, self.counters = threading.Lock(), counters

    def __enter__(self):
        self.inner.acquire()

    def __exit__(self, *exc):
        self.inner.release()
        self.counters.received += 1
        self.counters.accepted += 1


def test_a_snapshot_never_shows_more_accepted_than_received():
    counters = Counters()
    counters.received = counters.accepted = 1000                 # everything received so far was accepted
    counters._lock = _SwitchingLock(counters)
    snap = counters.snapshot()
    assert snap["accepted"] + snap["dropped_total"] <= snap["received"], snap
    values = dict(line.split() for line in counters.prometheus().splitlines() if not line.startswith("#"))
    assert int(values["fog_samples_accepted_total"]) <= int(values["fog_samples_received_total"])
