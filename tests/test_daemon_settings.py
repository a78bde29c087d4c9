"""A daemon setting has one home (deploy.settings.SETTINGS): the defaults, the checks, the flags, the example TOML and
docs/daemon.md's table are made from it, and the sources' and sinks' own options are the ones their classes take."""
from __future__ import annotations

import inspect

import pytest

from deploy.config import DEFAULTS, build_config
from deploy.daemon_args import build_parser, overrides_from_args
from deploy.settings import DAEMON_SOURCE_KEYS, NO_DEFAULT, SETTINGS, settings_of
from deploy.settings_docs import DOCS, EXAMPLE, TABLE, docs_with_table, example_toml
from deploy.sinks import SINKS
from deploy.sources import SOURCES
from deploy.validate import ConfigError

FIX = "run `python -m deploy.settings_docs --write` after changing deploy/settings.py"
# --sink and --mqtt-in are URLs that set several keys of a table at once (deploy.mqtt_options.parse_mqtt_url)
NOT_SETTINGS = {"-h", "--help", "--bundle", "--config", "--stdin", "--sink", "--probs", "--max-seconds", "--set",
                "--mqtt-in"}


def test_the_example_toml_is_made_from_the_settings():
    assert EXAMPLE.read_text() == example_toml(), f"deploy/daemon.example.toml is stale: {FIX}"


def test_the_docs_table_is_made_from_the_settings():
    page = DOCS.read_text()
    assert TABLE.search(page), "docs/daemon.md lost its <!-- settings --> block"
    assert page == docs_with_table(page), f"docs/daemon.md's settings table is stale: {FIX}"


def test_the_example_toml_is_a_configuration_the_daemon_takes():
    config = build_config(EXAMPLE)
    assert config["source"]["kind"] == "udp" and [s["kind"] for s in config["sinks"]] == ["jsonl", "mqtt"]


def test_defaults_come_from_the_settings_and_pass_their_own_checks():
    config = build_config(None, [{"bundle": "b"}])
    for s in SETTINGS:
        name = s.name
        if s.default not in (None, NO_DEFAULT):
            assert s.check(s.default, name) == s.default or list(s.check(s.default, name)) == list(s.default), name
        if s.example is not NO_DEFAULT:
            s.check(s.example, name)
        if s.section in ("", "source", "stream", "log") and not s.kinds and s.key != "bundle":
            table = config if not s.section else config[s.section]
            assert table[s.key] == s.default, name
    assert DEFAULTS["events"] == {} and DEFAULTS["sinks"] == [{"kind": "jsonl", "path": "-", "probs": False}]


def test_every_flag_of_the_daemon_is_a_settings_flag_or_not_a_setting_at_all():
    parser = build_parser()
    flags = {opt for action in parser._actions for opt in action.option_strings}
    declared = {s.flag for s in SETTINGS if s.flag}
    assert flags - NOT_SETTINGS == declared, f"flags without a setting: {sorted(flags - NOT_SETTINGS - declared)}"
    for s in SETTINGS:   # each flag's help is its setting's documentation
        if s.flag:
            action = next(a for a in parser._actions if s.flag in a.option_strings)
            assert action.help == s.doc, s.flag


@pytest.mark.parametrize("argv, section, key, value", [
    (["--udp-port", "5010"], "source", "port", 5010), (["--replay", "r.csv"], "source", "path", "r.csv"),
    (["--lookahead-s", "full"], "stream", "lookahead_s", "full"), (["--no-thread-cap"], "", "thread_cap", False),
    (["--status-interval", "0"], "log", "status_interval_s", 0.0), (["--realtime"], "source", "realtime", True),
])
def test_a_flag_sets_its_setting(argv, section, key, value):
    layer = overrides_from_args(build_parser().parse_args(["b", *argv]))[0]
    assert (layer[section] if section else layer)[key] == value
    if argv[0] in ("--udp-port", "--replay"):
        assert layer["source"]["kind"] == {"--udp-port": "udp", "--replay": "replay"}[argv[0]]


@pytest.mark.parametrize("section, classes", [("source", SOURCES), ("sinks", SINKS)])
def test_every_option_of_a_source_or_sink_is_a_setting_of_its_kind(section, classes):
    """The classes are the options' home: what a class takes is declared for its kind, with the class's default
    (the keys the daemon acts on itself, DAEMON_SOURCE_KEYS, are not the class's). A source kind the gateway reads
    too (deploy.sources_multi: serial ports, a replay folder; mqtt is the gateway's only) takes both classes'."""
    from deploy.sources_multi import SOURCES as WEARER_SOURCES
    given_by_daemon = {"units", "rate_hz", "probs", "device_id", "recording", "stream", "kw", "self"}
    both = {kind: [cls] + ([WEARER_SOURCES[kind]] if section == "source" and kind in WEARER_SOURCES else [])
            for kind, cls in classes.items()}
    if section == "source":
        both.update({kind: [cls] for kind, cls in WEARER_SOURCES.items() if kind not in classes})
    for kind, classes_of_kind in both.items():
        params = {n: p for cls in reversed(classes_of_kind) for n, p in inspect.signature(cls.__init__).parameters
                  .items() if n not in given_by_daemon}
        daemons = DAEMON_SOURCE_KEYS if section == "source" else ()
        declared = {s.key: s for s in settings_of(section, kind) if s.kinds and s.key not in daemons}
        assert set(params) == set(declared), (kind, sorted(set(params) ^ set(declared)))
        for name, setting in declared.items():
            default = params[name].default
            expected = list(default) if isinstance(default, tuple) else default
            assert setting.default in (expected, NO_DEFAULT), (kind, name)


def test_a_key_of_another_kind_is_named_as_such():
    with pytest.raises(ConfigError, match="source.port: only a udp source takes it, this one is stdin"):
        build_config(None, [{"bundle": "b", "source": {"kind": "stdin", "port": 5}}])
    with pytest.raises(ConfigError, match=r"sinks\[0\] \(jsonl\).topic: only a mqtt sink takes it"):
        build_config(None, [{"bundle": "b", "sinks": [{"kind": "jsonl", "topic": "x"}]}])
