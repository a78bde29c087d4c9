"""fog-daemon's command line: the flags, and how they become configuration layers (`deploy.config` merges them
with the TOML file and the bundle's manifest)."""
from __future__ import annotations

import argparse

from deploy.config import parse_set, parse_sink
from deploy.contract import event_help
from deploy.layouts import FILE_LAYOUT_HELP
from deploy.validate import ConfigError

DESCRIPTION = ("fog-daemon: read a bundle and a sensor stream, emit freezing-of-gait events in real time "
               "(no torch needed).")

def build_parser(prog: str = "fog-daemon") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", nargs="?", help="bundle folder (made by `toolkit export`)")
    p.add_argument("--config", help="TOML config file (see deploy/daemon.example.toml)")
    g = p.add_argument_group("source (one)")
    g.add_argument("--replay", metavar="FILE", help="replay a recording (CSV, npz, Daphnet .txt, Stanford .xlsx)")
    g.add_argument("--layout", help=FILE_LAYOUT_HELP)
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
    g.add_argument("--threads", type=int, help="onnxruntime intra-op threads: a budget; the engine uses no more than "
                   "the bundle's measured thread cap (default: all cores)")
    g.add_argument("--no-thread-cap", dest="thread_cap", action="store_false", default=None,
                   help="use all --threads even where the export measured fewer to be as fast")
    g.add_argument("--hop-s", type=float, help=event_help("hop_s"))
    g.add_argument("--lookahead-s", help=event_help("lookahead_s"))
    g = p.add_argument_group("output and operations")
    g.add_argument("--sink", action="append", metavar="SPEC",
                   help="-, file:PATH, udp://HOST:PORT, mqtt://[USER:PASS@]HOST[:PORT][/TOPIC] (port 1883, topic "
                        "fog), mqtts://... (TLS, port 8883); repeatable; add ?probs for probs (`--sink -?probs` and "
                        "`--sink=-?probs` alike)")
    g.add_argument("--device-id", help="this device's name in MQTT topics and client id (default: the host name)")
    g.add_argument("--probs", action="store_true",
                   help="also send per-hop probabilities to every sink (the config's too)")
    g.add_argument("--metrics-port", type=int, help="serve Prometheus text on 127.0.0.1:PORT/metrics")
    g.add_argument("--status-interval", type=float, help="seconds between status log lines (0 = off)")
    g.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    g.add_argument("--max-seconds", type=_positive_seconds, help="stop after this many seconds (tests, benchmarks)")
    g.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override any key")


def _positive_seconds(text: str) -> float:
    """argparse type of --max-seconds: a finite number of seconds above 0 (argparse says the error, exit 2)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds above 0 (e.g. 60), or leave it out to "
                                         "run until the source ends or a signal stops the daemon")
    return value


SOURCE_FLAGS = (("replay", "--replay"), ("stdin", "--stdin"), ("udp_port", "--udp-port"), ("serial", "--serial"),
                ("lsl", "--lsl"))


def _lookahead_flag(text: str):
    if text == "full":
        return text
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"--lookahead-s {text!r}: give seconds (e.g. 0.5) or 'full'") from None


def attach_sink_values(argv) -> list[str]:
    """`--sink VALUE` -> `--sink=VALUE`: argparse takes a separate value that starts with '-' (`-?probs`, stdout
    with probabilities) for an unknown option and stops with "expected one argument"."""
    argv, out, i = list(argv), [], 0
    while i < len(argv):
        if argv[i] == "--sink" and i + 1 < len(argv):
            out.append(f"--sink={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def overrides_from_args(args) -> list[dict]:
    given = [name for attr, name in SOURCE_FLAGS if getattr(args, attr) not in (None, False)]
    if len(given) > 1:
        raise ConfigError(f"{' and '.join(given)}: the daemon reads one source; give only one of them")
    o: dict = {"source": {}, "stream": {}, "log": {}}
    if args.bundle:
        o["bundle"] = args.bundle
    for key in ("backend", "precision", "threads", "thread_cap", "device_id"):
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
        o["stream"]["lookahead_s"] = _lookahead_flag(args.lookahead_s)
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
