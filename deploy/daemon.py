"""fog-daemon: read a bundle and a sensor stream, emit freezing-of-gait events in real time (no torch needed).

    fog-daemon --bundle BUNDLE --udp-port 5005 --sink mqtt://127.0.0.1:1883/fog
    fog-daemon --bundle BUNDLE --replay walk.csv --sink - --probs         # as fast as possible
    fog-daemon --config /etc/fog/daemon.toml

SIGTERM/SIGINT drain what was received, close open episodes, print the counters and exit 0; SIGHUP logs the
counters and reopens file sinks (log rotation). Exit codes: 0 a normal end, 2 a setting or bundle refused at start
(nothing ran), 1 a failure while running (a live source that failed or ended, timestamps that disagree with the
rate): the counters are printed in every case after READY. Under systemd (Type=notify) it reports
READY/STATUS/WATCHDOG/STOPPING over $NOTIFY_SOCKET. Logs are JSON lines on stderr.
"""
from __future__ import annotations

import json
import logging
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass, field, replace

from deploy import gateway
from deploy.bundle import Bundle
from deploy.clock import RateWatch
from deploy.config import build_config, event_settings
from deploy.daemon_args import attach_sink_values, build_parser, overrides_from_args
from deploy.counters import Counters
from deploy.errors import FogError, printable, reader_gone
from deploy.feed import END, ENDS_NORMALLY, Feed
from deploy.onsets import OpenOnsets
from deploy.plausibility import SignalWatch
from deploy.plausibility import preflight as preflight_signal
from deploy.service import Heartbeat, sd_notify, serve_metrics, setup_logging
from deploy.signing import Trust, bundle_trust
from deploy.sinks import event_message, open_sink, probs_message
from deploy.settings import DAEMON_SOURCE_KEYS
from deploy.sources import open_source
from deploy.stream import Pipeline, StreamSettings
from deploy.thread_cap import open_for_daemon
from deploy.validate import preflight
from deploy.wearer import stream_setup
from deploy.wearers import WearerStream, stream_settings, time_scale, watches

log = logging.getLogger("deploy.daemon")


# ------------------------------------------------------------------ command line

def open_source_from(config: dict, model_rate: float):
    options = dict(config["source"])
    kind = options.pop("kind")
    # the daemon's settings, not the source's
    for key in DAEMON_SOURCE_KEYS:
        options.pop(key, None)
    if kind == "replay":
        for key in ("units", "rate_hz"):  # a recording carries its own
            options.pop(key, None)
        if not options.get("path"):
            raise FogError("source replay needs a path (--replay FILE)")
    else:
        options["rate_hz"] = options.get("rate_hz") or model_rate
    return open_source(kind, **options)


@dataclass
class Wiring:
    """What `run` connects: a source, through a queue, into the pipeline around the bundle's engine, out to sinks."""
    bundle: Bundle
    engine: object
    source: object
    sinks: list
    counters: Counters
    pipeline: Pipeline
    inbox: queue.Queue
    lookahead_samples: int | None
    rate_watch: RateWatch | None = None      # live sources: the rate their timestamps say
    failure: str | None = None               # why the run failed (exit 1), None while all is well
    trust: Trust | None = None               # what vouches for the bundle (deploy.signing)
    time_scale: float = 1.0                  # seconds per unit of the source's timestamps (source.time_unit)
    signal_watch: SignalWatch | None = None  # what gravity and the channels say (deploy.plausibility)

    stream: WearerStream = field(init=False)   # what each chunk goes through: the gateway's per-wearer code

    def __post_init__(self):
        self.stream = WearerStream(self.pipeline, self.counters, self.rate_watch, signal_watch=self.signal_watch,
                                   time_scale=self.time_scale)


def _sink_callbacks(sinks, classes, counters, onsets: OpenOnsets | None):
    """(deliver, on_event, on_probs): every message to every sink, each sink's failures in the counters, open
    onsets in the state file; on_probs None when no sink wants probs."""
    def deliver(message):
        for sink in sinks:
            failed = sink.failures
            sink.send(message)
            if sink.failures != failed:
                counters.sink_failures[sink.label] = sink.failures

    def on_event(kind, event, decided_s):
        log.info("%s %s onset %.2f s peak %.2f", kind, event.cls, event.onset_s, event.peak)
        message = event_message(kind, event, decided_s)
        if onsets is not None:
            onsets.update(kind, message)
        deliver(message)

    def on_probs(t0, probs, rate):
        deliver(probs_message(t0, probs, rate, classes))
    return deliver, on_event, (on_probs if any(s.want_probs for s in sinks) else None)


def _close_leftover_onsets(onsets: OpenOnsets | None, deliver, counters) -> None:
    """After a SIGKILL: the previous run's open onsets are closed explicitly (`aborted`) before anything else."""
    for message in onsets.leftover() if onsets is not None else []:
        log.warning("closing an onset the previous run never ended: %s at %.2f s", message["class"],
                    message["onset_s"])
        counters.aborted_onsets += 1
        deliver(message)


def wearer_setup(spec, streaming, state_path, stream: StreamSettings):
    """The stream normalization export chose (the bundle's `streaming` section), with the wearer's state file if
    any."""
    stream_spec, normalizer = stream_setup(spec, streaming, state_path)
    log.info("stream normalization %s (declared %s)%s", streaming.normalization if streaming else "declared",
             spec.normalization, f", wearer state {state_path}" if state_path else "")
    return stream_spec, replace(stream, normalizer=normalizer)


def sink_options(sink: dict, config: dict) -> dict:
    """A sink table as open_sink takes it; an MQTT sink also gets the device's id (config `device_id`)."""
    return dict(sink, device_id=config.get("device_id")) if sink["kind"] == "mqtt" else dict(sink)


def _threads_note(engine) -> str:
    """", 1 thread (measured on this device: ...)" for the ready line: the intra-op threads an onnxruntime engine
    uses, and how they were decided (deploy.thread_cap)."""
    threads = getattr(engine, "threads", None)
    if threads is None:
        return ""
    reason = getattr(engine, "threads_reason", "").split(";")[0]    # the whole of it is logged before
    return f", {threads} thread{'s' if threads > 1 else ''}" + (f" ({reason})" if reason else "")


def wire(config: dict) -> Wiring:
    """Open the bundle (verified, and pinned when the config says so), its engine, the source and the sinks, and
    the pipeline between them; every setting is checked here, before READY."""
    bundle = Bundle.load(config["bundle"], verify=True, expected_digest=config.get("bundle_digest"))
    trust = bundle_trust(bundle.folder, bundle.digest, config)   # a signature required and missing: refused here
    spec = bundle.input.spec
    events = event_settings(config, bundle)   # the bundle's, under the config's; checked
    source = open_source_from(config, spec.rate_hz)
    preflight(spec, bundle.classes, events, source.rate_hz or spec.rate_hz, source.units)
    log.info("events: %s, look-ahead %s s (%s)", "one any-FOG event per freeze" if events.any_event else
             "one stream per event class", events.lookahead_s, "the bundle's" if config["stream"]["lookahead_s"] is None
             else f"the config's, over the bundle's {bundle.events.lookahead_s}")
    engine = open_for_daemon(bundle, config)      # threads measured on this device (deploy.thread_cap)
    sinks = [open_sink(**sink_options(s, config)) for s in config["sinks"]]
    counters = Counters()
    counters.bundle_anchor = trust.anchor
    st = config["stream"]
    onsets = OpenOnsets(st["state_file"]) if st.get("state_file") else None
    deliver, on_event, on_probs = _sink_callbacks(sinks, bundle.classes, counters, onsets)
    _close_leftover_onsets(onsets, deliver, counters)
    stream = stream_settings(bundle, config, source, events)   # deploy.wearers: the gateway's wearers' too
    spec, stream = wearer_setup(spec, bundle.streaming, st.get("wearer_state"), stream)
    pipeline = Pipeline(spec, engine, bundle.classes, counters, stream, on_probs=on_probs, on_event=on_event)
    watch, signal_watch = watches(bundle, config, source, counters)
    if source.name == "replay":   # a recording's units mistake stops the start, before READY
        preflight_signal(signal_watch, source.recording.acc, f"recording {source.path}")
    return Wiring(bundle, engine, source, sinks, counters, pipeline, queue.Queue(maxsize=int(st["queue_chunks"])),
                  stream.lookahead_samples, watch, trust=trust, signal_watch=signal_watch, time_scale=time_scale(config))


def start_source(w: Wiring, config: dict, stop: threading.Event) -> Feed:
    """The source on its own thread (deploy.feed), reopened as the config says when a live source fails."""
    feed = Feed(w.source, w.inbox, w.counters, stop, reopen=lambda: open_source_from(config, w.pipeline.rate),
                on_end=config["source"]["on_end"],
                max_backoff_s=config["source"]["reconnect_max_s"])
    feed.start()
    return feed


def loop(w: Wiring, config: dict, stop: threading.Event, max_seconds: float | None = None,
         beat: Heartbeat | None = None) -> str:
    """Take chunks from the queue into the pipeline until the source ends, `stop` is set or max_seconds pass;
    returns why it stopped (an episode still going then is cut, and its event says so)."""
    beat = beat or Heartbeat(config, w.counters)
    ended = False
    while not stop.is_set() and not ended:
        try:
            item = w.inbox.get(timeout=0.2)
        except queue.Empty:
            item = None
        now = time.monotonic()
        if item is END:
            ended = True
        elif item is not None:
            if not w.source.live:  # replay: latency counts from when the pipeline takes it, not from queueing
                item.arrival = now
            _process(item, w, stop)
            beat.data(now)
        else:
            beat.idle(now)
        beat.tick(now)
        if max_seconds is not None and now - beat.started >= max_seconds:
            return f"the daemon stopped after --max-seconds {max_seconds:g}"
    if getattr(stop, "reason", None) or w.failure:   # a signal (or a refusal) first: the input may end meanwhile
        return getattr(stop, "reason", None) or w.failure
    if ended:
        return "the input ended" if w.source.name in ENDS_NORMALLY else f"the source {w.source.name} ended"
    return "the daemon was stopped"


def drain(w: Wiring, stop: threading.Event, reason: str = "the daemon was stopped", feed: Feed | None = None) -> dict:
    """Process what is already queued (bounded by the queue size), close pending hops and episodes (one still
    going is cut, with `reason`), close the sinks and the engine; returns the final counters."""
    sd_notify("STOPPING=1")
    stop.set()
    if feed is not None:
        feed.finish()
    while True:
        try:
            item = w.inbox.get_nowait()
        except queue.Empty:
            break
        if item is not END:
            _process(item, w, stop)
    w.pipeline.end_segment(reason)
    for sink in w.sinks:
        sink.close()
        if sink.failures:   # also what a sink found undelivered as it closed
            w.counters.sink_failures[sink.label] = sink.failures
    w.engine.close()
    snapshot = w.counters.snapshot()
    snapshot["balanced"] = w.counters.balanced()
    return snapshot


def run(config: dict, max_seconds: float | None = None, stop: threading.Event | None = None) -> dict:
    """Run the daemon until the source ends, `stop` is set or max_seconds pass; returns the final counters."""
    stop = stop or threading.Event()
    w = wire(config)
    beat = Heartbeat(config, w.counters)   # reads systemd's watchdog setting: a bad one stops the start here
    port = int(config["log"]["metrics_port"] or 0)
    metrics = serve_metrics(w.counters, port) if port else None
    reopen_sinks.append(lambda: _reopen(w))
    log.info("fog-daemon ready: bundle %s, engine %s (%s%s), source %s, hop %d samples, look-ahead %s, sinks %s",
             w.bundle.folder, w.engine.backend, getattr(w.engine, "precision", "?"), _threads_note(w.engine),
             w.source.describe(),
             w.pipeline.hop, "full" if w.lookahead_samples is None else f"{w.pipeline.keep} samples",
             ", ".join(sink.label for sink in w.sinks))
    for note in w.bundle.model.notes:
        log.warning("bundle note: %s", printable(note))  # e.g. random initial weights: its events mean nothing
    _say_trust(w)
    sd_notify("READY=1")
    feed = start_source(w, config, stop)
    final = drain(w, stop, loop(w, config, stop, max_seconds, beat), feed)
    w.failure = w.failure or feed.failure
    final["failure"] = w.failure
    if metrics:
        metrics.shutdown()
    return final


def _say_trust(w: Wiring) -> None:
    """What vouches for the bundle, at every start; loudly when nothing does (also in every status line)."""
    log.info("bundle %s: %s", w.bundle.digest, w.trust.describe())
    for warning in w.trust.warnings:
        log.warning("%s: %s", "BUNDLE NOT ANCHORED" if w.trust.anchor == "none" else "bundle trust", warning)


reopen_sinks: list = []   # what SIGHUP does once the daemon runs (set by `run`)


def _reopen(w: Wiring) -> None:
    log.info("SIGHUP: status: %s; reopening file sinks", w.counters.status_line())
    for sink in w.sinks:
        sink.reopen()


def _process(chunk, w: Wiring, stop: threading.Event) -> None:
    """One chunk through the wearer's stream (deploy.wearers: the code the gateway runs per wearer); a stream
    refused (its rate, an implausible signal) stops the daemon (exit 1), every sample counted."""
    refused = w.stream.process(chunk)
    if refused is not None:
        if w.failure is None:
            w.failure = refused
            log.error("stopping: %s", refused)
        stop.set()


def _stop_by_signal(stop: threading.Event, signum: int) -> None:
    stop.reason = f"the daemon was stopped ({signal.Signals(signum).name})"   # said in the events it cuts short
    stop.set()


def main(argv=None, prog: str = "fog-daemon") -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        status = run_args(build_parser(prog).parse_args(attach_sink_values(argv)), prog)
        sys.stdout.flush()
        return status
    except BrokenPipeError:      # `fog-daemon --help | head`
        return reader_gone()


def run_args(args, prog: str = "fog-daemon") -> int:
    """Run from parsed arguments (shared by fog-daemon, python -m deploy and toolkit serve)."""
    stop = threading.Event()
    try:
        config = build_config(args.config, overrides_from_args(args))
        if args.probs:  # every sink, wherever it was configured
            config["sinks"] = [dict(sink, probs=True) for sink in config["sinks"]]
        setup_logging(config["log"]["level"], config["log"]["format"])
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, _: _stop_by_signal(stop, signum))
        signal.signal(signal.SIGHUP, lambda *_: [f() for f in reopen_sinks])
        if config["gateway"]["enabled"]:   # many wearers, one process (deploy.gateway)
            final = gateway.run(config, max_seconds=args.max_seconds, stop=stop, reopen=reopen_sinks)
        else:
            final = run(config, max_seconds=args.max_seconds, stop=stop)
    except FogError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        reopen_sinks.clear()
    print(json.dumps({"counters": final}), file=sys.stderr)
    if final["failure"]:
        print(f"{prog}: error: {final['failure']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
