"""fog-daemon --gateway: one process serves many wearers, each with the state of a daemon of their own, beside one
shared engine that runs the windows due at a hop as one batch.

    fog-daemon BUNDLE --gateway --udp-port 5005 --sink mqtt://broker/fog   # every wearer on one port
    fog-daemon BUNDLE --gateway --replay DIR --realtime                      # a folder of recordings, one each
    fog-daemon --config /etc/fog/gateway.toml                                # [gateway] enabled = true

Per wearer (deploy.wearers.WearerStream, the single-wearer daemon's own code): intake, rate check, units,
resampling, normalization and its state, the ring of windows, the event detector, counters. Shared: the bundle's
engines at its batch sizes (deploy.batching), the sinks, the metrics. Each loop turn takes in everything the
sources queued (deploy.inbox, a budget per wearer), which submits each wearer's due windows, then runs them together;
each row goes back to its wearer. A row's output depends on its own window only, so every wearer's events equal,
bit for bit, those of a daemon of their own on the same samples (tests/test_gateway.py).

Back-pressure: a window whose newest sample waited longer than `stream.max_behind_s` is skipped as a whole hop and
counted under its wearer (`hops_skipped_behind`, and in the total); a wearer that floods, sends garbage or at the
wrong rate is counted and refused under its own name, and nobody else's windows wait for it.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace

from deploy.batching import EngineSet, WindowBatcher
from deploy.bundle import Bundle
from deploy.config import event_settings
from deploy.counters import Counters
from deploy.engines import open_engine
from deploy.errors import FogError, printable
from deploy.feed import END, ENDS_NORMALLY, Feed
from deploy.gateway_metrics import GatewayMetrics
from deploy.inbox import WearerInbox
from deploy.onsets import OpenOnsets
from deploy.plausibility import preflight as preflight_signal
from deploy.settings import DAEMON_SOURCE_KEYS
from deploy.service import sd_notify, serve_metrics, watchdog_interval_s
from deploy.signing import bundle_trust
from deploy.sinks import event_message, open_sink, probs_message
from deploy.sources_multi import open_wearer_source
from deploy.stream import Pipeline, streaming_spec
from deploy.validate import preflight
from deploy.wearer import stream_setup
from deploy.wearer_formats import UNATTRIBUTED
from deploy.wearers import Wearer, WearerStream, WearerTable, stream_settings, time_scale, watches

log = logging.getLogger("deploy.gateway")

PER_WEARER_LATENCIES = 512      # hops each wearer keeps for its own percentiles
TOTAL_LATENCIES = 1 << 16       # and the gateway's, over every wearer: ~2.7 min of 200 wearers (1 MB)


def open_engines(bundle, config: dict) -> EngineSet:
    """The bundle's engines at the batch sizes the gateway runs (`gateway.batch_sizes`, else every size the bundle
    was exported for whose rows are exact), timed once so each hop runs the cheapest plan."""
    available = bundle.batching.usable_sizes
    asked = config["gateway"].get("batch_sizes") or available
    missing = sorted(set(asked) - set(bundle.batching.sizes))
    if missing:
        raise FogError(f"gateway.batch_sizes {missing} are not in the bundle (it has {list(bundle.batching.sizes)}); "
                       "export them (toolkit export --batch 1,8,32) or leave batch_sizes out")
    if not bundle.batching.row_exact and set(asked) != set(available):
        raise FogError("this bundle's batched graphs do not compute each row on its own (batching.row_exact is "
                       "false, e.g. onnxruntime's dynamic INT8 plan scales over the whole batch): a wearer's output "
                       f"would depend on the others; run batch {available[0]} only (leave gateway.batch_sizes out)")
    # One intra-op thread: the batch is the parallel work, and only at one thread is every row of a batch the same
    # window at batch 1, bit for bit (at two, fog-small's batch-1 output differs in the last bits from its own
    # one-thread output while its batch-8 and -32 rows do not: a wearer's output would depend on the batch it fell in)
    engines = {size: open_engine(bundle, backend=config["backend"], precision=config["precision"], threads=1,
                                 thread_cap=config["thread_cap"], batch=size)
               for size in sorted(set(asked))}
    engine_set = EngineSet(engines)
    engine_set.measure()
    return engine_set


@dataclass
class Gateway:
    """What `run` connects: sources into the inbox, wearers around one batcher, sinks and metrics."""
    config: dict
    bundle: Bundle
    engines: EngineSet
    batcher: WindowBatcher
    source: object
    sinks: list
    inbox: WearerInbox
    counters: Counters                       # the gateway's own: unattributed samples, kernel drops, all latencies
    table: WearerTable = field(init=False)
    failure: str | None = None
    last_turn: float = field(default_factory=time.monotonic)   # when the loop last took in (for /health)
    onsets: OpenOnsets | None = None        # stream.state_file: open onsets per wearer, closed after a SIGKILL
    trust: object = None                     # what vouches for the bundle (deploy.signing.Trust)

    def __post_init__(self):
        g = self.config["gateway"]
        self.table = WearerTable(self._make_stream, self._make_counters, max_wearers=g["max_wearers"],
                                 timeout_s=g["wearer_timeout_s"], label_cap=g["metrics_wearers"],
                                 on_join=lambda w: self._announce(w, "online"),
                                 on_leave=lambda w, why: (self._announce(w, "offline", why),
                                                          self.inbox.forget(w.device)))

    # ------------------------------------------------------------------ per wearer

    def _make_counters(self) -> Counters:
        return Counters(latency_window=PER_WEARER_LATENCIES, parent=self.counters)

    def _make_stream(self, device: str, counters: Counters) -> WearerStream:
        """A wearer's own stream: the single-wearer daemon's settings, pipeline and checks (deploy.wearers), sharing
        the gateway's batcher."""
        bundle, config = self.bundle, self.config
        state_dir = config["gateway"].get("wearer_state_dir")
        spec, normalizer = stream_setup(bundle.input.spec, bundle.streaming,
                                        f"{state_dir}/{device}.json" if state_dir else None)
        settings = replace(stream_settings(bundle, config, self.source, event_settings(config, bundle)),
                           normalizer=normalizer)
        on_event, on_probs = self._callbacks(device, counters)
        pipeline = Pipeline(spec, None, bundle.classes, counters, settings, on_probs=on_probs, on_event=on_event,
                            windows=self.batcher)
        rate_watch, signal_watch = watches(bundle, config, self.source, counters)
        return WearerStream(pipeline, counters, rate_watch, name=device, signal_watch=signal_watch,
                            time_scale=time_scale(config))

    def _callbacks(self, device: str, counters: Counters):
        classes = self.bundle.classes

        def on_event(kind, event, decided_s):
            log.info("wearer %s: %s %s onset %.2f s peak %.2f", device, kind, event.cls, event.onset_s, event.peak)
            message = dict(event_message(kind, event, decided_s), device=device)
            if self.onsets is not None:
                self.onsets.update(kind, message)
            self.deliver(message)

        def on_probs(t0, probs, rate):
            self.deliver(dict(probs_message(t0, probs, rate, classes), device=device))
        return on_event, (on_probs if any(s.want_probs for s in self.sinks) else None)

    def deliver(self, message: dict) -> None:
        for sink in self.sinks:
            failed = sink.failures
            sink.send(message)
            if sink.failures != failed:
                self.counters.sink_failures[sink.label] = sink.failures

    def _announce(self, wearer: Wearer, state: str, why: str | None = None) -> None:
        """Who is connected, on every sink (MQTT: `{topic}/<device>/status`, retained)."""
        self.deliver({"type": "wearer", "device": wearer.device, "state": state, "why": why,
                      "wall_time": round(time.time(), 3)})

    # ------------------------------------------------------------------ the loop's work

    def take_in(self, device: str, chunks: list, dropped, now: float) -> None:
        """One wearer's queued chunks (and what the inbox dropped of them) through its stream."""
        known = device in self.table.active
        if device == UNATTRIBUTED or (not known and not any(len(c.t) for c in chunks)):
            # what names no wearer, or a name that never sent a readable sample (a wearer appears with its first
            # sample): the gateway's own count, by reason
            for chunk in chunks:
                self.counters.receive(chunk.received, chunk.rejected)
            for reason, n in dropped.items():
                self.counters.drop(reason, n, received=True)
            return
        wearer = self.table.get(device, now)
        if wearer is None:             # the table is full: counted, never silently lost
            samples = sum(c.received for c in chunks) + sum(dropped.values())
            self.table.refuse(device, samples)
            self.counters.drop("wearer_limit", samples, received=True)
            return
        for reason, n in dropped.items():
            wearer.counters.drop(reason, n, received=True)
        for chunk in chunks:
            if not self.source.live:   # replay: latency counts from when the loop takes it, not from queueing
                chunk.arrival = now
            refused = wearer.stream.process(chunk)
            if refused is not None and wearer.refused is None:
                wearer.refused = refused
                log.error("wearer %s refused, the others go on: %s", device, refused)
        wearer.last_seen = now


def open_source_from(config: dict, model_rate: float):
    options = {k: v for k, v in config["source"].items() if k not in (*DAEMON_SOURCE_KEYS, "kind")}
    kind = config["source"]["kind"]
    if kind == "replay":
        for key in ("units", "rate_hz"):  # recordings carry their own
            options.pop(key, None)
    else:
        options["rate_hz"] = options.get("rate_hz") or model_rate
    return open_wearer_source(kind, **options)


def wire(config: dict) -> Gateway:
    """Open the bundle, its engines at every batch size, the source, the sinks; every setting checked before
    READY (the wearers' pipelines are built as they join, from the same checked settings)."""
    bundle = Bundle.load(config["bundle"], verify=True, expected_digest=config.get("bundle_digest"))
    trust = bundle_trust(bundle.folder, bundle.digest, config)   # a signature required and missing: refused here
    spec = bundle.input.spec
    events = event_settings(config, bundle)
    source = open_source_from(config, spec.rate_hz)
    preflight(spec, bundle.classes, events, source.rate_hz or spec.rate_hz, source.units)
    log.info("events: %s, look-ahead %s s, for every wearer", "one any-FOG event per freeze" if events.any_event
             else "one stream per event class", events.lookahead_s)
    engines = open_engines(bundle, config)
    stream_spec, _ = stream_setup(spec, bundle.streaming, None)
    batcher = WindowBatcher(engines, streaming_spec(stream_spec))
    sinks = [open_sink(**(dict(s, device_id=config.get("device_id")) if s["kind"] == "mqtt" else dict(s)))
             for s in config["sinks"]]
    g = config["gateway"]
    inbox = WearerInbox(source.rate_hz or spec.rate_hz, queue_s=g["queue_s"], burst_s=g["burst_s"],
                        tolerance=g["flood_tolerance"], max_devices=g["max_wearers"] + 1)
    state_file = config["stream"].get("state_file")
    gw = Gateway(config, bundle, engines, batcher, source, sinks, inbox, Counters(latency_window=TOTAL_LATENCIES),
                 onsets=OpenOnsets(state_file) if state_file else None, trust=trust)
    gw.counters.bundle_anchor = trust.anchor
    for name, replay in getattr(source, "replays", {}).items():   # a recording's units mistake stops the start
        preflight_signal(watches(bundle, config, source, Counters())[1], replay.recording.acc,
                         f"recording {replay.path}")
    for message in gw.onsets.leftover() if gw.onsets is not None else []:   # a killed run's, closed first
        log.warning("closing an onset the previous run never ended: wearer %s, %s at %.2f s",
                    message.get("device"), message["class"], message["onset_s"])
        gw.counters.aborted_onsets += 1
        gw.deliver(message)
    return gw


class _Ticks:
    """What the loop does now and then: systemd's watchdog, a status line per wearer, silence timeouts."""

    def __init__(self, gw: Gateway):
        self.gw, self.watchdog_s = gw, watchdog_interval_s()
        self.status_every = float(gw.config["log"]["status_interval_s"] or 0)
        self.started = self.last_status = self.last_wd = self.last_expire = time.monotonic()

    def tick(self, now: float) -> None:
        if self.watchdog_s and now - self.last_wd >= self.watchdog_s:
            sd_notify("WATCHDOG=1")
            self.last_wd = now
        if now - self.last_expire >= 1.0:
            self.gw.table.expire(now)
            self.last_expire = now
        if self.status_every and now - self.last_status >= self.status_every:
            for wearer in list(self.gw.table.active.values()):
                log.info("status: %s", wearer.status_line(now))
            line = GatewayMetrics(self.gw).status_line()
            log.info("status: %s", line)
            sd_notify("STATUS=" + line)
            self.last_status = now


def loop(gw: Gateway, stop, max_seconds: float | None = None) -> str:
    """Turn by turn until the sources end, `stop` is set or max_seconds pass: take in what every source queued (the
    wearers' due windows are staged), and run the staged windows together once the oldest has waited
    `gateway.batch_wait_s` (or the batch is full). A turn takes at least `gateway.tick_s`, so datagrams gather
    between turns instead of waking the loop one by one. Returns why it stopped (an episode still going then is cut,
    and its event says so)."""
    ticks = _Ticks(gw)
    wait_s, tick_s = float(gw.config["gateway"]["batch_wait_s"]), float(gw.config["gateway"]["tick_s"])
    ended = False
    while not stop.is_set() and not ended:
        started = time.monotonic()
        staged = gw.batcher.count
        timeout = 0.2 if not staged else max(0.0, gw.batcher.first_staged + wait_s - started)
        ended = take_turn(gw, timeout)
        now = gw.last_turn = time.monotonic()
        if gw.batcher.count and (ended or now - gw.batcher.first_staged >= wait_s):
            gw.batcher.run()
        ticks.tick(now)
        if max_seconds is not None and now - ticks.started >= max_seconds:
            return f"the daemon stopped after --max-seconds {max_seconds:g}"
        rest = tick_s - (time.monotonic() - started)
        if rest > 0 and not ended:
            stop.wait(rest)
    if getattr(stop, "reason", None) or gw.failure:   # a signal (or a refusal) first: the input may end meanwhile
        return getattr(stop, "reason", None) or gw.failure
    if ended:
        return "the input ended" if gw.source.name in ENDS_NORMALLY else f"the source {gw.source.name} ended"
    return "the daemon was stopped"


def take_turn(gw: Gateway, timeout: float) -> bool:
    """Take in everything queued (waiting up to `timeout` for anything); True when the sources ended."""
    taken, markers = gw.inbox.take(timeout=timeout)
    now = time.monotonic()
    for device, (chunks, dropped) in taken.items():
        gw.take_in(device, chunks, dropped, now)
    for device, samples in gw.inbox.over_limit_taken().items():   # beyond the inbox's wearers: counted
        gw.table.refuse(device, samples)
        gw.counters.drop("wearer_limit", samples, received=True)
    return END in markers


def drain(gw: Gateway, stop, reason: str = "the daemon was stopped", feed: Feed | None = None) -> dict:
    """Take in what is queued, run it, close every wearer (its last hop run, its episodes closed: one still going
    is cut, with `reason`), the sinks and the engines; returns the final counters: the totals and each wearer's."""
    sd_notify("STOPPING=1")
    stop.set()
    if feed is not None:
        feed.finish()     # the source's last counts (UDP: the kernel's drops after the last datagram)
    take_turn(gw, 0.0)
    gw.batcher.run()
    gw.table.close(reason)
    for sink in gw.sinks:
        sink.close()
        if sink.failures:
            gw.counters.sink_failures[sink.label] = sink.failures
    gw.engines.close()
    return GatewayMetrics(gw).final()


def run(config: dict, max_seconds: float | None = None, stop=None, reopen: list | None = None) -> dict:
    """Run the gateway until its sources end, `stop` is set or max_seconds pass; returns the final counters."""
    stop = stop or threading.Event()
    gw = wire(config)
    port = int(config["log"]["metrics_port"] or 0)
    metrics = GatewayMetrics(gw)
    server = serve_metrics(metrics, port, health=metrics) if port else None
    if reopen is not None:
        reopen.append(lambda: [sink.reopen() for sink in gw.sinks])
    metrics.ready = True     # before the ready line: whoever reads it finds /ready answering 200
    log.info("fog-daemon ready (gateway): bundle %s, engine %s (%s), source %s, up to %d wearers, sinks %s",
             gw.bundle.folder, gw.engines.backend, gw.engines.describe(), gw.source.describe(),
             config["gateway"]["max_wearers"], ", ".join(sink.label for sink in gw.sinks))
    for note in gw.bundle.model.notes:
        log.warning("bundle note: %s", printable(note))
    log.info("bundle %s: %s", gw.bundle.digest, gw.trust.describe())
    for warning in gw.trust.warnings:
        log.warning("%s: %s", "BUNDLE NOT ANCHORED" if gw.trust.anchor == "none" else "bundle trust", warning)
    sd_notify("READY=1")
    feed = Feed(gw.source, gw.inbox, gw.counters, stop,
                reopen=lambda: open_source_from(config, gw.bundle.input.spec.rate_hz),
                on_end=config["source"].get("on_end", "exit"),
                max_backoff_s=config["source"].get("reconnect_max_s", 30.0))
    feed.start()
    reason = loop(gw, stop, max_seconds)
    metrics.ready = False
    final = drain(gw, stop, reason, feed)
    gw.failure = gw.failure or feed.failure
    final["failure"] = gw.failure
    if server:
        server.shutdown()
    return final
