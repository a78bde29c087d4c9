"""What the daemon did with every sample and every hop: counters, latency percentiles, status and Prometheus text.

Sources run in their own threads and count what they reject (or drop when the queue is full) through `drop()`,
which takes a lock; everything else is updated by the pipeline thread only.
Invariant the tests check: received == accepted + sum(dropped.values()).
"""
from __future__ import annotations

import resource
import threading
import time
from collections import Counter

import numpy as np

LATENCY_WINDOW = 4096  # most recent hops kept for percentiles: bounded memory, recent behaviour


class Counters:
    def __init__(self, latency_window: int = LATENCY_WINDOW, parent: "Counters | None" = None):
        """`latency_window`: hops kept for percentiles (a gateway keeps fewer per wearer); `parent`: counters that
        also record every hop's latency (the gateway's total, whose percentiles span every wearer)."""
        self._lock = threading.Lock()
        self.parent = parent
        self.started = time.monotonic()
        self.received = 0
        self.accepted = 0
        self.dropped: Counter[str] = Counter()
        self.interpolated = 0        # samples synthesised to fill a short gap (flagged, not received)
        self.gaps_filled = 0
        self.resets = 0              # long gaps: the window restarted
        self.source_restarts = 0     # live source reopened after a failure (source.on_end = "reconnect")
        self.kernel_dropped_datagrams = 0   # UDP datagrams the kernel dropped (buffer full): never received
        self.aborted_onsets = 0      # onsets a killed previous run never ended, closed at this start
        self.clock_resets = 0        # the sensor's clock went back: a new segment
        self.rate_mismatches = 0     # rate estimates from timestamps that disagree with the nominal rate
        self.rate_estimate_hz = None  # the latest such estimate (live sources)
        self.sink_failures: Counter[str] = Counter()   # messages a sink could not deliver, per sink
        self.sink_dropped: Counter[str] = Counter()    # messages a sink discarded (its buffer full), per sink
        self.unscored = 0            # accepted samples never covered by a full window (segment too short)
        self.hops_run = 0
        self.hops_skipped_behind = 0
        self.events = 0
        self.silences = 0
        self.bundle_anchor = None    # what vouches for the bundle: "signature", "pin" or "none" (deploy.signing)
        self.implausible: Counter[str] = Counter()     # blocks a plausibility check flagged, by check
        self.engine_seconds = 0.0
        self._latency = np.zeros(latency_window)
        self._engine = np.zeros(latency_window)
        self._n_latency = 0

    def receive(self, n: int, rejected: dict[str, int] | None = None) -> None:
        with self._lock:
            self.received += n
            if rejected:
                self.dropped.update(rejected)

    def lost_before_receipt(self, datagrams: int) -> None:
        with self._lock:
            self.kernel_dropped_datagrams += datagrams

    def drop(self, reason: str, n: int = 1, *, received: bool = False) -> None:
        with self._lock:
            if received:
                self.received += n
            self.dropped[reason] += n

    def hop(self, latency_s: float, engine_s: float) -> None:
        if self.parent is not None:
            self.parent.hop(latency_s, engine_s)
        i = self._n_latency % len(self._latency)
        self._latency[i] = latency_s
        self._engine[i] = engine_s
        self._n_latency += 1
        self.hops_run += 1
        self.engine_seconds += engine_s

    def percentiles(self, which: str = "latency", qs=(50, 90, 99)) -> dict[str, float]:
        n = min(self._n_latency, len(self._latency))
        if n == 0:
            return {f"p{q}": float("nan") for q in qs}
        data = (self._latency if which == "latency" else self._engine)[:n]
        return {f"p{q}": float(v) for q, v in zip(qs, np.percentile(data, qs))}

    def settled(self) -> int:
        """Samples accepted or dropped so far (received minus those still on their way)."""
        with self._lock:
            return self.accepted + sum(self.dropped.values())

    def balanced(self) -> bool:
        with self._lock:
            return self.received == self.accepted + sum(self.dropped.values())

    @staticmethod
    def rss_mb() -> tuple[float, float]:
        """(current, peak) resident memory of this process in MB (Linux /proc; peak from getrusage elsewhere)."""
        current = peak = float("nan")
        try:
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        current = int(line.split()[1]) / 1024
                    elif line.startswith("VmHWM:"):
                        peak = int(line.split()[1]) / 1024
        except OSError:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return current, peak

    def snapshot(self) -> dict:
        """Every counter at one moment, consistent: `accepted` is read before `received` and `dropped` (a sample is
        received before it is accepted or dropped), so accepted + dropped never exceeds received in a snapshot."""
        accepted, interpolated = self.accepted, self.interpolated
        with self._lock:
            dropped = dict(self.dropped)
            received = self.received
        latency = {k: round(v * 1e3, 3) for k, v in self.percentiles("latency").items()}
        engine = {k: round(v * 1e3, 3) for k, v in self.percentiles("engine").items()}
        return {"uptime_s": round(time.monotonic() - self.started, 3), "received": received,
                "accepted": accepted, "dropped": dropped, "dropped_total": sum(dropped.values()),
                "interpolated": interpolated, "gaps_filled": self.gaps_filled, "resets": self.resets,
                "clock_resets": self.clock_resets, "aborted_onsets": self.aborted_onsets,
                "kernel_dropped_datagrams": self.kernel_dropped_datagrams, "source_restarts": self.source_restarts, "rate_mismatches": self.rate_mismatches,
                "rate_estimate_hz": self.rate_estimate_hz, "sink_failures": dict(self.sink_failures),
                "sink_dropped": dict(self.sink_dropped), "unscored": self.unscored, "hops_run": self.hops_run,
                "hops_skipped_behind": self.hops_skipped_behind, "events": self.events, "silences": self.silences,
                "engine_s": round(self.engine_seconds, 4), "hop_latency_ms": latency, "engine_ms": engine,
                "rss_mb": round(self.rss_mb()[0], 1), "peak_rss_mb": round(self.rss_mb()[1], 1),
                "bundle_anchor": self.bundle_anchor, "implausible": dict(self.implausible)}

    def status_line(self) -> str:
        s = self.snapshot()
        return (f"received {s['received']} accepted {s['accepted']} dropped {s['dropped_total']} "
                f"hops {s['hops_run']} skipped {s['hops_skipped_behind']} events {s['events']} "
                f"latency p50 {s['hop_latency_ms']['p50']} ms p99 {s['hop_latency_ms']['p99']} ms"
                + (" BUNDLE NOT ANCHORED (no trusted signature, no pinned digest)" if s["bundle_anchor"] == "none"
                   else ""))

    def prometheus(self) -> str:
        s = self.snapshot()
        lines = []

        def metric(name, kind, help_text, samples):
            lines.append(f"# HELP fog_{name} {help_text}")
            lines.append(f"# TYPE fog_{name} {kind}")
            for labels, value in samples:
                lines.append(f"fog_{name}{labels} {value}")

        metric("samples_received_total", "counter", "Samples received from the source.", [("", s["received"])])
        metric("samples_accepted_total", "counter", "Samples accepted into the pipeline.", [("", s["accepted"])])
        metric("samples_dropped_total", "counter", "Samples not used, by reason.",
               [(f'{{reason="{r}"}}', n) for r, n in sorted(s["dropped"].items())] or [('{reason="none"}', 0)])
        metric("samples_interpolated_total", "counter", "Samples filled in across short gaps.",
               [("", s["interpolated"])])
        metric("window_resets_total", "counter", "Long gaps that restarted the window.", [("", s["resets"])])
        metric("clock_resets_total", "counter", "Sensor clock resets (new segment).", [("", s["clock_resets"])])
        metric("rate_mismatches_total", "counter", "Rate estimates disagreeing with the nominal rate.",
               [("", s["rate_mismatches"])])
        metric("udp_kernel_dropped_datagrams_total", "counter", "UDP datagrams the kernel dropped (receive buffer full).",
               [("", s["kernel_dropped_datagrams"])])
        metric("sink_failures_total", "counter", "Messages a sink could not deliver, by sink.",
               [(f'{{sink="{k}"}}', n) for k, n in sorted(s["sink_failures"].items())] or [('{sink="none"}', 0)])
        metric("bundle_anchored", "gauge", "1 when a trusted signature or a pinned digest vouches for the bundle.",
               [(f'{{by="{s["bundle_anchor"]}"}}', int(s["bundle_anchor"] in ("signature", "pin")))])
        metric("signal_implausible_blocks_total", "counter", "Blocks of signal a plausibility check flagged, by check.",
               [(f'{{check="{k}"}}', n) for k, n in sorted(s["implausible"].items())] or [('{check="none"}', 0)])
        metric("hops_total", "counter", "Model runs.", [("", s["hops_run"])])
        metric("hops_skipped_behind_total", "counter", "Hops skipped because behind real time.",
               [("", s["hops_skipped_behind"])])
        metric("events_total", "counter", "FOG events emitted.", [("", s["events"])])
        metric("hop_latency_seconds", "summary", "Sample arrival to hop output.",
               [(f'{{quantile="0.{k[1:]}"}}', v / 1e3) for k, v in s["hop_latency_ms"].items()])
        return "\n".join(lines) + "\n"
