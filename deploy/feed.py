"""The source's thread: it feeds chunks into the daemon's queue and says how the source ended.

A live source's chunk that finds the queue full is dropped and counted (`overflow`: memory stays bounded); a replay
or stdin waits for room. When the source stops, END is queued. Replay and stdin end normally at the end of their
data; a live source (udp, serial, lsl) that returns or raises without being asked to stop has failed: with
`source.on_end = "exit"` (the default) the failure is recorded and the daemon exits 1, so systemd's
`Restart=on-failure` restarts it; with `"reconnect"` the source is reopened with exponential backoff (1 s doubling
up to `reconnect_max_s`), each attempt counted (`source_restarts`). A stdin or replay that raises is a failure too.
"""
from __future__ import annotations

import logging
import queue
import threading

log = logging.getLogger("deploy.feed")

END = object()
ENDS_NORMALLY = ("replay", "stdin")   # sources whose data has an end


class Feed:
    """Runs `source` (reopened through `reopen()` on failure when `on_end` is "reconnect") into `inbox`."""

    def __init__(self, source, inbox: queue.Queue, counters, stop: threading.Event, reopen=None,
                 on_end: str = "exit", max_backoff_s: float = 30.0):
        self.source, self.inbox, self.counters, self.stop = source, inbox, counters, stop
        self.reopen, self.on_end, self.max_backoff_s = reopen, on_end, float(max_backoff_s)
        self.failure: str | None = None

    def emit(self, chunk) -> None:
        if chunk.lost_datagrams:   # lost in the kernel before they reached us (UDP): counted, in datagrams
            self.counters.lost_before_receipt(chunk.lost_datagrams)
        if self.source.live:
            try:
                self.inbox.put_nowait(chunk)
            except queue.Full:  # behind: the newest data is dropped and counted, memory stays bounded
                self.counters.drop("overflow", chunk.received, received=True)
            return
        while not self.stop.is_set():
            try:
                self.inbox.put(chunk, timeout=0.2)
                return
            except queue.Full:
                continue
        self.counters.drop("shutdown", chunk.received, received=True)

    def _run_once(self) -> str | None:
        """Run the source until it returns; None when that was expected, else why it was not."""
        try:
            self.source.run(self.emit, self.stop)
        except Exception as exc:  # a device unplugged, a socket closed: a failure, with its reason
            log.error("source %s failed: %s: %s", self.source.name, type(exc).__name__, exc)
            return f"source {self.source.name} failed ({type(exc).__name__}: {exc})"
        if self.stop.is_set() or self.source.name in ENDS_NORMALLY:
            return None
        return f"source {self.source.name} ended unexpectedly"

    def run(self) -> None:
        backoff = 1.0
        try:
            while True:
                why = self._run_once()
                if why is None or self.stop.is_set():
                    return
                if self.on_end != "reconnect" or self.reopen is None or self.source.name in ENDS_NORMALLY:
                    self.failure = why
                    return
                self.source = self._reconnect(why, backoff)
                if self.source is None:
                    return
                backoff = min(2 * backoff, self.max_backoff_s)
        finally:
            self._put_end()

    def _reconnect(self, why: str, backoff: float):
        """Reopen after `backoff` seconds, again with doubled waits until it opens or the daemon stops."""
        while not self.stop.is_set():
            self.counters.source_restarts += 1   # counted before it is said: a reader of the log finds it counted
            log.warning("%s; reconnecting in %.0f s", why, backoff)
            if self.stop.wait(backoff):
                return None
            try:
                return self.reopen()
            except Exception as exc:
                why = f"source reopen failed ({exc})"
                backoff = min(2 * backoff, self.max_backoff_s)
        return None

    def _put_end(self) -> None:
        while True:
            try:
                self.inbox.put(END, timeout=0.2)
                return
            except queue.Full:
                if self.stop.is_set():
                    return

    def start(self) -> threading.Thread:
        self.thread = threading.Thread(target=self.run, name="source", daemon=True)
        self.thread.start()
        return self.thread

    def finish(self, timeout_s: float = 1.0) -> None:
        """After `stop`: give the source a moment to end and report its last counts (UDP: the kernel's drops after
        the last datagram). A stdin blocked in a read is not waited for."""
        thread = getattr(self, "thread", None)
        if thread is not None and getattr(self.source, "name", None) != "stdin":   # None: a reopen gave up
            thread.join(timeout_s)
