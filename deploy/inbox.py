"""The gateway's inbox: chunks of every wearer, from the source threads to the loop, with a budget per wearer.

One wearer must not starve the others, so every bound is per wearer (deploy.feed.Feed puts into it as into the
daemon's queue; `put_nowait` never raises):
- **flood**: a live wearer may send at most its nominal rate x (1 + `tolerance`) samples a second, plus a burst of
  `burst_s` seconds of samples (a hub that buffered through a radio gap). A chunk over that budget is dropped whole
  and counted `flood` under that wearer: a sensor replaying an hour in a second costs the others nothing.
- **overflow**: at most `queue_s` seconds of a wearer's samples wait for the loop; beyond that a live wearer's chunk
  is dropped and counted `overflow` under that wearer (the loop is behind); a replay waits for room instead.
- at most `max_devices` wearers have a queue; the chunks of more are counted under the gateway (`wearer_limit`).
Every drop is counted as received and dropped (the loop adds it to the wearer's counters when it takes the wearer's
chunks), so each wearer's received = accepted + dropped holds.
"""
from __future__ import annotations

import queue
import threading
import time
from collections import Counter


class _Queue:
    __slots__ = ("chunks", "samples", "dropped", "tokens", "refilled")

    def __init__(self, tokens: float, now: float):
        self.chunks: list = []
        self.samples = 0
        self.dropped: Counter = Counter()
        self.tokens, self.refilled = tokens, now


class WearerInbox:
    """Per-wearer bounded queues behind the interface deploy.feed.Feed uses (`put`, `put_nowait`), and `take`
    for the loop: everything queued, by wearer."""

    def __init__(self, rate_hz: float, *, queue_s: float = 10.0, burst_s: float = 5.0, tolerance: float = 0.25,
                 max_devices: int = 1000):
        self.rate = float(rate_hz)
        self.limit = max(1, int(queue_s * self.rate))
        self.burst = max(1.0, burst_s * self.rate)
        self.refill = self.rate * (1.0 + tolerance)
        self.max_devices = int(max_devices)
        self.queues: dict[str, _Queue] = {}
        self.over_limit: Counter = Counter()      # samples of wearers beyond max_devices, by device
        self.specials: list = []                  # END and other markers, in order
        self.dirty: dict = {}                     # wearers with something queued or dropped, in order of arrival
        self._ready = threading.Condition()

    def _queue(self, device: str, now: float) -> _Queue | None:
        q = self.queues.get(device)
        if q is None and len(self.queues) < self.max_devices:
            q = self.queues[device] = _Queue(self.burst, now)
        return q

    def _admit(self, q: _Queue, n: int, now: float) -> bool:
        """The flood budget: tokens refill at the allowed rate up to the burst."""
        q.tokens = min(self.burst, q.tokens + (now - q.refilled) * self.refill)
        q.refilled = now
        if n > q.tokens:
            return False
        q.tokens -= n
        return True

    def put_nowait(self, chunk, live: bool = True) -> None:
        """A live source's chunk: queued, or dropped and counted under its wearer (never raises)."""
        now = time.monotonic()
        with self._ready:
            q = self._queue(chunk.device or "", now)
            if q is None:
                self.over_limit[chunk.device] += chunk.received
                return
            if live and chunk.device and not self._admit(q, len(chunk.t), now):
                q.dropped["flood"] += chunk.received
            elif live and q.samples + len(chunk.t) > self.limit:
                q.dropped["overflow"] += chunk.received
            else:
                q.chunks.append(chunk)
                q.samples += len(chunk.t)
            self.dirty[chunk.device or ""] = True
            self._ready.notify()

    def put(self, item, timeout: float | None = None) -> None:
        """A replay's chunk (or END): waits while its wearer's queue is full; queue.Full after `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._ready:
            if not hasattr(item, "device"):       # a marker (END)
                self.specials.append(item)
                self._ready.notify()
                return
            while (q := self.queues.get(item.device or "")) is not None and q.samples >= self.limit:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise queue.Full
                self._ready.wait(remaining)
        self.put_nowait(item, live=False)

    def take(self, timeout: float) -> tuple[dict, list]:
        """({device: (chunks, dropped Counter)} of every wearer with something queued or dropped, [markers]);
        waits up to `timeout` for anything."""
        with self._ready:
            if not self.specials and not self.dirty and timeout > 0:
                self._ready.wait(timeout)
            taken = {}
            for device in self.dirty:
                q = self.queues[device]
                taken[device] = (q.chunks, q.dropped)
                q.chunks, q.samples, q.dropped = [], 0, Counter()
            self.dirty = {}
            specials, self.specials = self.specials, []
            self._ready.notify_all()                 # a replay waiting for room
        return taken, specials

    def forget(self, device: str) -> None:
        """A wearer left: its queue goes (a new one starts with a full burst if it comes back)."""
        with self._ready:
            if device in self.queues and device not in self.dirty:
                del self.queues[device]

    def over_limit_taken(self) -> Counter:
        with self._ready:
            taken, self.over_limit = self.over_limit, Counter()
        return taken
