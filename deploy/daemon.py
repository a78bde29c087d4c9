"""fog-daemon: read a bundle and a sensor stream, emit freezing-of-gait events in real time (no torch needed).

    fog-daemon BUNDLE --udp-port 5005 --sink mqtt://127.0.0.1:1883/fog
    fog-daemon BUNDLE --replay walk.csv --sink - --probs         # as fast as possible
    fog-daemon --config /etc/fog/daemon.toml

SIGTERM/SIGINT drain what was received, close open episodes, print the counters and exit 0. Under systemd
(Type=notify) it reports READY/STATUS/WATCHDOG/STOPPING over $NOTIFY_SOCKET. Logs are JSON lines on stderr.
"""
from __future__ import annotations

import argparse
import json
import logging
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass, replace

from deploy.bundle import Bundle
from deploy.config import build_config, parse_set, parse_sink, stream_settings
from deploy.counters import Counters
from deploy.engines import open_engine
from deploy.event_classes import from_manifest
from deploy.errors import FogError
from deploy.preprocess import PreprocessSpec
from deploy.service import sd_notify, serve_metrics, setup_logging, watchdog_interval_s
from deploy.sinks import event_message, open_sink, probs_message
from deploy.sources import open_source
from deploy.stream import Pipeline, StreamSettings
from deploy.wearer import stream_setup

log = logging.getLogger("deploy.daemon")
END = object()


# ------------------------------------------------------------------ command line

def build_parser(prog: str = "fog-daemon") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", nargs="?", help="bundle folder (made by `toolkit export`)")
    p.add_argument("--config", help="TOML config file (see deploy/daemon.example.toml)")
    g = p.add_argument_group("source (one)")
    g.add_argument("--replay", metavar="FILE", help="replay a recording (CSV or npz)")
    g.add_argument("--layout", help="recording layout for --replay (default: detect)")
    g.add_argument("--realtime", action="store_true", help="replay at real time (default: as fast as possible)")
    g.add_argument("--speed", type=float, help="replay speed factor with --realtime")
    g.add_argument("--stdin", action="store_true", help="read 't,AccV,AccML,AccAP' lines from stdin")
    g.add_argument("--udp-port", type=int, help="listen for datagrams of such lines on this port")
    g.add_argument("--udp-host", help="address to listen on (default 127.0.0.1)")
    g.add_argument("--serial", metavar="DEVICE", help="read lines from a serial device")
    g.add_argument("--baud", type=int, help="serial baud rate")
    g.add_argument("--lsl", metavar="NAME", help="read a Lab Streaming Layer stream by name")
    g.add_argument("--units", choices=("g", "m/s^2"), help="units of a live source")
    g.add_argument("--rate-hz", type=float, help="nominal rate of a live source (default: the model rate)")
    g = p.add_argument_group("pipeline")
    g.add_argument("--backend", choices=("auto", "onnxruntime", "tensorrt"))
    g.add_argument("--precision", choices=("fp32", "fp16", "int8"))
    g.add_argument("--threads", type=int, help="onnxruntime intra-op threads")
    g.add_argument("--hop-s", type=float, help="seconds between model runs (default: manifest, else 0.5)")
    g.add_argument("--lookahead-s", help="right context a sample waits for, seconds or 'full'")
    g = p.add_argument_group("output and operations")
    g.add_argument("--sink", action="append", metavar="SPEC",
                   help="-, file:PATH, udp://HOST:PORT, mqtt://HOST:PORT/TOPIC; repeatable; add ?probs for probs")
    g.add_argument("--probs", action="store_true", help="also send per-hop probabilities to every sink")
    g.add_argument("--metrics-port", type=int, help="serve Prometheus text on 127.0.0.1:PORT/metrics")
    g.add_argument("--status-interval", type=float, help="seconds between status log lines (0 = off)")
    g.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    g.add_argument("--max-seconds", type=float, help="stop after this many seconds (tests, benchmarks)")
    g.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override any key")


def overrides_from_args(args) -> list[dict]:
    o: dict = {"source": {}, "stream": {}, "log": {}}
    if args.bundle:
        o["bundle"] = args.bundle
    for key in ("backend", "precision", "threads"):
        if getattr(args, key) is not None:
            o[key] = getattr(args, key)
    src = o["source"]
    if args.replay:
        src.update(kind="replay", path=args.replay)
    if args.stdin:
        src["kind"] = "stdin"
    if args.udp_port is not None:
        src.update(kind="udp", port=args.udp_port)
    if args.serial:
        src.update(kind="serial", device=args.serial)
    if args.lsl:
        src.update(kind="lsl", stream_name=args.lsl)
    for flag, key in (("layout", "layout"), ("speed", "speed"), ("udp_host", "host"), ("baud", "baud"),
                      ("units", "units"), ("rate_hz", "rate_hz")):
        if getattr(args, flag) is not None:
            src[key] = getattr(args, flag)
    if args.realtime:
        src["realtime"] = True
    if args.hop_s is not None:
        o["stream"]["hop_s"] = args.hop_s
    if args.lookahead_s is not None:
        o["stream"]["lookahead_s"] = args.lookahead_s if args.lookahead_s == "full" else float(args.lookahead_s)
    if args.sink:
        o["sinks"] = [parse_sink(s) for s in args.sink]
    if args.metrics_port is not None:
        o["log"]["metrics_port"] = args.metrics_port
    if args.status_interval is not None:
        o["log"]["status_interval_s"] = args.status_interval
    if args.log_level:
        o["log"]["level"] = args.log_level
    return [o] + [parse_set(s) for s in args.set]


# ------------------------------------------------------------------ the run

def open_source_from(config: dict, model_rate: float):
    options = dict(config["source"])
    kind = options.pop("kind")
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


def _sink_callbacks(sinks, classes):
    """(on_event, on_probs) for the pipeline: every message to every sink; on_probs None when no sink wants probs."""
    def on_event(kind, event, decided_s):
        message = event_message(kind, event, decided_s)
        log.info("%s %s onset %.2f s peak %.2f", kind, event.cls, event.onset_s, event.peak)
        for sink in sinks:
            sink.send(message)

    def on_probs(t0, probs, rate):
        message = probs_message(t0, probs, rate, classes)
        for sink in sinks:
            sink.send(message)
    return on_event, (on_probs if any(s.want_probs for s in sinks) else None)


def stream_options(manifest: dict) -> dict:
    """The bundle's event classes (background classes raise no event)."""
    return {"event_columns": tuple(from_manifest(manifest)[0])}


def wearer_setup(spec, manifest: dict, state_path, stream: StreamSettings):
    """The stream normalization export chose (manifest `streaming`), with the wearer's state file if any."""
    streaming = manifest.get("streaming") or {}
    stream_spec, normalizer = stream_setup(spec, streaming, state_path)
    log.info("stream normalization %s (declared %s)%s", streaming.get("normalization") or "declared",
             spec.normalization, f", wearer state {state_path}" if state_path else "")
    return stream_spec, replace(stream, normalizer=normalizer)


def wire(config: dict) -> Wiring:
    """Open the bundle (verified), its engine, the sinks and the source, and the pipeline between them."""
    bundle = Bundle.load(config["bundle"], verify=True)
    spec = PreprocessSpec.from_dict(bundle.manifest["input"]["preprocess"])
    engine = open_engine(bundle, backend=config["backend"], precision=config["precision"],
                         threads=config["threads"])
    settings = stream_settings(config, bundle.manifest, spec.rate_hz)
    sinks = [open_sink(s["kind"], **{k: v for k, v in s.items() if k != "kind"}) for s in config["sinks"]]
    source = open_source_from(config, spec.rate_hz)
    counters = Counters()
    st = config["stream"]
    on_event, on_probs = _sink_callbacks(sinks, bundle.classes)
    stream = StreamSettings(source_units=source.units, source_rate_hz=source.rate_hz,
                            hop_samples=settings["hop_samples"], lookahead_samples=settings["lookahead_samples"],
                            events=settings["events"], live=source.live, max_gap_s=st["max_gap_s"],
                            max_behind_s=st["max_behind_s"], **stream_options(bundle.manifest))
    spec, stream = wearer_setup(spec, bundle.manifest, st.get("wearer_state"), stream)
    pipeline = Pipeline(spec, engine, bundle.classes, counters, stream, on_probs=on_probs, on_event=on_event)
    return Wiring(bundle, engine, source, sinks, counters, pipeline, queue.Queue(maxsize=int(st["queue_chunks"])),
                  settings["lookahead_samples"])


def start_source(w: Wiring, stop: threading.Event) -> threading.Thread:
    """The source on its own thread, feeding the queue; END is queued when it stops. A live source's chunk that
    finds the queue full is dropped and counted (memory stays bounded); a replay waits for room."""
    def emit(chunk):
        if w.source.live:
            try:
                w.inbox.put_nowait(chunk)
            except queue.Full:  # behind: the newest data is dropped and counted, memory stays bounded
                w.counters.drop("overflow", chunk.received, received=True)
            return
        while not stop.is_set():
            try:
                w.inbox.put(chunk, timeout=0.2)
                return
            except queue.Full:
                continue
        w.counters.drop("shutdown", chunk.received, received=True)

    def source_thread():
        try:
            w.source.run(emit, stop)
        except Exception:
            log.exception("source %s failed", w.source.name)
        finally:
            while True:
                try:
                    w.inbox.put(END, timeout=0.2)
                    return
                except queue.Full:
                    if stop.is_set():
                        return

    thread = threading.Thread(target=source_thread, name="source", daemon=True)
    thread.start()
    return thread


class _Heartbeat:
    """What the loop reports while it runs: systemd's watchdog, a status line, a warning when the sensor is silent."""

    def __init__(self, config: dict, counters: Counters):
        self.counters, self.watchdog_s = counters, watchdog_interval_s()
        self.status_every = float(config["log"]["status_interval_s"] or 0)
        self.silence_s = float(config["stream"]["silence_s"])
        self.started = self.last_data = self.last_status = self.last_wd = time.monotonic()
        self.silent = False

    def data(self, now: float) -> None:
        self.last_data, self.silent = now, False

    def idle(self, now: float) -> None:
        if not self.silent and now - self.last_data > self.silence_s:
            self.silent = True
            self.counters.silences += 1
            log.warning("sensor silent for %.1f s", now - self.last_data)

    def tick(self, now: float) -> None:
        if self.watchdog_s and now - self.last_wd >= self.watchdog_s:
            sd_notify("WATCHDOG=1")
            self.last_wd = now
        if self.status_every and now - self.last_status >= self.status_every:
            log.info("status: %s", self.counters.status_line())
            sd_notify("STATUS=" + self.counters.status_line())
            self.last_status = now


def loop(w: Wiring, config: dict, stop: threading.Event, max_seconds: float | None = None) -> None:
    """Take chunks from the queue into the pipeline until the source ends, `stop` is set or max_seconds pass."""
    beat = _Heartbeat(config, w.counters)
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
            _process(item, w.counters, w.pipeline)
            beat.data(now)
        else:
            beat.idle(now)
        beat.tick(now)
        if max_seconds is not None and now - beat.started >= max_seconds:
            break


def drain(w: Wiring, stop: threading.Event) -> dict:
    """Process what is already queued (bounded by the queue size), close pending hops and episodes, close the
    sinks and the engine; returns the final counters."""
    sd_notify("STOPPING=1")
    stop.set()
    while True:
        try:
            item = w.inbox.get_nowait()
        except queue.Empty:
            break
        if item is not END:
            _process(item, w.counters, w.pipeline)
    w.pipeline.end_segment()
    for sink in w.sinks:
        sink.close()
    w.engine.close()
    snapshot = w.counters.snapshot()
    snapshot["balanced"] = w.counters.balanced()
    return snapshot


def run(config: dict, max_seconds: float | None = None, stop: threading.Event | None = None) -> dict:
    """Run the daemon until the source ends, `stop` is set or max_seconds pass; returns the final counters."""
    stop = stop or threading.Event()
    w = wire(config)
    port = int(config["log"]["metrics_port"] or 0)
    metrics = serve_metrics(w.counters, port) if port else None
    log.info("fog-daemon ready: bundle %s, engine %s (%s), source %s, hop %d samples, look-ahead %s",
             w.bundle.folder, w.engine.backend, getattr(w.engine, "precision", "?"), w.source.describe(),
             w.pipeline.hop, "full" if w.lookahead_samples is None else f"{w.pipeline.keep} samples")
    sd_notify("READY=1")
    start_source(w, stop)
    loop(w, config, stop, max_seconds)
    final = drain(w, stop)
    if metrics:
        metrics.shutdown()
    return final


def _process(chunk, counters, pipeline) -> None:
    counters.receive(chunk.received, chunk.rejected)
    try:
        pipeline.push(chunk)
    except FogError as exc:
        log.error("chunk rejected: %s", exc)
    except Exception:  # a bug must not stop the patient's detector; it is logged with its traceback
        log.exception("pipeline error; the window restarts")
        pipeline.end_segment()


def main(argv=None, prog: str = "fog-daemon") -> int:
    return run_args(build_parser(prog).parse_args(argv), prog)


def run_args(args, prog: str = "fog-daemon") -> int:
    """Run from parsed arguments (shared by fog-daemon, python -m deploy and toolkit serve)."""
    stop = threading.Event()
    try:
        config = build_config(args.config, overrides_from_args(args))
        setup_logging(config["log"]["level"], config["log"]["format"])
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        final = run(config, max_seconds=args.max_seconds, stop=stop)
    except FogError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"counters": final}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
