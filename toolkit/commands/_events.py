"""The event settings as command-line flags: one flag per manifest key (`deploy.contract.EVENT_KEYS`), spelled as the
key is (`smoothing_s` -> `--smoothing-s`), so export and evaluate say the same thing the same way."""
from __future__ import annotations

import argparse

from deploy.contract import EVENT_FLAG_ALIASES, EVENT_KEYS, event_flag, event_help


def add_event_arguments(group, keys=EVENT_KEYS) -> None:
    """--hop-s, --lookahead-s, --smoothing-s, --on, --off, --min-duration-s, --refractory-s (floats, default None:
    not given), each with its old spelling as a hidden alias, with the same help in every command."""
    for key in keys:
        group.add_argument(event_flag(key), dest=key, type=float, default=None, help=event_help(key))
        if key in EVENT_FLAG_ALIASES:
            group.add_argument(EVENT_FLAG_ALIASES[key], dest=key, type=float, default=None, help=argparse.SUPPRESS)


def event_overrides(args) -> dict:
    """{manifest key: the flag's value or None} for every event setting."""
    return {key: getattr(args, key) for key in EVENT_KEYS}
