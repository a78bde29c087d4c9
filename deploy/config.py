"""Daemon configuration: a TOML file (see deploy/daemon.example.toml), then command-line overrides.

Precedence: built-in defaults < the bundle's manifest (hop, look-ahead, event thresholds) < TOML < CLI flags (the
event settings layered by deploy.contract.events.EventSettings.resolve, `event_settings`).
`--set section.key=value` overrides any key (value parsed as TOML, else taken as a string).
"""
from __future__ import annotations

import copy
from pathlib import Path

from deploy.contract.events import EventSettings
from deploy.errors import did_you_mean
from deploy.mqtt_options import parse_mqtt_url, redact
from deploy.settings import SECTIONS, check_config, defaults, nearest_anywhere
from deploy.validate import ConfigError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

DEFAULTS = defaults()   # every setting's default (deploy.settings, their one home)


def _merge(base: dict, extra: dict, where: str) -> dict:
    for key, value in extra.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: [{key}] must be a table")
            base[key].update(value)
        elif key == "sinks":
            if not isinstance(value, list) or not all(isinstance(s, dict) and "kind" in s for s in value):
                raise ConfigError(f"{where}: sinks must be [[sinks]] tables, each with a kind")
            base["sinks"] = value
        elif key in DEFAULTS:
            base[key] = value
        else:
            raise ConfigError(f"{where}: unknown key {key!r} ({nearest_anywhere(key, DEFAULTS)})")
    return base


# byte-order marks TOML does not allow, with the fix for each
BOMS = {b"\xef\xbb\xbf": ("UTF-8 with a byte-order mark (BOM)", "remove the BOM: sed -i '1s/^\\xEF\\xBB\\xBF//' FILE"),
        b"\xff\xfe": ("UTF-16 (little-endian)", "convert it: iconv -f UTF-16 -t UTF-8 FILE > FILE.new"),
        b"\xfe\xff": ("UTF-16 (big-endian)", "convert it: iconv -f UTF-16 -t UTF-8 FILE > FILE.new")}


def _config_text(path: Path) -> str:
    """The file's text, or a ConfigError naming why it cannot be read as TOML (UTF-8 without a BOM) and the fix."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a folder; --config takes the TOML file itself (e.g. /etc/fog/daemon.toml)") \
            from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror}); check its permissions") from None
    for bom, (name, fix) in BOMS.items():
        if data.startswith(bom):
            raise ConfigError(f"{path} is saved as {name}; TOML must be plain UTF-8: save it as \"UTF-8\" (not "
                              f"\"UTF-8 with BOM\" or \"Unicode\"), or {fix}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}: not UTF-8 (byte 0x{data[exc.start]:02x} on line {line}); TOML must be UTF-8: "
                          "save the file as UTF-8") from None


def load_toml(path) -> dict:
    path = Path(path)
    try:
        return tomllib.loads(_config_text(path))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def parse_set(item: str) -> dict:
    """'stream.hop_s=0.25' -> {'stream': {'hop_s': 0.25}}"""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected section.key=value")
    key, raw = item.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    parts = key.strip().split(".")
    if len(parts) == 1:
        return {parts[0]: value}
    if len(parts) == 2 and parts[0] in SECTIONS:
        return {parts[0]: {parts[1]: value}}
    raise ConfigError(f"--set {item!r}: key must be a top-level key or one of {SECTIONS} followed by .key"
                      + (f" ({did_you_mean(parts[0], SECTIONS)})" if len(parts) == 2 else ""))


def parse_sink(text: str) -> dict:
    """'-' | 'stdout' | 'file:PATH' | 'udp://HOST:PORT' | 'mqtt[s]://[USER[:PASS]@]HOST[:PORT][/TOPIC]' (append
    '?probs' for probs)."""
    probs = text.endswith("?probs")
    text = text[:-len("?probs")] if probs else text
    if text in ("-", "stdout"):
        return {"kind": "jsonl", "path": "-", "probs": probs}
    if text.startswith("file:"):
        return {"kind": "jsonl", "path": text[5:], "probs": probs}
    if text.startswith(("mqtt://", "mqtts://")):
        return parse_mqtt_url(text, probs)
    if text.startswith("udp://"):
        host, _, port = text[len("udp://"):].partition("/")[0].rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"--sink {text!r}: expected udp://HOST:PORT")
        return {"kind": "udp", "host": host, "port": int(port), "probs": probs}
    raise ConfigError(f"--sink {redact(text)!r}: use -, file:PATH, udp://HOST:PORT or mqtt://[USER:PASS@]HOST[:PORT]"
                      "[/TOPIC] (mqtts:// for TLS)")


def build_config(toml_path=None, overrides: list[dict] = ()) -> dict:
    config = copy.deepcopy(DEFAULTS)
    if toml_path:
        _merge(config, load_toml(toml_path), str(toml_path))
    for extra in overrides:
        _merge(config, extra, "command line")
    if not config["bundle"]:
        raise ConfigError("no bundle given: pass --bundle DIR or set bundle = \"...\" in the config file")
    return check_config(config)


def event_settings(config: dict, bundle) -> EventSettings:
    """The event settings the daemon runs: the defaults < the bundle's manifest < the config ([stream] hop_s and
    lookahead_s, the [events] table; TOML, then flags), checked against the bundle's classes."""
    stream = config["stream"]
    layer = {"hop_s": stream["hop_s"], "lookahead_s": stream["lookahead_s"], **config["events"]}
    return EventSettings.resolve(bundle.events, layer, classes=bundle.classes, where="events (manifest + config)")
