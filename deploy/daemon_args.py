"""fog-daemon's command line: the flags, and how they become configuration layers (`deploy.config` merges them
with the TOML file and the bundle's manifest). A setting's flag, type and help are the setting's (deploy.settings);
only what is not a setting is declared here: the bundle's folder, the config file, sinks, --probs, --set."""
from __future__ import annotations

import argparse

from deploy.bundle import BUNDLE_HELP
from deploy.config import parse_set, parse_sink
from deploy.mqtt_options import parse_mqtt_url
from deploy.settings import KINDS, SETTINGS, SOURCE_ONLY_FLAG
from deploy.validate import ConfigError

DESCRIPTION = ("fog-daemon: read a bundle and a sensor stream, emit freezing-of-gait events in real time "
               "(no torch needed).")
# The flag groups of --help, by the section of the settings they set.
GROUPS = {"source": "source (one)", "": "pipeline", "stream": "pipeline", "log": "output and operations",
          "gateway": "gateway: many wearers in one process (docs/daemon.md)"}


def build_parser(prog: str = "fog-daemon") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    """One flag per setting that has one, and the flags that are not settings."""
    p.add_argument("--bundle", metavar="DIR", help=BUNDLE_HELP)
    p.add_argument("bundle_given", nargs="?", metavar="BUNDLE", help=argparse.SUPPRESS)   # the older spelling
    p.add_argument("--config", help="TOML config file (see deploy/daemon.example.toml)")
    groups = {title: p.add_argument_group(title) for title in dict.fromkeys(GROUPS.values())}
    for flag in SOURCE_ONLY_FLAG:
        groups["source (one)"].add_argument(flag, action="store_true", help="read 't,AccV,AccML,AccAP' lines from "
                                                                            "stdin")
    for setting in SETTINGS:
        if setting.flag:
            groups[GROUPS[setting.section]].add_argument(setting.flag, dest=setting.dest, help=setting.doc,
                                                         **setting.arg)
    groups["source (one)"].add_argument(
        "--mqtt-in", metavar="URL", help="the gateway: samples from MQTT topics PREFIX/<wearer>/acc "
                                         "(mqtt[s]://[USER[:PASS]@]HOST[:PORT][/PREFIX], the sink's URL rules)")
    g = groups["output and operations"]
    g.add_argument("--sink", action="append", metavar="SPEC",
                   help="-, file:PATH, udp://HOST:PORT, mqtt://[USER:PASS@]HOST[:PORT][/TOPIC] (port 1883, topic "
                        "fog), mqtts://... (TLS, port 8883); repeatable; add ?probs for probs (`--sink -?probs` and "
                        "`--sink=-?probs` alike)")
    g.add_argument("--probs", action="store_true",
                   help="also send per-hop probabilities to every sink (the config's too)")
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
    """The flags as configuration layers: what the flags set, then each --set in turn."""
    chosen = {kind: flag for flag, kind in SOURCE_ONLY_FLAG.items() if getattr(args, flag.lstrip("-"))}
    chosen.update({s.selects: s.flag for s in SETTINGS if s.selects and getattr(args, s.dest) is not None})
    if args.mqtt_in:
        chosen["mqtt"] = "--mqtt-in"
    chosen = [chosen[kind] for kind in KINDS if kind in chosen]   # named in the sources' order
    if len(chosen) > 1:
        raise ConfigError(f"{' and '.join(chosen)}: the daemon reads one source; give only one of them")
    o: dict = {"source": {}, "stream": {}, "log": {}, "gateway": {}}
    if args.bundle and args.bundle_given and args.bundle != args.bundle_given:
        raise ConfigError(f"two bundles given: {args.bundle_given} and --bundle {args.bundle}; give one")
    if args.bundle or args.bundle_given:
        o["bundle"] = args.bundle or args.bundle_given
    for flag, kind in SOURCE_ONLY_FLAG.items():
        if getattr(args, flag.lstrip("-")):
            o["source"]["kind"] = kind
    for setting in SETTINGS:
        value = getattr(args, setting.dest) if setting.flag else None
        if value is None:
            continue
        (o[setting.section] if setting.section else o)[setting.key] = setting.parse(value) if setting.parse \
            else value
        if setting.selects:
            o["source"]["kind"] = setting.selects
    if args.mqtt_in:   # the gateway's MQTT input, by the MQTT sink's URL rules
        o["source"].update({k: v for k, v in parse_mqtt_url(args.mqtt_in).items() if k != "probs"}, kind="mqtt")
    if args.sink:
        o["sinks"] = [parse_sink(s) for s in args.sink]
    return [o] + [parse_set(s) for s in args.set]
