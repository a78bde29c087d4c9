"""What the gateway says about itself: Prometheus text with a label per wearer, /health and /ready, the status
line, the final counters.

Cardinality is bounded: the first `gateway.metrics_wearers` wearers seen (default 50) keep a `wearer="<id>"` label
for the life of the process, every later one is summed under `wearer="other"`; a wearer that leaves keeps its
series (its counts stay, so every counter only grows). Per-metric series: at most metrics_wearers + 1.

/health: 200 while the loop turns (it took in within the last 5 s), else 503; /ready: 200 from READY until the
drain, else 503. Both answer JSON: {"status", "wearers", "connected": [ids], ...}.
"""
from __future__ import annotations

import json
import time

from deploy.wearers import SUMMED

HEALTHY_WITHIN_S = 5.0


def _esc(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class GatewayMetrics:
    """Views of a running deploy.gateway.Gateway."""

    def __init__(self, gateway):
        self.gw = gateway
        self.ready = False

    # ------------------------------------------------------------------ counts

    def totals(self) -> dict:
        """Every wearer's counts summed, plus the gateway's own (samples naming no wearer, or beyond the cap)."""
        total, _ = self.gw.table.totals()
        total = {**{key: {} if key == "dropped" else 0 for key in SUMMED}, **total}   # zeros before any wearer
        own = self.gw.counters.snapshot()
        for key in ("received", "accepted"):
            total[key] = total.get(key, 0) + own[key]
        dropped = dict(total.get("dropped", {}))
        for reason, n in own["dropped"].items():
            dropped[reason] = dropped.get(reason, 0) + n
        total["dropped"], total["dropped_total"] = dropped, sum(dropped.values())
        total["balanced"] = total.get("received", 0) == total.get("accepted", 0) + total["dropped_total"]
        total.update({"wearers_connected": len(self.gw.table.active), "wearers_joined": self.gw.table.joined,
                      "wearers_left": self.gw.table.left, "unattributed": own["dropped"],
                      "kernel_dropped_datagrams": own["kernel_dropped_datagrams"],
                      "sink_failures": own["sink_failures"], "hop_latency_ms": own["hop_latency_ms"],
                      "engine_ms": own["engine_ms"], "batches": dict(self.gw.batcher.calls),
                      "padded_rows": self.gw.batcher.padded_rows, "uptime_s": own["uptime_s"],
                      "rss_mb": own["rss_mb"], "peak_rss_mb": own["peak_rss_mb"]})
        return total

    def final(self) -> dict:
        """The counters printed at exit: totals, and each wearer's own (balanced or not)."""
        wearers = dict(self.gw.table.left_counts)
        for device, wearer in self.gw.table.active.items():
            wearers[device] = wearer.counters.snapshot()
        for snapshot in wearers.values():
            snapshot["balanced"] = snapshot["received"] == snapshot["accepted"] + snapshot["dropped_total"]
        totals = self.totals()
        totals["every_wearer_balanced"] = all(s["balanced"] for s in wearers.values())
        return {**totals, "wearers": wearers}

    def status_line(self) -> str:
        t = self.totals()
        return (f"gateway: {t['wearers_connected']} wearers connected (joined {t['wearers_joined']}, left "
                f"{t['wearers_left']}), received {t.get('received', 0)} accepted {t.get('accepted', 0)} dropped "
                f"{t['dropped_total']} hops {t.get('hops_run', 0)} skipped {t.get('hops_skipped_behind', 0)} "
                f"events {t.get('events', 0)} latency p50 {t['hop_latency_ms']['p50']} ms p99 "
                f"{t['hop_latency_ms']['p99']} ms, batches {t['batches']}")

    # ------------------------------------------------------------------ endpoints

    def health(self) -> tuple[int, str]:
        alive = time.monotonic() - self.gw.last_turn <= HEALTHY_WITHIN_S
        body = {"status": "ok" if alive else "stalled", "wearers": len(self.gw.table.active),
                "loop_turn_s_ago": round(time.monotonic() - self.gw.last_turn, 3),
                "connected": sorted(self.gw.table.active)[:1000]}
        return (200 if alive else 503), json.dumps(body)

    def readiness(self) -> tuple[int, str]:
        body = {"status": "ready" if self.ready else "not ready", "wearers": len(self.gw.table.active)}
        return (200 if self.ready else 503), json.dumps(body)

    def prometheus(self) -> str:
        _, per_label = self.gw.table.totals()
        lines: list[str] = []

        def metric(name, kind, help_text, samples):
            lines.extend([f"# HELP fog_{name} {help_text}", f"# TYPE fog_{name} {kind}"])
            lines.extend(f"fog_{name}{labels} {value}" for labels, value in samples)

        def per_wearer(key):
            return [(f'{{wearer="{_esc(label)}"}}', counts.get(key, 0)) for label, counts in sorted(per_label.items())]

        metric("wearers_connected", "gauge", "Wearers connected now.", [("", len(self.gw.table.active))])
        metric("wearers_joined_total", "counter", "Wearers that joined.", [("", self.gw.table.joined)])
        for key, name, text in (("received", "samples_received_total", "Samples received, per wearer."),
                                ("accepted", "samples_accepted_total", "Samples accepted, per wearer."),
                                ("hops_run", "hops_total", "Windows run, per wearer."),
                                ("hops_skipped_behind", "hops_skipped_behind_total",
                                 "Hops skipped because behind real time, per wearer."),
                                ("events", "events_total", "FOG events emitted, per wearer.")):
            metric(name, "counter", text, per_wearer(key))
        dropped = [(f'{{wearer="{_esc(label)}",reason="{_esc(reason)}"}}', n)
                   for label, counts in sorted(per_label.items()) for reason, n in sorted(counts.get("dropped",
                                                                                                      {}).items())]
        metric("samples_dropped_total", "counter", "Samples not used, per wearer and reason.", dropped)
        own = self.gw.counters.snapshot()
        metric("unattributed_samples_total", "counter", "Samples naming no wearer (or beyond max_wearers), by reason.",
               [(f'{{reason="{_esc(r)}"}}', n) for r, n in sorted(own["dropped"].items())] or [('{reason="none"}', 0)])
        metric("udp_kernel_dropped_datagrams_total", "counter", "UDP datagrams the kernel dropped.",
               [("", own["kernel_dropped_datagrams"])])
        metric("sink_failures_total", "counter", "Messages a sink could not deliver, by sink.",
               [(f'{{sink="{_esc(k)}"}}', n) for k, n in sorted(own["sink_failures"].items())]
               or [('{sink="none"}', 0)])
        metric("batches_total", "counter", "Engine calls, by batch size.",
               [(f'{{size="{size}"}}', n) for size, n in sorted(self.gw.batcher.calls.items())])
        metric("hop_latency_seconds", "summary", "Sample arrival to decision, every wearer.",
               [(f'{{quantile="0.{k[1:]}"}}', v / 1e3) for k, v in own["hop_latency_ms"].items()])
        return "\n".join(lines) + "\n"

