"""The event settings as command-line flags: one flag per manifest key (`deploy.contract.EVENT_KEYS`), spelled as the
key is (`smoothing_s` -> `--smoothing-s`), so export and evaluate say the same thing the same way."""
from __future__ import annotations

import argparse

from deploy.contract import EVENT_FLAG_ALIASES, EVENT_KEYS, event_flag, event_flag_kind, event_help


def add_event_arguments(group, keys=EVENT_KEYS, mode_help: str | None = None) -> None:
    """--hop-s, --lookahead-s, --smoothing-s, --on, --off, --min-duration-s, --refractory-s (floats, default None:
    not given), each with its old spelling as a hidden alias, and --event-mode any|per_class (`mode_help`: the
    command's own default), with the same help in every command."""
    for key in keys:
        kind = event_flag_kind(key)
        group.add_argument(event_flag(key), dest=key, default=None, help=(mode_help if key == "mode" else None)
                           or event_help(key), **kind)
        if key in EVENT_FLAG_ALIASES:
            group.add_argument(EVENT_FLAG_ALIASES[key], dest=key, default=None, help=argparse.SUPPRESS, **kind)


def event_overrides(args) -> dict:
    """{manifest key: the flag's value or None} for every event setting."""
    return {key: getattr(args, key) for key in EVENT_KEYS}
