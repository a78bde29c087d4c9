"""The event settings as command-line flags: one flag per manifest key (`deploy.contract.EVENT_KEYS`), spelled as the
key is (`smoothing_s` -> `--smoothing-s`), so export and evaluate say the same thing the same way."""
from __future__ import annotations

import argparse

from deploy.contract import EVENT_KEYS, EVENT_MODES, event_help

# Spellings `toolkit evaluate` used before its flags were named after the manifest keys: still accepted, not shown.
OLD_SPELLINGS = {"smoothing_s": "--smoothing", "min_duration_s": "--min-duration", "refractory_s": "--refractory"}


def add_event_arguments(group, keys=EVENT_KEYS, mode_help: str | None = None) -> None:
    """--hop-s, --lookahead-s, --smoothing-s, --on, --off, --min-duration-s, --refractory-s (floats, default None:
    not given), each with its old spelling as a hidden alias, and --event-mode any|per_class (`mode_help`: the
    command's own default), with the same help in every command."""
    for key in keys:
        if key == "mode":
            group.add_argument("--event-mode", dest="mode", choices=EVENT_MODES, default=None,
                               help=mode_help or event_help(key))
            continue
        group.add_argument("--" + key.replace("_", "-"), type=float, default=None, help=event_help(key))
        if key in OLD_SPELLINGS:
            group.add_argument(OLD_SPELLINGS[key], dest=key, type=float, default=None, help=argparse.SUPPRESS)


def event_overrides(args) -> dict:
    """{manifest key: the flag's value or None} for every event setting."""
    return {key: getattr(args, key) for key in EVENT_KEYS}
