"""Every daemon setting checked for type and range at start, before READY: nothing wrong at start is found per chunk.

The value checks the settings table (deploy.settings) names, `(value, name) -> value` or a ConfigError that names
the key, the value and the fix; deploy.settings.check_config applies them to the merged configuration (TOML, flags,
`--set`). Event settings are checked by the one rule of deploy.contract.events (the manifest's when the bundle is
read, the merged ones by deploy.config.event_settings). `preflight(...)` builds, once, what the pipeline
builds per segment (the units converter and resampler for the source's rate, the event detector) so a rate that
cannot be resampled or an unknown event class stops the start with a clear error instead of rejecting every chunk.
"""
from __future__ import annotations

import re

from deploy.contract.checks import number
from deploy.contract.events import DETECTOR_KEYS, check_layer
from deploy.errors import ConfigError, FogError
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


def serial_ports(value, name):
    """The gateway's serial ports: a table {device path: wearer name}."""
    if not isinstance(value, dict) or not value or not all(isinstance(k, str) and isinstance(v, str) and v
                                                           for k, v in value.items()):
        raise ConfigError(f"{name} = {value!r}: expected a table of device path = wearer name, e.g. "
                          "{ \"/dev/ttyUSB0\" = \"bed1\", \"/dev/ttyUSB1\" = \"bed2\" }")
    for wearer in value.values():
        topic_level(wearer, f"{name} wearer name")
    return value


def batch_sizes(value, name):
    """Batch sizes, e.g. [1, 8, 32] (None: not given)."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not value or \
            not all(isinstance(b, int) and not isinstance(b, bool) and 1 <= b <= 1024 for b in value):
        raise ConfigError(f"{name} = {value!r}: expected batch sizes, e.g. [1, 8, 32]")
    return sorted(set(value))


def switch(value, name):
    """true or false."""
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


def check_event_table(events, stream_keys=()) -> dict:
    """The config's [events] table: the detector's settings (hop and look-ahead belong under [stream], whose keys
    are `stream_keys`)."""
    for key in events if isinstance(events, dict) else ():
        if key in stream_keys:
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
