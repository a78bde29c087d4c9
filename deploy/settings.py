"""The daemon's settings, each declared once (`SETTINGS`): its section, key, check, default, flag and documentation.

Everything else is made from that table: the defaults a configuration starts from and the check of every value
before READY (deploy.config), the command-line flags and how they become a configuration layer (deploy.daemon_args),
and the example TOML (deploy/daemon.example.toml) and the settings table of docs/daemon.md, which
deploy.settings_docs renders and tests/test_daemon_settings.py compares with the files. A source's or a sink's own
options take their default from its class (the constructor is their one home), the stream's numbers from
deploy.stream.StreamSettings. Event settings are the bundle contract's (deploy.contract.events): the [events] table
and [stream] hop_s / lookahead_s are checked and described by it, not here.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field, fields
from typing import Callable

from deploy.bundle import BUNDLE_HELP
from deploy.contract import event_help
from deploy.contract.checks import number
from deploy.contract.events import DETECTOR_KEYS, FULL, TIMINGS
from deploy.errors import ConfigError, closest, did_you_mean
from deploy.layouts import FILE_LAYOUT_HELP
from deploy.sinks import SINKS
from deploy.sources import SOURCES
from deploy.sources_multi import SOURCES as WEARER_SOURCES
from deploy.stream import StreamSettings
from deploy.thread_cap import check_setting as thread_cap_setting
from deploy.validate import (PORT, TIME_UNIT, UNITS, batch_sizes, channels, check_event_table, choice, digest,
                             key_list, secret, serial_ports, switch, text, topic_level)

SECTIONS = ("source", "stream", "events", "log", "gateway")   # the TOML tables; [[sinks]] is a list of tables
KINDS = tuple(dict.fromkeys([*SOURCES, *WEARER_SOURCES]))    # the daemon's sources, and the gateway's (mqtt)
NO_DEFAULT = object()   # a value the user must give where the setting applies (a replay's path)


@dataclass(frozen=True)
class Setting:
    section: str                      # "" (top level), "source", "stream", "log" or "sinks"
    key: str
    check: Callable                   # (value, "section.key") -> the value, or ConfigError naming the fix
    doc: str                          # one line: the flag's help, the example TOML's comment, the docs' table
    default: object = None            # the value when nobody sets it (NO_DEFAULT: required where it applies)
    kinds: tuple = ()                 # the source or sink kinds that take it (none: every kind)
    flag: str = ""                    # its command-line flag
    arg: dict = field(default_factory=dict)   # the flag's argparse keywords (type, choices, action, metavar)
    example: object = NO_DEFAULT      # the value deploy/daemon.example.toml sets (else its default, commented out)
    selects: str = ""                 # the source kind its flag chooses (--udp-port: "udp")
    parse: Callable | None = None     # the flag's text -> the value (ConfigError when it cannot be)

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}" if self.section else self.key

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_").replace("no_", "", 1)


def _given(check):
    """`check` for a value that may be None (not given: the manifest's, else the contract's default)."""
    return lambda value, name: None if value is None else check(value, name)


def lookahead_flag(text_value: str):
    """--lookahead-s: seconds, or "full"."""
    if text_value == FULL:
        return text_value
    try:
        return float(text_value)
    except ValueError:
        raise ConfigError(f"--lookahead-s {text_value!r}: give seconds (e.g. 0.5) or 'full'") from None


def _arg(cls, name: str):
    """The default of `cls(... name=...)`: a source's or sink's option keeps its one home in the constructor."""
    return inspect.signature(cls.__init__).parameters[name].default


def _stream(name: str):
    """The default of deploy.stream.StreamSettings' field `name` (the library's and the daemon's alike)."""
    return next(f.default for f in fields(StreamSettings) if f.name == name)


S = Setting
SETTINGS = (
    # ------------------------------------------------------------------ top level
    S("", "bundle", text(), BUNDLE_HELP, example="/opt/fog/bundle"),
    S("", "bundle_digest", digest, "pin: run only the bundle with this digest (`toolkit inspect` prints it)"),
    S("", "trusted_keys", key_list, "Ed25519 public keys (files from `toolkit keygen`, or the base64 it prints): "
      "then only a bundle one of them signed runs (`toolkit sign`, export --sign-key); with neither a key nor a pin "
      "the daemon runs the bundle, warning loudly", []),
    S("", "require_signature", _given(switch), "refuse a bundle no trusted key signed (default: when trusted_keys "
      "are set; false: unsigned bundles run, loudly warned)"),
    S("", "backend", choice("auto", "onnxruntime", "tensorrt"), "auto | onnxruntime | tensorrt (auto prefers "
      "TensorRT when it imports)", "auto", flag="--backend", arg={"choices": ("auto", "onnxruntime", "tensorrt")},
      example="auto"),
    S("", "precision", choice("fp32", "fp16", "int8", optional=True), "the graph to run (default: the manifest's "
      "precision)", flag="--precision", arg={"choices": ("fp32", "fp16", "int8")}),
    S("", "threads", number(1, 256, integer=True, optional=True), "onnxruntime intra-op threads: a budget; the "
      "engine uses no more than thread_cap decides (default: all cores)", flag="--threads",
      arg={"type": int}),
    S("", "thread_cap", thread_cap_setting, "measure: time 1..N threads on this device at first start and use the "
      "fewest as fast as the most (kept beside the state file, measured again for another bundle or machine); "
      "bundle: the export machine's figure; off (--no-thread-cap): the whole budget; N: at most N threads",
      "measure", flag="--no-thread-cap", arg={"action": "store_false", "default": None}),
    S("", "device_id", topic_level, "this device's name in MQTT topics and the client id (default: the host name)",
      flag="--device-id"),
    # ------------------------------------------------------------------ [source]: one source
    S("source", "kind", choice(*KINDS), " | ".join(KINDS) + " (or a source's flag: --replay, --stdin, "
      "--udp-port, --serial, --lsl; the gateway's --mqtt-in, --serial-port)", "stdin", example="udp"),
    S("source", "units", choice(*UNITS), "units of the incoming AccV, AccML, AccAP (a recording carries its own)",
      "g", flag="--units", arg={"choices": UNITS}, example="g"),
    S("source", "rate_hz", number(0, 100_000, above=True, optional=True), "nominal sensor rate (default: the model "
      "rate; resampled when different)", flag="--rate-hz", arg={"type": float}),
    S("source", "rate_check", choice("refuse", "warn", "off"), "timestamps disagreeing with rate_hz (> 2 %): refuse "
      "(exit 1) | warn (counted) | off", "refuse", example="refuse"),
    S("source", "signal_check", choice("refuse", "warn", "off"), "an implausible signal (units off by 9.8x or "
      "1000x, a stuck sensor; deploy.plausibility): refuse | warn (counted) | off", "refuse"),
    S("source", "on_end", choice("exit", "reconnect"), "a live source that fails or ends: exit 1 (systemd "
      "restarts) | reconnect (with backoff)", "exit", example="exit"),
    S("source", "reconnect_max_s", number(0.1, 3600), "longest wait between reconnect attempts, s", 30.0),
    S("source", "path", text(), "the recording to replay (CSV, npz, Daphnet .txt, Stanford .xlsx; the gateway: a "
      "folder of them, one wearer each)", NO_DEFAULT,
      ("replay",), "--replay", {"metavar": "FILE"}, selects="replay"),
    S("source", "layout", text(optional=True), FILE_LAYOUT_HELP, _arg(SOURCES["replay"], "layout"), ("replay",),
      "--layout"),
    S("source", "realtime", switch, "replay at real time (default: as fast as possible, nothing dropped)",
      _arg(SOURCES["replay"], "realtime"), ("replay",), "--realtime", {"action": "store_true", "default": None}),
    S("source", "speed", number(0, 1000, above=True), "replay speed factor with realtime",
      _arg(SOURCES["replay"], "speed"), ("replay",), "--speed", {"type": float}),
    S("source", "chunk_s", number(0.001, 60, optional=True), "seconds of signal per chunk (default 0.25 at real "
      "time, else 0.5)", _arg(SOURCES["replay"], "chunk_s"), ("replay",)),
    S("source", "start_s", number(), "sensor time of the first sample, s", _arg(SOURCES["replay"], "start_s"),
      ("replay",)),
    S("source", "time_unit", TIME_UNIT, "unit of a line source's timestamps: s | ms | us", "s",
      ("stdin", "udp", "serial", "mqtt")),
    S("source", "live", switch, "stdin: drop and count when behind instead of blocking the writer",
      _arg(SOURCES["stdin"], "live"), ("stdin",)),
    S("source", "host", text(), "address to listen on", _arg(SOURCES["udp"], "host"), ("udp",), "--udp-host",
      example="127.0.0.1"),
    S("source", "port", PORT, "port to listen on for datagrams of 't,AccV,AccML,AccAP' lines",
      _arg(SOURCES["udp"], "port"), ("udp",), "--udp-port", {"type": int}, example=5005, selects="udp"),
    S("source", "rcvbuf", number(4096, 1 << 28, integer=True), "kernel receive buffer, bytes",
      _arg(SOURCES["udp"], "rcvbuf"), ("udp",)),
    S("source", "device", text(), "serial device to read lines from", _arg(SOURCES["serial"], "device"),
      ("serial",), "--serial", {"metavar": "DEVICE"}, selects="serial"),
    S("source", "baud", number(50, 10_000_000, integer=True), "serial baud rate", _arg(SOURCES["serial"], "baud"),
      ("serial",), "--baud", {"type": int}),
    S("source", "ports", serial_ports, "the gateway's serial ports, one wearer each: { \"/dev/ttyUSB0\" = \"bed1\" "
      "} (--serial-port DEV=WEARER, repeat)", NO_DEFAULT, ("serial",), "--serial-port",
      {"action": "append", "metavar": "DEV=WEARER"}, selects="serial", parse=lambda items: serial_port_flags(items)),
    S("source", "stream_name", text(optional=True), "Lab Streaming Layer stream, by name",
      _arg(SOURCES["lsl"], "stream_name"), ("lsl",), "--lsl", {"metavar": "NAME"}, selects="lsl"),
    S("source", "stream_type", text(), "LSL stream type to look for when no name is given",
      _arg(SOURCES["lsl"], "stream_type"), ("lsl",)),
    S("source", "channels", channels, "the LSL channels of AccV, AccML, AccAP", list(_arg(SOURCES["lsl"],
                                                                                         "channels")), ("lsl",)),
    S("source", "resolve_s", number(0, 3600, above=True), "seconds to look for the LSL stream",
      _arg(SOURCES["lsl"], "resolve_s"), ("lsl",)),
    # the gateway's MQTT input (kind mqtt; --mqtt-in URL sets host, port, topic, tls and credentials)
    S("source", "host", text(), "the MQTT broker", _arg(WEARER_SOURCES["mqtt"], "host"), ("mqtt",)),
    S("source", "port", PORT, "the broker's port (default 1883, 8883 with tls)", None, ("mqtt",)),
    S("source", "topic", text(), "topic prefix: samples arrive on <topic>/<wearer>/acc",
      _arg(WEARER_SOURCES["mqtt"], "topic"), ("mqtt",)),
    S("source", "username", text(optional=True), "MQTT user", None, ("mqtt",)),
    S("source", "password", secret, "MQTT password (prefer password_file)", None, ("mqtt",)),
    S("source", "password_file", text(optional=True), "file whose first line is the MQTT password", None,
      ("mqtt",)),
    S("source", "tls", switch, "TLS (mqtts:// in --mqtt-in)", _arg(WEARER_SOURCES["mqtt"], "tls"), ("mqtt",)),
    S("source", "ca_file", text(optional=True), "CA certificate that signs the broker's", None, ("mqtt",)),
    S("source", "cert_file", text(optional=True), "client certificate", None, ("mqtt",)),
    S("source", "key_file", text(optional=True), "the client certificate's key", None, ("mqtt",)),
    S("source", "client_id", text(optional=True), "MQTT client id (default fog-gateway-in-<host name>)", None,
      ("mqtt",)),
    S("source", "keepalive", number(1, 3600, integer=True), "MQTT keepalive, s",
      _arg(WEARER_SOURCES["mqtt"], "keepalive"), ("mqtt",)),
    S("source", "qos", number(0, 1, integer=True), "the subscription's QoS", _arg(WEARER_SOURCES["mqtt"], "qos"),
      ("mqtt",)),
    # ------------------------------------------------------------------ [stream]
    # the bundle owns these two (export chose and validated them): the example leaves them to it
    S("stream", "hop_s", _given(TIMINGS["hop_s"]), event_help("hop_s"), flag="--hop-s", arg={"type": float}),
    S("stream", "lookahead_s", _given(TIMINGS["lookahead_s"]), event_help("lookahead_s"), flag="--lookahead-s",
      parse=lookahead_flag),
    S("stream", "max_gap_s", number(0, 3600, above=True), "gaps up to this are interpolated; longer ones restart "
      "the window, s", _stream("max_gap_s"), example=_stream("max_gap_s")),
    S("stream", "max_behind_s", number(0, 3600, above=True), "live sources: skip a hop whose data waited longer "
      "than this, s", _stream("max_behind_s"), example=_stream("max_behind_s")),
    S("stream", "silence_s", number(0, 86400, above=True), "warn when the sensor sends nothing for this long, s",
      2.0, example=2.0),
    S("stream", "queue_chunks", number(1, 1_000_000, integer=True), "bound of the source -> pipeline queue (live "
      "sources drop and count beyond it)", 1024, example=1024),
    S("stream", "state_file", text(optional=True), "open onsets are kept here; after a SIGKILL the next start "
      "closes them with an \"aborted\" message (none: no state kept); the thread cap measured here is kept in "
      "its folder (thread_cap.json)",
      example="/var/lib/fog-daemon/open_onsets.json"),
    S("stream", "wearer_state", text(optional=True), "bundles streaming with \"wearer\" normalization: the "
      "statistics of a session's first minutes, kept here across restarts"),
    # ------------------------------------------------------------------ [[sinks]]: any number
    S("sinks", "kind", choice(*SINKS), " | ".join(SINKS) + " (or --sink SPEC)", NO_DEFAULT),
    S("sinks", "probs", switch, "also send per-hop probabilities (--probs: every sink)", False),
    S("sinks", "path", text(), "\"-\" = stdout, else a file (appended; reopened on SIGHUP)",
      _arg(SINKS["jsonl"], "path"), ("jsonl",)),
    S("sinks", "host", text(), "host to send datagrams to", _arg(SINKS["udp"], "host"), ("udp",)),
    S("sinks", "port", number(1, 65535, integer=True), "port to send datagrams to", _arg(SINKS["udp"], "port"),
      ("udp",)),
    S("sinks", "host", text(), "the MQTT broker", _arg(SINKS["mqtt"], "host"), ("mqtt",)),
    S("sinks", "port", number(1, 65535, integer=True), "the broker's port (default 1883, 8883 with tls)",
      _arg(SINKS["mqtt"], "port"), ("mqtt",)),
    S("sinks", "topic", text(), "MQTT topic prefix: events on <topic>/<device_id>/events (QoS 1), probabilities on "
      ".../probs, availability on .../status", _arg(SINKS["mqtt"], "topic"), ("mqtt",)),
    S("sinks", "username", text(optional=True), "MQTT user", None, ("mqtt",)),
    S("sinks", "password", secret, "MQTT password (prefer password_file: this file may be readable)", None,
      ("mqtt",)),
    S("sinks", "password_file", text(optional=True), "file whose first line is the MQTT password (mode 0600)", None,
      ("mqtt",)),
    S("sinks", "tls", switch, "TLS (mqtts:// in --sink); the broker is verified against the system CAs unless "
      "ca_file", _arg(SINKS["mqtt"], "tls"), ("mqtt",)),
    S("sinks", "ca_file", text(optional=True), "CA certificate that signs the broker's", None, ("mqtt",)),
    S("sinks", "cert_file", text(optional=True), "client certificate, when the broker asks for one", None,
      ("mqtt",)),
    S("sinks", "key_file", text(optional=True), "the client certificate's key", None, ("mqtt",)),
    S("sinks", "client_id", text(optional=True), "MQTT client id (default fog-daemon-<device_id>: stable, a second "
      "daemon with the same id replaces the first)", None, ("mqtt",)),
    S("sinks", "keepalive", number(1, 3600, integer=True), "MQTT keepalive, s (the last will comes after at most "
      "1.5 x this)", _arg(SINKS["mqtt"], "keepalive"), ("mqtt",)),
    S("sinks", "max_queued", number(1, 1_000_000, integer=True), "events kept while the broker is away (QoS 1)",
      _arg(SINKS["mqtt"], "max_queued"), ("mqtt",)),
    S("sinks", "connect_timeout_s", number(0, 600), "wait at start for the broker, s (it keeps connecting after)",
      _arg(SINKS["mqtt"], "connect_timeout_s"), ("mqtt",)),
    S("sinks", "reconnect_max_s", number(1, 3600), "longest wait between reconnect attempts, s",
      _arg(SINKS["mqtt"], "reconnect_max_s"), ("mqtt",)),
    # ------------------------------------------------------------------ [log]
    S("log", "level", choice("debug", "info", "warning", "error"), "debug | info | warning | error", "info",
      flag="--log-level", arg={"choices": ("debug", "info", "warning", "error")}, example="info"),
    S("log", "format", choice("json", "text"), "json | text", "json", example="json"),
    S("log", "status_interval_s", number(0, 86400), "seconds between status log lines (0 = off)", 30.0,
      flag="--status-interval", arg={"type": float}, example=30.0),
    S("log", "metrics_port", PORT, "serve Prometheus text on 127.0.0.1:PORT/metrics (0 = off)", 0,
      flag="--metrics-port", arg={"type": int}, example=9108),
    # ------------------------------------------------------------------ [gateway]: many wearers, one process
    S("gateway", "enabled", switch, "serve every wearer the source names (udp lines device,t,AccV,AccML,AccAP or "
      "binary frames; --mqtt-in; --serial-port DEV=WEARER; --replay FOLDER); docs/daemon.md \"The gateway\"",
      False, flag="--gateway", arg={"action": "store_true", "default": None}, example=False),
    S("gateway", "max_wearers", number(1, 100_000, integer=True), "wearers served at once; the samples of more are "
      "counted (wearer_limit)", 1000, flag="--max-wearers", arg={"type": int}),
    S("gateway", "wearer_timeout_s", number(0, 86400, above=True), "a wearer silent this long leaves (its episodes "
      "closed, its counters kept), s", 30.0, flag="--wearer-timeout", arg={"type": float}),
    S("gateway", "batch_sizes", batch_sizes, "batch sizes to run (default: every size the bundle was exported with "
      "whose rows are exact: toolkit export --batch 1,8,32)"),
    S("gateway", "metrics_wearers", number(0, 10_000, integer=True), "wearers with their own Prometheus label; "
      "every later one is wearer=\"other\"", 50),
    S("gateway", "queue_s", number(0.1, 3600), "a wearer's samples waiting for the loop, at most, s (beyond: "
      "overflow, under its name)", 10.0),
    S("gateway", "burst_s", number(0, 3600), "a wearer may send its nominal rate x (1 + flood_tolerance) and a burst "
      "of this many seconds of samples (beyond: flood, under its name)", 5.0),
    S("gateway", "flood_tolerance", number(0, 100), "how far above its nominal rate a wearer may send", 0.25),
    S("gateway", "batch_wait_s", number(0, 1), "how long the oldest due window may wait for others to run with it, "
      "s", 0.02),
    S("gateway", "tick_s", number(0, 1), "a loop turn takes at least this, so datagrams gather, s", 0.01),
    S("gateway", "wearer_state_dir", text(optional=True), "bundles streaming with \"wearer\" normalization: one "
      "state file per wearer here"),
)
DEFAULT_SINKS = [{"kind": "jsonl", "path": "-", "probs": False}]
SOURCE_ONLY_FLAG = {"--stdin": "stdin"}   # flags that choose a source and set nothing else
# [source] keys the daemon acts on itself, never handed to the source's class
DAEMON_SOURCE_KEYS = ("on_end", "reconnect_max_s", "rate_check", "signal_check", "time_unit")


def checked(name: str, value):
    """`value` checked as the setting `name` ("trusted_keys", "stream.hop_s") is (ConfigError naming the fix)."""
    setting = next((s for s in SETTINGS if s.name == name), None)
    if setting is None:
        raise ConfigError(f"unknown setting {name!r} ({did_you_mean(name, [s.name for s in SETTINGS])})")
    return setting.check(value, name)


def settings_of(section: str, kind: str | None = None) -> list[Setting]:
    """The settings of `section` (of one source or sink `kind`: the common ones and that kind's)."""
    return [s for s in SETTINGS if s.section == section and (kind is None or not s.kinds or kind in s.kinds)]


def defaults() -> dict:
    """The configuration every layer (TOML, flags) goes over: each setting's default, the kinds' own options left
    to their classes."""
    config: dict = {s.key: s.default for s in settings_of("")}
    config.update(source={s.key: s.default for s in settings_of("source") if not s.kinds},
                  stream={s.key: s.default for s in settings_of("stream")}, events={},
                  sinks=[dict(sink) for sink in DEFAULT_SINKS],
                  log={s.key: s.default for s in settings_of("log")},
                  gateway={s.key: s.default for s in settings_of("gateway")})
    return config


def serial_port_flags(items: list[str]) -> dict:
    """--serial-port DEV=WEARER (repeated) -> {DEV: WEARER}; WEARER defaults to the device's file name."""
    ports = {}
    for item in items:
        path, _, wearer = item.partition("=")
        ports[path] = wearer or path.rstrip("/").rsplit("/", 1)[-1]
    return ports


def check_table(table, settings: list[Setting], where: str, everything=None) -> None:
    """Each key known (else the nearest valid name, among `everything` when given) and each value accepted by its
    check; in place."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    by_key = {s.key: s for s in settings}
    for key in list(table):
        if key not in by_key:
            raise ConfigError(f"{where}: unknown key {key!r} ({did_you_mean(key, everything or by_key)})")
        table[key] = by_key[key].check(table[key], f"{where}.{key}")


def _kind_table(table: dict, section: str, kind: str, where: str, kinds=None) -> None:
    """A source or sink table: a key another kind takes (of `kinds`, those this configuration can have) is named as
    such; the rest checked."""
    for key in table:
        owners = sorted({k for s in SETTINGS if s.section == section and s.key == key for k in s.kinds
                         if kinds is None or k in kinds})
        if owners and kind not in owners:
            raise ConfigError(f"{where}.{key}: only a {' or '.join(owners)} {section.rstrip('s')} takes it, this "
                              f"one is {kind}")
    check_table(table, settings_of(section, kind), where, everything={s.key for s in settings_of(section)})


def nearest_anywhere(key: str, top) -> str:
    """For an unknown top-level key: the nearest top-level key or key of a section, named with its section."""
    names = {k: repr(k) for k in top}
    for section in SECTIONS:
        keys = DETECTOR_KEYS if section == "events" else [s.key for s in settings_of(section)]
        names.update({k: f"{k!r} under [{section}]" for k in keys if k not in names})
    close = closest(key, names)
    return f"did you mean {names[close]}?" if close else f"known: {', '.join(sorted(top))}"


def check_config(config: dict) -> dict:
    """Check the merged configuration (keys and values); returns it. Raises ConfigError naming key and fix."""
    top = {k: config[k] for k in config if k not in (*SECTIONS, "sinks")}
    check_table(top, settings_of(""), "config")
    config.update(top)       # as each check gave it back (thread_cap true -> "measure")
    if config["require_signature"] and not config["trusted_keys"]:
        raise ConfigError("require_signature = true needs trusted_keys: the public keys whose signatures count "
                          "(e.g. trusted_keys = [\"/etc/fog/keys/lab.pub\"], from `toolkit keygen`)")
    for section in SECTIONS:
        if not isinstance(config[section], dict):
            raise ConfigError(f"[{section}] must be a table")
    source = config["source"]
    kind = choice(*KINDS)(source.get("kind"), "source.kind")
    _kind_table(source, "source", kind, "source",
                kinds=WEARER_SOURCES if config["gateway"].get("enabled") else SOURCES)
    for s in settings_of("source", kind):   # what the daemon itself does with this kind: always said
        if s.kinds and s.key in DAEMON_SOURCE_KEYS:
            source.setdefault(s.key, s.default)
    check_table(config["stream"], settings_of("stream"), "stream")
    check_event_table(config["events"], [s.key for s in settings_of("stream")])
    check_table(config["log"], settings_of("log"), "log")
    check_table(config["gateway"], settings_of("gateway"), "gateway")
    check_gateway_source(config)
    for i, sink in enumerate(config["sinks"]):
        kind = choice(*SINKS)(sink.get("kind"), f"sinks[{i}].kind")
        _kind_table(sink, "sinks", kind, f"sinks[{i}] ({kind})")
    return config


def check_gateway_source(config: dict) -> None:
    """The gateway reads the sources whose samples name their wearer; the single-wearer daemon the others."""
    kind, source, gateway = config["source"]["kind"], config["source"], config["gateway"]["enabled"]
    if gateway and kind not in WEARER_SOURCES:
        raise ConfigError(f"source {kind}: the gateway reads {', '.join(WEARER_SOURCES)} (their samples name the "
                          "wearer); use one of those, or run without --gateway")
    if not gateway and (kind not in SOURCES or source.get("ports")):
        raise ConfigError(f"source {'serial ports' if source.get('ports') else kind}: only the gateway reads it "
                          "(--gateway, or [gateway] enabled = true)")
    if gateway and kind == "serial" and not source.get("ports"):
        raise ConfigError("source serial for the gateway: name each port's wearer, source.ports = "
                          "{ \"/dev/ttyUSB0\" = \"bed1\" } (or --serial-port /dev/ttyUSB0=bed1)")
