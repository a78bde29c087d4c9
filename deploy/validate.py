"""Every daemon setting checked for type and range at start, before READY: nothing wrong at start is found per chunk.

`check_config(config)` checks the merged configuration (TOML, flags, `--set`): unknown keys are refused with the
nearest valid name, numbers must be finite and in range, choices must be known; event settings are checked by the
one rule of deploy.contract.events (the manifest's when the bundle is read, the merged ones by
deploy.config.event_settings). `preflight(...)` builds, once, what the pipeline
builds per segment (the units converter and resampler for the source's rate, the event detector) so a rate that
cannot be resampled or an unknown event class stops the start with a clear error instead of rejecting every chunk.
"""
from __future__ import annotations

import re

from deploy.contract.checks import number
from deploy.contract.events import DETECTOR_KEYS, TIMINGS, check_layer
from deploy.errors import ConfigError, FogError, closest, did_you_mean
from deploy.events import EventDetector
from deploy.preprocess import StreamingPreparer
from deploy.stream import streaming_spec

UNITS = ("g", "m/s^2")
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
NOT_IN_TOPIC = re.compile(r"[/+#\s\x00]")


# ------------------------------------------------------------------ value checkers: (value, name) -> value

def choice(*options, optional: bool = False):
    def check(value, name):
        if value is None and optional:
            return None
        if value not in options:
            raise ConfigError(f"{name} = {value!r}: choose one of {', '.join(repr(o) for o in options)}")
        return value
    return check


def text(optional: bool = False):
    def check(value, name):
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{name} = {value!r}: expected a non-empty string")
        return value
    return check


def secret(value, name):
    """A password: a string, never echoed in the error."""
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{name}: expected a string (quote it in TOML); the value is not shown")
    return value


def topic_level(value, name):
    """One level of an MQTT topic (a device id): no '/', '+', '#' or spaces."""
    if value is not None and (not isinstance(value, str) or not value or NOT_IN_TOPIC.search(value)):
        raise ConfigError(f"{name} = {value!r}: expected a non-empty name without '/', '+', '#' or spaces (it is "
                          "one level of the MQTT topic), e.g. \"ward3-bed12\"")
    return value


def flag(value, name):
    if not isinstance(value, bool):
        raise ConfigError(f"{name} = {value!r}: expected true or false")
    return value


def digest(value, name):
    if value is not None and (not isinstance(value, str) or not DIGEST_RE.fullmatch(value)):
        raise ConfigError(f"{name} = {value!r}: expected 'sha256:' and 64 hex digits, as `toolkit inspect` prints")
    return value


def channels(value, name):
    if not isinstance(value, (list, tuple)) or len(value) != 3 or \
            not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < 1024 for c in value):
        raise ConfigError(f"{name} = {value!r}: expected three channel indices, e.g. [0, 1, 2]")
    return list(value)


def key_list(value, name):
    """trusted_keys: a list of public keys, each a file path or an inline base64 key (deploy.signing reads them)."""
    if not isinstance(value, list) or not all(isinstance(k, str) and k.strip() for k in value):
        raise ConfigError(f"{name}: expected a list of public keys, e.g. [\"/etc/fog/keys/lab.pub\"] or the base64 "
                          "key `toolkit keygen` printed")
    return value


PORT = number(0, 65535, integer=True)
TIME_UNIT = choice("s", "ms", "us")   # of the line sources' timestamps (deploy.clock.TIME_UNITS)
TOP = {"bundle": text(), "bundle_digest": digest, "backend": choice("auto", "onnxruntime", "tensorrt"),
       "precision": choice("fp32", "fp16", "int8", optional=True), "threads": number(1, 256, integer=True,
                                                                                     optional=True),
       "thread_cap": flag, "device_id": topic_level, "trusted_keys": key_list,
       "require_signature": lambda v, name: None if v is None else flag(v, name)}
SOURCE_COMMON = {"kind": choice("replay", "stdin", "udp", "serial", "lsl"), "units": choice(*UNITS),
                 "rate_hz": number(0, 100_000, above=True, optional=True), "live": flag,
                 "on_end": choice("exit", "reconnect"), "reconnect_max_s": number(0.1, 3600),
                 "rate_check": choice("refuse", "warn", "off"), "signal_check": choice("refuse", "warn", "off")}
SOURCE = {
    "replay": {"path": text(), "layout": text(optional=True), "realtime": flag, "speed": number(0, 1000, above=True),
               "chunk_s": number(0.001, 60, optional=True), "start_s": number()},
    "stdin": {"time_unit": TIME_UNIT},
    "udp": {"host": text(), "port": PORT, "rcvbuf": number(4096, 1 << 28, integer=True), "time_unit": TIME_UNIT},
    "serial": {"device": text(), "baud": number(50, 10_000_000, integer=True), "time_unit": TIME_UNIT},
    "lsl": {"stream_name": text(optional=True), "stream_type": text(), "channels": channels,
            "resolve_s": number(0, 3600, above=True)},
}
ALL_SOURCE = sorted({key for keys in SOURCE.values() for key in keys})
def _given(check):
    """`check` for a value that may be None (not given: the manifest's, else the default)."""
    return lambda value, name: None if value is None else check(value, name)


STREAM = {"hop_s": _given(TIMINGS["hop_s"]), "lookahead_s": _given(TIMINGS["lookahead_s"]),
          "max_gap_s": number(0, 3600, above=True), "max_behind_s": number(0, 3600, above=True),
          "silence_s": number(0, 86400, above=True), "queue_chunks": number(1, 1_000_000, integer=True),
          "state_file": text(optional=True), "wearer_state": text(optional=True)}
SINK = {"jsonl": {"path": text()},
        "udp": {"host": text(), "port": number(1, 65535, integer=True)},
        "mqtt": {"host": text(), "port": number(1, 65535, integer=True), "topic": text(),
                 "username": text(optional=True), "password": secret, "password_file": text(optional=True),
                 "tls": flag, "ca_file": text(optional=True), "cert_file": text(optional=True),
                 "key_file": text(optional=True),
                 "client_id": text(optional=True), "keepalive": number(1, 3600, integer=True),
                 "max_queued": number(1, 1_000_000, integer=True), "connect_timeout_s": number(0, 600),
                 "reconnect_max_s": number(1, 3600)}}
SINK_COMMON = {"kind": choice(*SINK), "probs": flag}
LOG = {"level": choice("debug", "info", "warning", "error"), "format": choice("json", "text"),
       "status_interval_s": number(0, 86400), "metrics_port": PORT}


def check_table(table, schema: dict, where: str, everything=None) -> None:
    """Each key known (else the nearest valid name, among `everything` when given) and each value accepted by its
    checker; in place."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    for key in list(table):
        if key not in schema:
            raise ConfigError(f"{where}: unknown key {key!r} ({did_you_mean(key, everything or schema)})")
        table[key] = schema[key](table[key], f"{where}.{key}")


def nearest_anywhere(key: str, top) -> str:
    """For an unknown top-level key: the nearest top-level key or key of a section, named with its section."""
    names = {k: repr(k) for k in top}
    for section, schema in (("source", {**SOURCE_COMMON, **dict.fromkeys(ALL_SOURCE)}), ("stream", STREAM),
                            ("events", dict.fromkeys(DETECTOR_KEYS)), ("log", LOG)):
        names.update({k: f"{k!r} under [{section}]" for k in schema if k not in names})
    close = closest(key, names)
    return f"did you mean {names[close]}?" if close else f"known: {', '.join(sorted(top))}"


def check_config(config: dict) -> dict:
    """Check the merged configuration (keys and values); returns it. Raises ConfigError naming key and fix."""
    check_table({k: config[k] for k in TOP}, TOP, "config")
    if config["require_signature"] and not config["trusted_keys"]:
        raise ConfigError("require_signature = true needs trusted_keys: the public keys whose signatures count "
                          "(e.g. trusted_keys = [\"/etc/fog/keys/lab.pub\"], from `toolkit keygen`)")
    for section in ("source", "stream", "events", "log"):
        if not isinstance(config[section], dict):
            raise ConfigError(f"[{section}] must be a table")
    source = config["source"]
    kind = choice(*SOURCE)(source.get("kind"), "source.kind")
    for key in source:
        owners = [k for k, keys in SOURCE.items() if key in keys and k != kind]
        if key not in SOURCE_COMMON and key not in SOURCE[kind] and owners:
            raise ConfigError(f"source.{key}: only a {' or '.join(owners)} source takes it, this one is {kind}")
    check_table(source, {**SOURCE_COMMON, **SOURCE[kind]}, "source", everything=[*SOURCE_COMMON, *ALL_SOURCE])
    check_table(config["stream"], STREAM, "stream")
    check_event_table(config["events"])
    check_table(config["log"], LOG, "log")
    for i, sink in enumerate(config["sinks"]):
        sink_kind = choice(*SINK)(sink.get("kind"), f"sinks[{i}].kind")
        check_table(sink, {**SINK_COMMON, **SINK[sink_kind]}, f"sinks[{i}] ({sink_kind})")
    return config


def check_event_table(events) -> dict:
    """The config's [events] table: the detector's settings (hop and look-ahead belong under [stream])."""
    for key in events if isinstance(events, dict) else ():
        if key in STREAM:
            raise ConfigError(f"events: unknown key {key!r} (it belongs under [stream])")
    return check_layer(events, "events", keys=DETECTOR_KEYS)


def preflight(spec, classes, events, source_rate_hz: float, source_units: str) -> None:
    """Build once what every segment builds (units, resampler, event detector; `events` an EventSettings checked
    by deploy.config.event_settings): a setting they would reject stops the start here, with the reason, instead of
    failing on every chunk after READY."""
    if source_units not in UNITS:
        raise ConfigError(f"source units {source_units!r}: choose one of {', '.join(UNITS)}")
    try:
        StreamingPreparer(streaming_spec(spec), float(source_rate_hz), source_units)
    except FogError as exc:
        raise ConfigError(f"source rate {source_rate_hz:g} Hz, units {source_units}: {exc}; set the source's "
                          f"rate_hz to the sensor's true rate (the model runs at {spec.rate_hz:g} Hz)") from None
    EventDetector(list(classes), float(spec.rate_hz), **events.detector_kwargs())
