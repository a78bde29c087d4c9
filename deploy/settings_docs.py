"""The daemon's settings written out for people, from the one table (deploy.settings.SETTINGS): the example TOML
(deploy/daemon.example.toml) and the settings table of docs/daemon.md. tests/test_daemon_settings.py fails when a
file differs from what this renders; `python -m deploy.settings_docs --write` rewrites both."""
from __future__ import annotations

import argparse
import json
import re
import textwrap
from pathlib import Path

from deploy.contract.events import DETECTOR_KEYS, EventSettings
from deploy.settings import DEFAULT_SINKS, KINDS, NO_DEFAULT, SETTINGS, settings_of
from deploy.sinks import SINKS

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "deploy" / "daemon.example.toml"
DOCS = REPO / "docs" / "daemon.md"
TABLE = re.compile(r"(<!-- settings -->\n)(.*?)(<!-- /settings -->)", re.S)
EXAMPLE_SINKS = ({"kind": "jsonl", "path": "-", "probs": False},
                 {"kind": "mqtt", "host": "127.0.0.1", "port": 1883, "topic": "fog", "probs": False})
HEADER = """\
# fog-daemon configuration (generated from deploy/settings.py by `python -m deploy.settings_docs --write`; every
# setting, its default and its flag: docs/daemon.md). Every key can be overridden on the command line
# (`--set stream.hop_s=0.25`). Numbers the model needs (rates, units, window, thresholds) come from the bundle's
# manifest; keys here change only what a deployment may change. A commented line shows the default (... where
# there is none). What the bundle owns (hop, look-ahead, the [events] table, precision) is commented out: the
# daemon runs what export chose and validated; set one only to override the bundle on purpose.
"""


def toml_value(value) -> str:
    """A value as TOML writes it (strings quoted, booleans lower case, lists in brackets; `...` where there is no
    default)."""
    if value is None or value is NO_DEFAULT:
        return "..."
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def _line(key: str, value, doc: str, commented: bool) -> list[str]:
    """`key = value   # doc` (the doc wrapped under it when long); commented out when it only shows the default."""
    text = f"{'# ' if commented else ''}{key} = {toml_value(value)}"
    width = max(len(text) + 2, 26)
    lines = textwrap.wrap(doc, 118 - width - 2) or [""]
    return [f"{text:<{width}}# {lines[0]}"] + [f"{'':<{width}}# {rest}" for rest in lines[1:]]


def _table(settings, given: dict | None = None) -> list[str]:
    out = []
    for s in settings:
        if given is not None and s.key in given:
            out += _line(s.key, given[s.key], s.doc, False)
        elif given is None and s.example is not NO_DEFAULT:
            out += _line(s.key, s.example, s.doc, False)
        else:
            out += _line(s.key, s.default, s.doc, True)
    return out


def example_toml() -> str:
    """deploy/daemon.example.toml: every setting, the example's values set, the rest shown at their defaults."""
    kind = next(s.example for s in SETTINGS if s.section == "source" and s.key == "kind")
    out = [HEADER.rstrip("\n"), ""] + _table(settings_of("")) + ["", "[source]"]
    out += _table([s for s in settings_of("source", kind) if not s.kinds]) + _table(
        [s for s in settings_of("source", kind) if s.kinds])
    for other in (k for k in KINDS if k != kind):
        keys = [s.key for s in settings_of("source") if other in s.kinds]
        out.append(f"# kind = \"{other}\": {', '.join(keys) if keys else 'no options of its own'}")
    out += ["", "[stream]"] + _table(settings_of("stream"))
    out += ["", "[events]                  # the bundle's event settings, changed (deploy.contract.events)"]
    for name in DETECTOR_KEYS:   # the bundle's: never set by the example (tests/test_daemon_example.py)
        field = EventSettings.__dataclass_fields__[name]
        out += _line(name, None, f"default: the bundle's (manifest events.{name}); {field.metadata['doc']}", True)
    for sink in EXAMPLE_SINKS:
        out += ["", "[[sinks]]"] + _table(settings_of("sinks", sink["kind"]), given=sink)
    out += ["", "[log]"] + _table(settings_of("log"))
    out += ["", "[gateway]                 # one process, many wearers (fog-daemon --gateway; docs/daemon.md)"]
    out += _table(settings_of("gateway"))
    return "\n".join(line.rstrip() for line in out) + "\n"


def _cell(value) -> str:
    if value is NO_DEFAULT:
        return "required"
    if value is None:
        return "-"
    return f"`{toml_value(value)}`"


def settings_table() -> str:
    """docs/daemon.md's table: every setting with its default, its flag and what it does."""
    rows = ["| setting | default | flag | what |", "| --- | --- | --- | --- |"]
    for s in SETTINGS:
        where = f"[{s.section}] " if s.section and s.section != "sinks" else "[[sinks]] " if s.section else ""
        kinds = f" ({', '.join(s.kinds)})" if s.kinds else ""
        rows.append(f"| `{where}{s.key}`{kinds} | {_cell(s.default)} | {f'`{s.flag}`' if s.flag else ''} | "
                    f"{s.doc.replace('|', '/')} |")
    for name in DETECTOR_KEYS:
        doc = EventSettings.__dataclass_fields__[name].metadata["doc"]
        rows.append(f"| `[events] {name}` | the bundle's | `--set events.{name}=...` | {doc} |")
    rows.append(f"| `[[sinks]]` | {_cell(DEFAULT_SINKS)} | `--sink SPEC` | the sinks: "
                f"{', '.join(SINKS)} |")
    return "\n".join(rows) + "\n"


def docs_with_table(page: str) -> str:
    """`page` (docs/daemon.md) with its settings block rendered anew."""
    if not TABLE.search(page):
        raise ValueError("docs/daemon.md has no <!-- settings --> ... <!-- /settings --> block")
    return TABLE.sub(lambda m: m.group(1) + settings_table() + m.group(3), page)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--write", action="store_true", help="rewrite deploy/daemon.example.toml and docs/daemon.md")
    args = ap.parse_args(argv)
    if not args.write:
        print(example_toml() + "\n" + settings_table())
        return 0
    EXAMPLE.write_text(example_toml())
    DOCS.write_text(docs_with_table(DOCS.read_text()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
