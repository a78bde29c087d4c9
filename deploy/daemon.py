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
import os
import queue
import signal
import socket
import sys
import threading
import time

from deploy.errors import FogError

log = logging.getLogger("deploy.daemon")
END = object()


# ------------------------------------------------------------------ systemd

def sd_notify(message: str) -> bool:
    """Send `message` (e.g. "READY=1") to systemd's notify socket; False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
        return True
    except OSError as exc:
        log.warning("sd_notify failed: %s", exc)
        return False


def watchdog_interval_s() -> float | None:
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1e6 / 2  # ping twice per period, as systemd recommends


# ------------------------------------------------------------------ logs and metrics

class JsonFormatter(logging.Formatter):
    def format(self, record):
        entry = {"ts": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name,
                 "msg": record.getMessage()}
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, str(level).upper(), logging.INFO))


def serve_metrics(counters, port: int):
    """Prometheus text on http://127.0.0.1:PORT/metrics (loopback only), in a daemon thread."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = counters.prometheus().encode() if self.path.startswith("/metrics") else b"see /metrics\n"
            self.send_response(200 if self.path.startswith("/metrics") else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("metrics on http://127.0.0.1:%d/metrics", server.server_address[1])
    return server


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
    from deploy.config import parse_set, parse_sink
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
    from deploy.sources import open_source
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


def run(config: dict, max_seconds: float | None = None, stop: threading.Event | None = None) -> dict:
    """Run the daemon until the source ends, `stop` is set or max_seconds pass; returns the final counters."""
    from deploy.bundle import Bundle
    from deploy.counters import Counters
    from deploy.engines import open_engine
    from deploy.preprocess import PreprocessSpec
    from deploy.sinks import event_message, open_sink, probs_message
    from deploy.stream import Pipeline
    from deploy.config import stream_settings

    stop = stop or threading.Event()
    bundle = Bundle.load(config["bundle"], verify=True)
    spec = PreprocessSpec.from_dict(bundle.manifest["input"]["preprocess"])
    engine = open_engine(bundle, backend=config["backend"], precision=config["precision"],
                         threads=config["threads"])
    settings = stream_settings(config, bundle.manifest, spec.rate_hz)
    sinks = [open_sink(s["kind"], **{k: v for k, v in s.items() if k != "kind"}) for s in config["sinks"]]
    want_probs = any(s.want_probs for s in sinks)
    source = open_source_from(config, spec.rate_hz)
    counters = Counters()
    classes = bundle.classes

    def on_event(kind, event, decided_s):
        message = event_message(kind, event, decided_s)
        log.info("%s %s onset %.2f s peak %.2f", kind, event.cls, event.onset_s, event.peak)
        for sink in sinks:
            sink.send(message)

    def on_probs(t0, probs, rate):
        message = probs_message(t0, probs, rate, classes)
        for sink in sinks:
            sink.send(message)

    st = config["stream"]
    pipeline = Pipeline(spec, engine, classes, counters, source_units=source.units, source_rate_hz=source.rate_hz,
                        hop_samples=settings["hop_samples"], lookahead_samples=settings["lookahead_samples"],
                        events=settings["events"], on_probs=on_probs if want_probs else None, on_event=on_event,
                        live=source.live, max_gap_s=st["max_gap_s"], max_behind_s=st["max_behind_s"])
    inbox: queue.Queue = queue.Queue(maxsize=int(st["queue_chunks"]))

    def emit(chunk):
        if source.live:
            try:
                inbox.put_nowait(chunk)
            except queue.Full:  # behind: the newest data is dropped and counted, memory stays bounded
                counters.drop("overflow", chunk.received, received=True)
        else:
            while not stop.is_set():
                try:
                    inbox.put(chunk, timeout=0.2)
                    return
                except queue.Full:
                    continue
            counters.drop("shutdown", chunk.received, received=True)

    def source_thread():
        try:
            source.run(emit, stop)
        except Exception:
            log.exception("source %s failed", source.name)
        finally:
            while True:
                try:
                    inbox.put(END, timeout=0.2)
                    return
                except queue.Full:
                    if stop.is_set():
                        return

    metrics = serve_metrics(counters, int(config["log"]["metrics_port"])) if config["log"]["metrics_port"] else None
    log.info("fog-daemon ready: bundle %s, engine %s (%s), source %s, hop %d samples, look-ahead %s",
             bundle.folder, engine.backend, getattr(engine, "precision", "?"), source.describe(),
             pipeline.hop, "full" if settings["lookahead_samples"] is None else f"{pipeline.keep} samples")
    sd_notify("READY=1")
    threading.Thread(target=source_thread, name="source", daemon=True).start()

    wd = watchdog_interval_s()
    status_every = float(config["log"]["status_interval_s"] or 0)
    silence_s = float(st["silence_s"])
    started = last_data = last_status = last_wd = time.monotonic()
    silent = False
    ended = False
    while not stop.is_set() and not ended:
        try:
            item = inbox.get(timeout=0.2)
        except queue.Empty:
            item = None
        now = time.monotonic()
        if item is END:
            ended = True
        elif item is not None:
            if not source.live:  # replay: latency counts from when the pipeline takes it, not from queueing
                item.arrival = now
            _process(item, counters, pipeline)
            last_data, silent = now, False
        elif not silent and now - last_data > silence_s:
            silent = True
            counters.silences += 1
            log.warning("sensor silent for %.1f s", now - last_data)
        if wd and now - last_wd >= wd:
            sd_notify("WATCHDOG=1")
            last_wd = now
        if status_every and now - last_status >= status_every:
            log.info("status: %s", counters.status_line())
            sd_notify("STATUS=" + counters.status_line())
            last_status = now
        if max_seconds is not None and now - started >= max_seconds:
            break
    # drain: whatever is already queued is processed (bounded by the queue size), then pending hops are closed
    sd_notify("STOPPING=1")
    stop.set()
    while True:
        try:
            item = inbox.get_nowait()
        except queue.Empty:
            break
        if item is not END:
            _process(item, counters, pipeline)
    pipeline.end_segment()
    for sink in sinks:
        sink.close()
    engine.close()
    if metrics:
        metrics.shutdown()
    snapshot = counters.snapshot()
    snapshot["balanced"] = counters.balanced()
    return snapshot


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
    from deploy.config import build_config
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
