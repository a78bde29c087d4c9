"""The event settings as command-line flags: one flag per manifest key (`deploy.contract.EVENT_KEYS`), spelled as the
key is (`smoothing_s` -> `--smoothing-s`), so export and evaluate say the same thing the same way."""
from __future__ import annotations

import argparse

from deploy.contract import EVENT_DEFAULTS, EVENT_KEYS

# One help text per key, the same in every command (export writes the value; evaluate and score override the bundle's).
EVENT_HELP = {
    "hop_s": "seconds between window decisions (manifest events.hop_s)",
    "lookahead_s": "look-ahead, s: how much later samples may change a decision (manifest events.lookahead_s; "
                   "score also takes 'full')",
    "smoothing_s": "moving-average smoothing of the probabilities, s (manifest events.smoothing_s)",
    "on": "probability that starts an event (manifest events.on)",
    "off": "probability that ends an event (manifest events.off, <= on)",
    "min_duration_s": "shortest event reported, s (manifest events.min_duration_s)",
    "refractory_s": "quiet time after an event of the same class, s (manifest events.refractory_s)",
}
DEFAULTS_NOTE = " (default {default:g}; evaluate and score: the bundle's)"

# Spellings `toolkit evaluate` used before its flags were named after the manifest keys: still accepted, not shown.
OLD_SPELLINGS = {"smoothing_s": "--smoothing", "min_duration_s": "--min-duration", "refractory_s": "--refractory"}


def event_help(key: str) -> str:
    return EVENT_HELP[key] + DEFAULTS_NOTE.format(default=EVENT_DEFAULTS[key])


def add_event_arguments(group, keys=EVENT_KEYS) -> None:
    """--hop-s, --lookahead-s, --smoothing-s, --on, --off, --min-duration-s, --refractory-s (floats, default None:
    not given), each with its old spelling as a hidden alias, with the same help in every command."""
    for key in keys:
        group.add_argument("--" + key.replace("_", "-"), type=float, default=None, help=event_help(key))
        if key in OLD_SPELLINGS:
            group.add_argument(OLD_SPELLINGS[key], dest=key, type=float, default=None, help=argparse.SUPPRESS)


def event_overrides(args) -> dict:
    """{manifest key: the flag's value or None} for every event setting."""
    return {key: getattr(args, key) for key in EVENT_KEYS}
